"""YOLOv6's ``TaskAlignedAssigner`` (TAL, ``yolov6/assigners/tal_assigner.py``, from PP-YOLOE) in
Jittor, one image at a time (YOLOv6 pads the batch's ground truths and masks the padding, which
assigns nothing: the per-image result is the same).

For ground truth ``g`` and anchor ``a``: ``metric = score(a, label(g)) ** alpha * IoU(g, box(a))
** beta``. Candidates are anchors whose point lies strictly inside ``g`` (all four distances
> 1e-9); among them the ``topk`` largest metrics (taken over all anchors, then masked) are
positive for ``g``. An anchor positive for several ground truths keeps the one of largest IoU.
Target scores are the one-hot labels times, per anchor, ``max_g(metric * max IoU of g's
positives / (max metric of g's positives + eps))``.

The IoU is YOLOv6's ``iou_calculator`` (widths clipped at 0, ``eps`` 1e-9 added to the union).
"""
from typing import Dict

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


def yolov6_pairwise_iou(boxes1: jt.Var, boxes2: jt.Var, eps: float = 1e-9) -> jt.Var:
    """(M, 4) x (L, 4) xyxy -> (M, L) IoU, YOLOv6's ``iou_calculator``."""
    b1, b2 = boxes1.unsqueeze(1), boxes2.unsqueeze(0)
    lt = jt.maximum(b1[..., :2], b2[..., :2])
    rb = jt.minimum(b1[..., 2:], b2[..., 2:])
    wh = (rb - lt).clamp(min_v=0)
    overlap = wh[..., 0] * wh[..., 1]
    wh1 = (b1[..., 2:] - b1[..., :2]).clamp(min_v=0)
    wh2 = (b2[..., 2:] - b2[..., :2]).clamp(min_v=0)
    union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - overlap + eps
    return overlap / union


def points_in_boxes(points: jt.Var, gt_bboxes: jt.Var, eps: float = 1e-9) -> np.ndarray:
    """(M, L) float mask: anchor point ``l`` lies strictly inside box ``m`` (all four distances
    > ``eps``), YOLOv6's ``select_candidates_in_gts``."""
    lt = points.unsqueeze(0) - gt_bboxes[:, None, :2]
    rb = gt_bboxes[:, None, 2:] - points.unsqueeze(0)
    return (jt.concat([lt, rb], dim=-1).min(dim=-1) > eps).numpy().astype(np.float32)


def select_highest_overlaps(mask_pos: np.ndarray, overlaps: np.ndarray):
    """YOLOv6's ``select_highest_overlaps`` on (M, L) arrays: an anchor positive for several
    ground truths keeps the one of largest ``overlaps`` (over all ground truths, the first on a
    tie). Returns the new ``mask_pos``, ``fg_mask`` (L,) bool and the ground-truth index (L,) of
    every anchor (0 for negatives)."""
    mask_pos = mask_pos.copy()
    fg = mask_pos.sum(0)
    if fg.max(initial=0) > 1:
        multi = fg > 1
        best = overlaps.argmax(0)
        mask_pos[:, multi] = (np.arange(mask_pos.shape[0])[:, None] == best[None, multi])
        fg = mask_pos.sum(0)
    return mask_pos, fg > 0, mask_pos.argmax(0)


def empty_assignment(num_anchors: int, num_classes: int, dtype: str) -> Dict[str, jt.Var]:
    """The assignment of an image without ground truths: every anchor negative."""
    return dict(labels=jt.full((num_anchors, ), num_classes, 'int64'),
                bboxes=jt.zeros((num_anchors, 4), dtype),
                scores=jt.zeros((num_anchors, num_classes), dtype),
                fg_mask=jt.zeros((num_anchors, ), 'bool'),
                gt_inds=jt.full((num_anchors, ), -1, 'int64'))


