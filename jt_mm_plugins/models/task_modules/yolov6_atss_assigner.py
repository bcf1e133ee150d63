"""YOLOv6's ``ATSSAssigner`` (``yolov6/assigners/atss_assigner.py``), the warm-up assigner of its
``ComputeLoss`` (epochs before ``atss_warmup_epoch``), in Jittor, one image at a time (YOLOv6 pads
the batch's ground truths and masks the padding, which assigns nothing: the per-image result is
the same).

Not mmdet's ATSS (:class:`~jt_mm_plugins.models.task_modules.atss_assigner.ATSSAssigner`), whose
rules differ in three places; per ground truth ``g``:

1. IoU of ``g`` with every anchor box (YOLOv6's anchors: ``grid_cell_size`` (5) x stride squares
   around the cell centres; mmdet's ``bbox_overlaps``, the project's ``BboxOverlaps2D``) and the
   distance between their centres;
2. on each level the ``topk`` (9) anchors closest to ``g``'s centre are its candidates (the
   per-level selection of the mmdet twin's ``_stable_topk_smallest``);
3. a candidate is positive when its IoU is **strictly** above mean + std (unbiased) of the
   candidates' IoUs and its centre lies inside ``g`` by more than **1e-9** (mmdet: ``>=`` and
   0.01);
4. an anchor positive for several ground truths keeps the one of largest IoU **over all** ground
   truths (mmdet: over those it is positive for), as YOLOv6's TAL
   (:func:`~.task_aligned_assigner.select_highest_overlaps`).

Targets as TAL's (:func:`~.task_aligned_assigner.make_assignment`), the one-hot scores of the
positives multiplied by the IoU (YOLOv6's ``iou_calculator``) of the predicted box with its
ground truth when predicted boxes are given (``ComputeLoss`` always gives them).
"""
from typing import Dict, Optional, Sequence

import numpy as np

from jt_mm_plugins.registry import JITTOR_TASK_UTILS, build_jittor_task_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

from .atss_assigner import _stable_topk_smallest
from .iou2d_calculator import BboxOverlaps2D  # noqa: F401  (registers the default calculator)
from .task_aligned_assigner import (empty_assignment, make_assignment, points_in_boxes,
                                    select_highest_overlaps, yolov6_pairwise_iou)


@JITTOR_TASK_UTILS.register_module()
class YOLOv6ATSSAssigner:
    """YOLOv6's ATSS warm-up assigner (see the module docstring).

    Args:
        topk (int): Candidates per level and ground truth. Defaults to 9.
        num_classes (int): Classes (the background label is ``num_classes``). Defaults to 80.
        iou_calculator (dict): Anchor / ground-truth overlaps. Defaults to
            ``dict(type='BboxOverlaps2D')`` (YOLOv6's ``iou2d_calculator``: the same formula).
    """

    def __init__(self, topk: int = 9, num_classes: int = 80,
                 iou_calculator: dict = dict(type='BboxOverlaps2D')) -> None:
        if not isinstance(topk, int) or topk < 1:
            raise InputError(f'YOLOv6ATSSAssigner: topk must be an int >= 1, got {topk!r}')
        self.topk, self.num_classes = topk, num_classes
        self.iou_calculator = build_jittor_task_module(iou_calculator)

    def assign(self, anc_bboxes: jt.Var, num_level_anchors: Sequence[int], gt_labels: jt.Var,
               gt_bboxes: jt.Var, pd_bboxes: Optional[jt.Var] = None) -> Dict[str, jt.Var]:
        """Assign one image's anchors (no gradients).

        Args:
            anc_bboxes (jt.Var): (L, 4) anchor boxes, xyxy pixels, levels in order.
            num_level_anchors (Sequence[int]): Anchors per level (summing to L).
            gt_labels (jt.Var): (M, ) int labels.
            gt_bboxes (jt.Var): (M, 4) xyxy pixels.
            pd_bboxes (jt.Var, optional): (L, 4) predicted boxes, xyxy pixels: the positives'
                target scores become their IoU with the assigned ground truth.

        Returns:
            dict: as :meth:`TaskAlignedAssigner.assign` (``labels``, ``bboxes``, ``scores``,
            ``fg_mask``, ``gt_inds``).
        """
        num_anchors, num_gts = int(anc_bboxes.shape[0]), int(gt_bboxes.shape[0])
        num_level_anchors = [int(n) for n in num_level_anchors]
        if sum(num_level_anchors) != num_anchors:
            raise InputError(f'YOLOv6ATSSAssigner: num_level_anchors {num_level_anchors} sum to '
                             f'{sum(num_level_anchors)}, but there are {num_anchors} anchors')
        dtype = gt_bboxes.dtype if pd_bboxes is None else pd_bboxes.dtype
        if num_gts == 0:
            return empty_assignment(num_anchors, self.num_classes, dtype)
        anc_bboxes = anc_bboxes.stop_grad()
        overlaps = self.iou_calculator(gt_bboxes, anc_bboxes).numpy()  # (M, L)
        gts, ancs = gt_bboxes.numpy(), anc_bboxes.numpy()
        # centre distances in the inputs' dtype, as YOLOv6's dist_calculator
        gt_centres = np.stack([(gts[:, 0] + gts[:, 2]) / 2, (gts[:, 1] + gts[:, 3]) / 2], 1)
        centres = np.stack([(ancs[:, 0] + ancs[:, 2]) / 2, (ancs[:, 1] + ancs[:, 3]) / 2], 1)
        distances = np.sqrt(((gt_centres[:, None] - centres[None]) ** 2).sum(-1))

        candidates, start = [], 0
        for count in num_level_anchors:
            k = min(self.topk, count)
            if k > 0:
                candidates.append(
                    _stable_topk_smallest(distances[:, start:start + count].T, k).T + start)
            start += count
        candidates = np.concatenate(candidates, axis=1)  # (M, candidates)
        rows = np.arange(num_gts)[:, None]
        is_candidate = np.zeros((num_gts, num_anchors), np.float32)
        is_candidate[rows, candidates] = 1.0
        candidate_overlaps = overlaps[rows, candidates]
        threshold = candidate_overlaps.mean(-1, keepdims=True) + \
            candidate_overlaps.std(-1, ddof=1, keepdims=True)
        is_pos = np.where(overlaps * is_candidate > threshold, is_candidate, 0.0)
        in_gts = points_in_boxes(jt.array(centres.astype(ancs.dtype)), gt_bboxes)
        mask_pos, fg_mask, gt_idx = select_highest_overlaps(is_pos * in_gts, overlaps)

        if pd_bboxes is None:
            weight = np.ones((num_anchors, ), np.float32)
        else:
            ious = yolov6_pairwise_iou(gt_bboxes, pd_bboxes.stop_grad()).numpy()
            weight = (ious * mask_pos).max(0)
        return make_assignment(gt_labels.int64().numpy(), gt_bboxes, gt_idx, fg_mask, weight,
                               self.num_classes, dtype)
