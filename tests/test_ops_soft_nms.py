"""Soft-NMS in Jittor (``jt_mm_plugins.ops.soft_nms``, ``batched_nms`` / ``multiclass_nms`` with
``nms=dict(type='soft_nms', ...)``) against ``mmcv.ops.soft_nms``, mmcv's ``batched_nms`` and
mmdet's ``multiclass_nms`` on identical boxes and scores: the same kept indices in the same order,
the same boxes, the rescored scores within 1e-6.

Robust by construction: soft-NMS decides at every step which remaining box has the best score
(the gap between the two best), for ``linear`` / ``naive`` whether each IoU reaches
``iou_threshold``, and whether each rescored score falls below ``min_score``; ``multiclass_nms``
first drops the scores not above ``score_thr``. A float64 NumPy transcription of mmcv's kernel
(``soft_nms64``, itself checked against mmcv's kept indices) measures all these margins and the
tests assert that each is at least ``MARGIN`` (1e-5, for values of at most 1 whose float32 error
here is ~1e-6 at worst), so no float32 run on any machine can decide otherwise. NaN IoUs (two
zero-area boxes: a zero union) are NaN in any precision and are not margins.
"""
import numpy as np
import pytest
import torch
from mmcv.ops import batched_nms as mmcv_batched_nms
from mmcv.ops import soft_nms as mmcv_soft_nms
from mmdet.models.layers import multiclass_nms as mmdet_multiclass_nms

from jt_mm_plugins.models.utils import multiclass_nms
from jt_mm_plugins.ops import batched_nms, soft_nms
from jt_mm_plugins.runtime import jt
from test_ops_nms import random_boxes

MARGIN = 1e-5
METHODS = {'naive': 0, 'linear': 1, 'gaussian': 2}


def soft_nms64(boxes, scores, iou_threshold=0.3, sigma=0.5, min_score=1e-3, method='linear',
               offset=0):
    """mmcv's ``softnms_cpu`` in float64: (kept indices, their rescored scores, the smallest
    margin of its decisions)."""
    b, s = boxes.astype(np.float64).copy(), scores.astype(np.float64).copy()
    areas = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    idx, n, margins = np.arange(len(b)), len(b), []

    def swap(i, j):
        for a in (b, s, areas, idx):
            a[[i, j]] = a[[j, i]]

    i = 0
    while i < n:
        rest = s[i:n]
        finite = np.sort(rest[np.isfinite(rest)])
        if len(finite) > 1:
            margins.append(finite[-1] - finite[-2])  # which box is the best
        swap(i, i + int(np.argmax(np.where(np.isnan(rest), -np.inf, rest))))  # first of equal
        pos = i + 1
        while pos < n:
            wh = np.maximum(0, np.minimum(b[i, 2:], b[pos, 2:]) - np.maximum(b[i, :2], b[pos, :2])
                            + offset)
            inter = wh[0] * wh[1]
            with np.errstate(invalid='ignore', divide='ignore'):
                ovr = inter / (areas[i] + areas[pos] - inter)
            if method == 'gaussian':
                weight = np.exp(-ovr * ovr / sigma)
            else:
                if not np.isnan(ovr):
                    margins.append(abs(ovr - iou_threshold))
                weight = 1.0 if not ovr >= iou_threshold else (0.0 if method == 'naive'
                                                                else 1 - ovr)
            s[pos] *= weight
            if not np.isnan(s[pos]):
                margins.append(abs(s[pos] - min_score))
            if s[pos] < min_score:
                swap(pos, n - 1)
                n -= 1
            else:
                pos += 1
        i += 1
    return idx[:n], s[:n], min(margins) if margins else np.inf


def cases():
    """(name, boxes, scores, soft_nms kwargs): clustered boxes (some degenerate) for linear and
    naive; for gaussian, whose IoU weights of zero-area boxes are NaN, boxes with an area."""
    rng = np.random.default_rng(3)
    boxes, scores = random_boxes(rng, 80)
    positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return [('linear', boxes, scores, dict(iou_threshold=0.3, method='linear', min_score=0.05)),
            ('naive', boxes, scores, dict(iou_threshold=0.5, method='naive', offset=1)),
            ('gaussian', boxes[positive], scores[positive],
             dict(iou_threshold=0.5, sigma=0.5, method='gaussian', min_score=0.05))]


def test_soft_nms_matches_mmcv():
    for name, boxes, scores, kwargs in cases():
        ref_dets, ref_inds = mmcv_soft_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                           **kwargs)
        inds64, scores64, margin = soft_nms64(boxes, scores, **kwargs)
        assert margin >= MARGIN, (name, margin)
        np.testing.assert_array_equal(ref_inds.numpy(), inds64)  # the transcription is mmcv's
        dets, inds = soft_nms(jt.array(boxes), jt.array(scores), **kwargs)
        assert inds.dtype == 'int64'
        np.testing.assert_array_equal(inds.numpy(), ref_inds.numpy(), err_msg=name)
        np.testing.assert_array_equal(dets.numpy()[:, :4], ref_dets.numpy()[:, :4])
        np.testing.assert_allclose(dets.numpy()[:, 4], ref_dets.numpy()[:, 4], rtol=0, atol=1e-6)
        # the case drops boxes, keeps some and (but naive: weights 0 or 1) rescores
        assert 0 < len(ref_inds) < len(boxes), name
        rescored = not np.array_equal(ref_dets.numpy()[:, 4], scores[ref_inds.numpy()])
        assert rescored == (name != 'naive'), name