def make_assignment(gt_labels: np.ndarray, gt_bboxes: jt.Var, gt_idx: np.ndarray,
                    fg_mask: np.ndarray, score_weight: np.ndarray, num_classes: int,
                    dtype: str) -> Dict[str, jt.Var]:
    """The result dict of YOLOv6's assigners (see :meth:`TaskAlignedAssigner.assign`): labels
    (``num_classes`` for negatives), the ground-truth box of ``gt_idx`` (also for negatives, as
    YOLOv6), one-hot target scores of the positives times ``score_weight`` (L,)."""
    num_anchors = fg_mask.shape[0]
    target_labels = gt_labels[gt_idx]
    target_scores = np.zeros((num_anchors, num_classes), np.float64)
    target_scores[np.arange(num_anchors)[fg_mask], target_labels[fg_mask]] = 1.0
    target_scores = target_scores * score_weight[:, None]
    return dict(labels=jt.array(np.where(fg_mask, target_labels, num_classes).astype(np.int64)),
                bboxes=gt_bboxes[jt.array(gt_idx)],
                scores=jt.array(target_scores.astype(np.float32)).astype(dtype),
                fg_mask=jt.array(fg_mask),
                gt_inds=jt.array(np.where(fg_mask, gt_idx, -1).astype(np.int64)))


class TaskAlignedAssigner:
    """Task-aligned assignment (YOLOv6's defaults: ``topk`` 13, ``alpha`` 1, ``beta`` 6).

    Args:
        topk (int): Positives per ground truth at most.
        num_classes (int): Classes (the background label is ``num_classes``).
        alpha (float): Exponent of the classification score.
        beta (float): Exponent of the IoU.
        eps (float): Added to denominators. Defaults to 1e-9.
    """

    def __init__(self, topk: int = 13, num_classes: int = 80, alpha: float = 1.0,
                 beta: float = 6.0, eps: float = 1e-9) -> None:
        if topk < 1:
            raise InputError(f'TaskAlignedAssigner: topk must be >= 1, got {topk}')
        self.topk, self.num_classes = topk, num_classes
        self.alpha, self.beta, self.eps = alpha, beta, eps

    def assign(self, pd_scores: jt.Var, pd_bboxes: jt.Var, anc_points: jt.Var,
               gt_labels: jt.Var, gt_bboxes: jt.Var) -> Dict[str, jt.Var]:
        """Assign one image's anchors (no gradients).

        Args:
            pd_scores (jt.Var): (L, num_classes) predicted probabilities.
            pd_bboxes (jt.Var): (L, 4) predicted boxes, xyxy pixels.
            anc_points (jt.Var): (L, 2) anchor points, pixels.
            gt_labels (jt.Var): (M, ) int labels.
            gt_bboxes (jt.Var): (M, 4) xyxy pixels.

        Returns:
            dict: ``labels`` (L,) int64 (``num_classes`` for negatives), ``bboxes`` (L, 4),
            ``scores`` (L, num_classes), ``fg_mask`` (L,) bool, ``gt_inds`` (L,) int64 (index of
            the assigned ground truth, -1 for negatives).
        """
        pd_scores, pd_bboxes = pd_scores.stop_grad(), pd_bboxes.stop_grad()
        num_anchors, num_gts = pd_scores.shape[0], gt_bboxes.shape[0]
        if num_gts == 0:
            return empty_assignment(num_anchors, self.num_classes, pd_scores.dtype)
        labels = gt_labels.int64()
        bbox_scores = pd_scores[:, labels].transpose(1, 0)  # (M, L)
        overlaps = yolov6_pairwise_iou(gt_bboxes, pd_bboxes)
        align_metric = bbox_scores.pow(self.alpha) * overlaps.pow(self.beta)
        in_gts = points_in_boxes(anc_points, gt_bboxes, self.eps)
        k = min(self.topk, num_anchors)
        _, topk_idx = jt.topk(align_metric * jt.array(in_gts).astype(align_metric.dtype), k,
                              dim=-1)
        in_topk = np.zeros((num_gts, num_anchors), np.float32)
        np.put_along_axis(in_topk, topk_idx.numpy(), 1.0, axis=-1)
        ovl = overlaps.numpy()
        mask_pos, fg_mask, gt_idx = select_highest_overlaps(in_topk * in_gts, ovl)

        metric = align_metric.numpy() * mask_pos
        pos_metric = metric.max(-1, keepdims=True)
        pos_overlaps = (ovl * mask_pos).max(-1, keepdims=True)
        norm = (metric * pos_overlaps / (pos_metric + self.eps)).max(0)
        return make_assignment(labels.numpy(), gt_bboxes, gt_idx, fg_mask, norm,
                               self.num_classes, pd_scores.dtype)
