"""Multi-class NMS shared by the Jittor heads: Jittor twin of
``mmdet.models.layers.multiclass_nms`` (with mmcv's ``batched_nms`` semantics and nms cfg keys).
"""
from typing import Optional, Tuple, Union

import numpy as np

from jt_mm_plugins.ops.nms import batched_nms
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .misc import take_rows


def multiclass_nms(multi_bboxes: jt.Var,
                   multi_scores: jt.Var,
                   score_thr: float,
                   nms_cfg: Optional[dict],
                   max_num: int = -1,
                   score_factors: Optional[jt.Var] = None,
                   return_inds: bool = False,
                   box_dim: int = 4) -> Union[Tuple[jt.Var, jt.Var, jt.Var], Tuple[jt.Var, jt.Var]]:
    """NMS for multi-class boxes, as mmdet's ``multiclass_nms`` (with mmcv's ``batched_nms``).

    Args:
        multi_bboxes (jt.Var): Shape (n, num_classes * 4) (class-specific) or (n, 4).
        multi_scores (jt.Var): Shape (n, num_classes + 1); the last column (background) is ignored.
        score_thr (float): Boxes with a score not above this are dropped before NMS.
        nms_cfg (dict | None): Arguments of :func:`jt_mm_plugins.ops.nms.batched_nms`, e.g.
            ``dict(type='nms', iou_threshold=0.5)`` or ``dict(type='soft_nms', iou_threshold=0.5,
            method='gaussian')`` (the kept boxes then carry their rescored scores, as mmdet's).
        max_num (int): Keep at most this many boxes after NMS when positive. Defaults to -1.
        score_factors (jt.Var, optional): Factors (n,) multiplied to the scores after thresholding.
            Defaults to None.
        return_inds (bool): Whether to also return the indices of the kept boxes in the flattened
            (n * num_classes) candidates. Defaults to False.
        box_dim (int): Box dimension; only 4. Defaults to 4.

    Returns:
        tuple: ``dets`` (k, 5) rows (x1, y1, x2, y2, score), ``labels`` (k,) int64 (0-based), and
        with ``return_inds`` the indices (k,) int64.
    """
    if box_dim != 4:
        raise NotImplementedError(f'multiclass_nms (Jittor): only box_dim=4 is supported, got '
                                  f'{box_dim}')
    num_boxes, num_classes = multi_scores.shape[0], multi_scores.shape[1] - 1
    if multi_bboxes.shape[0] != num_boxes:
        raise InputError(f'multiclass_nms: {multi_bboxes.shape[0]} box rows but {num_boxes} '
                         'score rows')
    if multi_bboxes.shape[1] > box_dim:
        if multi_bboxes.shape[1] != num_classes * box_dim:
            raise InputError(f'multiclass_nms: class-specific boxes must have num_classes * 4 = '
                             f'{num_classes * box_dim} columns, got {multi_bboxes.shape[1]}')
        bboxes = multi_bboxes.reshape(num_boxes, num_classes, box_dim)
    else:
        bboxes = multi_bboxes.reshape(num_boxes, 1, box_dim).broadcast(
            (num_boxes, num_classes, box_dim))
    scores = multi_scores[:, :-1]
    labels = jt.arange(num_classes).int64().reshape(1, -1).broadcast((num_boxes, num_classes))

    bboxes = bboxes.reshape(-1, box_dim)
    scores = scores.reshape(-1)
    labels = labels.reshape(-1)

    # remove low scoring boxes (decided on the host, as mmdet's nonzero)
    inds = np.nonzero(scores.numpy() > score_thr)[0] if num_boxes * num_classes > 0 else np.zeros(
        (0, ), np.int64)
    if score_factors is not None:
        score_factors = score_factors.reshape(-1, 1).broadcast((num_boxes, num_classes))
        scores = scores * score_factors.reshape(-1)

    if len(inds) == 0:
        dets = jt.zeros((0, box_dim + 1), dtype=multi_bboxes.dtype)
        empty_labels = jt.zeros((0, ), dtype='int64')
        if return_inds:
            return dets, empty_labels, jt.zeros((0, ), dtype='int64')
        return dets, empty_labels

    bboxes, scores, labels = take_rows(bboxes, inds), take_rows(scores, inds), take_rows(
        labels, inds)
    dets, keep = batched_nms(bboxes, scores, labels, None if nms_cfg is None else dict(nms_cfg))
    if max_num > 0:
        dets, keep = dets[:max_num], keep[:max_num]
    keep_np = keep.numpy().astype(np.int64)
    det_labels = take_rows(labels, keep_np)
    if return_inds:
        return dets, det_labels, jt.array(inds[keep_np].astype(np.int64)).int64()
    return dets, det_labels