def test_soft_nms_edge_cases():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    dets, inds = soft_nms(jt.array(boxes), jt.array(np.array([.9, .8, 1e-4], np.float32)))
    assert inds.numpy().tolist() == [0, 1]  # the best first; 1e-4 < min_score: dropped
    dets, inds = soft_nms(jt.zeros((0, 4)), jt.zeros((0, )))
    assert tuple(dets.shape) == (0, 5) and tuple(inds.shape) == (0, )
    with pytest.raises(ValueError, match='method'):
        soft_nms(jt.array(boxes), jt.ones((3, )), method='cubic')
    with pytest.raises(ValueError, match='scores must have shape'):
        soft_nms(jt.array(boxes), jt.ones((2, )))


def batched_margin(boxes, scores, idxs, **kwargs):
    """The decisions' margin of soft-NMS on the boxes mmcv's ``batched_nms`` gives it: shifted by
    class (``idx * (max + 1)``, computed in float32 as mmcv does, so the margins are those of the
    kernel's actual inputs); boxes of different classes never overlap, so the decisions are those
    of the per-class runs (``split_thr``) plus the order of all survivors by score."""
    b = torch.from_numpy(boxes)
    shifted = b + torch.from_numpy(idxs).to(b)[:, None] * (b.max() + torch.tensor(1).to(b))
    return soft_nms64(shifted.numpy(), scores, **kwargs)[2]


@pytest.mark.parametrize('split_thr', [10000, 20])  # one call with class offsets / a loop
def test_batched_soft_nms_matches_mmcv(split_thr):
    rng = np.random.default_rng(4)
    boxes, scores = random_boxes(rng, 60)
    idxs = rng.integers(0, 3, 60).astype(np.int64)
    kwargs = dict(iou_threshold=0.4, method='linear', min_score=0.05)
    assert batched_margin(boxes, scores, idxs, **kwargs) >= MARGIN
    cfg = dict(type='soft_nms', split_thr=split_thr, **kwargs)
    ref_dets, ref_keep = mmcv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                          torch.from_numpy(idxs), dict(cfg))
    dets, keep = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs), dict(cfg))
    np.testing.assert_array_equal(keep.numpy(), ref_keep.numpy())
    np.testing.assert_array_equal(dets.numpy()[:, :4], ref_dets.numpy()[:, :4])
    np.testing.assert_allclose(dets.numpy()[:, 4], ref_dets.numpy()[:, 4], rtol=0, atol=1e-6)
    assert not np.array_equal(ref_dets.numpy()[:, 4], scores[ref_keep.numpy()])  # rescored


def test_multiclass_soft_nms_matches_mmdet():
    """UniDetector's test-time NMS (gaussian soft-NMS, IoU 0.5, ``score_thr``, ``max_per_img``)
    on class-agnostic boxes and sigmoid-like scores of 3 classes (+ background)."""
    rng = np.random.default_rng(5)
    boxes, _ = random_boxes(rng, 40)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    multi_scores = rng.uniform(0, 0.6, (len(boxes), 4)).astype(np.float32)
    score_thr, max_num = 0.05, 30
    nms_cfg = dict(type='soft_nms', iou_threshold=0.5, method='gaussian')
    fg = multi_scores[:, :-1]
    assert np.abs(fg.astype(np.float64) - score_thr).min() >= MARGIN
    box_ids, labels64 = np.nonzero(fg > score_thr)  # mmdet's candidates, in its order
    assert batched_margin(boxes[box_ids], fg[box_ids, labels64], labels64, iou_threshold=0.5,
                          method='gaussian') >= MARGIN
    ref_dets, ref_labels, ref_inds = mmdet_multiclass_nms(
        torch.from_numpy(boxes), torch.from_numpy(multi_scores), score_thr, dict(nms_cfg),
        max_num, return_inds=True)
    dets, labels, inds = multiclass_nms(jt.array(boxes), jt.array(multi_scores), score_thr,
                                        dict(nms_cfg), max_num, return_inds=True)
    assert len(ref_dets) == max_num  # the cut is taken
    np.testing.assert_array_equal(inds.numpy(), ref_inds.numpy())
    np.testing.assert_array_equal(labels.numpy(), ref_labels.numpy())
    np.testing.assert_array_equal(dets.numpy()[:, :4], ref_dets.numpy()[:, :4])
    np.testing.assert_allclose(dets.numpy()[:, 4], ref_dets.numpy()[:, 4], rtol=0, atol=1e-6)
