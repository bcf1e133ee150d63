"""Jittor twin of mmdet's ``ATSSAssigner``
(mmdet/models/task_modules/assigners/atss_assigner.py)."""
from typing import Any, List, Optional, Sequence

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .assign_result import AssignResult
from .iou2d_calculator import BboxOverlaps2D  # noqa: F401  (registers the default calculator)
from .max_iou_assigner import unpack_assign_inputs
from jt_mm_plugins.registry import JITTOR_TASK_UTILS, build_jittor_task_module

INF = 100000000


def _stable_topk_smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` smallest values of every column of ``values`` (n, m), ties in
    index order (torch's ``topk`` leaves the order of ties to the implementation)."""
    return np.argsort(values, axis=0, kind='stable')[:k]


@JITTOR_TASK_UTILS.register_module()
class ATSSAssigner:
    """Adaptive Training Sample Selection of `ATSS <https://arxiv.org/abs/1912.02424>`_, as mmdet's
    ``ATSSAssigner`` (without DDOD's cost-based ``alpha``).

    Each prior gets 0 (negative), -1 (ignored) or a 1-based gt index:

    1. IoU of every prior with every gt, and the distance between their centres;
    2. on each level, the ``topk`` priors whose centres are closest to each gt's centre are its
       candidates;
    3. a candidate is positive when its IoU >= mean + std (unbiased) of the gt's candidate IoUs
       and its centre lies inside the gt (every side more than 0.01 away);
    4. a prior positive for several gts takes the one of highest IoU (the first on a tie).

    The decisions are taken on the host in float32 with the IoUs Jittor computed, as the other
    Jittor assigners do.

    Args:
        topk (int): Candidates per level and gt.
        alpha (float, optional): DDOD's dynamic cost; only None is supported. Defaults to None.
        iou_calculator (dict): Config of the overlap calculator. Defaults to
            ``dict(type='BboxOverlaps2D')``.
        ignore_iof_thr (float): IoF with an ignored box above which a prior is ignored; negative
            disables ignoring. Defaults to -1.
    """

    def __init__(self,
                 topk: int,
                 alpha: Optional[float] = None,
                 iou_calculator: dict = dict(type='BboxOverlaps2D'),
                 ignore_iof_thr: float = -1) -> None:
        if alpha is not None:
            raise NotImplementedError('ATSSAssigner (Jittor): the cost-based variant (alpha, '
                                      'DDOD) is not ported; use alpha=None')
        if not isinstance(topk, int) or topk < 1:
            raise InputError(f'ATSSAssigner: topk must be an int >= 1, got {topk!r}')
        self.topk = topk
        self.alpha = alpha
        self.iou_calculator = build_jittor_task_module(iou_calculator)
        self.ignore_iof_thr = ignore_iof_thr

    def assign(self, priors: Any, num_level_priors: Sequence[int], gt_bboxes: Any,
               gt_labels: Optional[jt.Var] = None,
               gt_bboxes_ignore: Optional[Any] = None) -> AssignResult:
        """Assign gt boxes to priors.

        Args:
            priors (jt.Var | InstanceData): Priors of all levels (n, 4) (columns past the fourth
                are ignored), or an object with ``.priors``.
            num_level_priors (Sequence[int]): Number of priors of each level (summing to n).
            gt_bboxes (jt.Var | InstanceData): Gt boxes (k, 4), or an object with ``.bboxes`` and
                ``.labels``.
            gt_labels (jt.Var, optional): Gt labels (k,); taken from ``gt_bboxes.labels`` when an
                instance object is given. Without labels, ``AssignResult.labels`` is None.
            gt_bboxes_ignore (jt.Var | InstanceData, optional): Boxes to ignore (j, 4).
                Defaults to None.

        Returns:
            AssignResult: ``gt_inds`` (n,), ``max_overlaps`` (n,) (the IoU with the assigned gt,
            -1e8 elsewhere, as mmdet), ``labels`` (n,) (-1 where not positive).
        """
        priors, gt_bboxes, gt_labels, gt_bboxes_ignore = unpack_assign_inputs(
            priors, gt_bboxes, gt_labels, gt_bboxes_ignore)
        priors = priors[:, :4]
        num_gt, num_priors = int(gt_bboxes.shape[0]), int(priors.shape[0])
        num_level_priors = [int(n) for n in num_level_priors]
        if sum(num_level_priors) != num_priors:
            raise InputError(f'ATSSAssigner: num_level_priors {num_level_priors} sum to '
                             f'{sum(num_level_priors)}, but there are {num_priors} priors')

        if num_gt == 0 or num_priors == 0:
            labels = None if gt_labels is None else jt.array(np.full((num_priors, ), -1, np.int32))
            return AssignResult(num_gt, jt.array(np.zeros((num_priors, ), np.int32)),
                                jt.array(np.zeros((num_priors, ), np.float32)), labels)

        overlaps = self.iou_calculator(priors, gt_bboxes)  # (n, k)
        jt.sync([overlaps, priors, gt_bboxes] + ([] if gt_labels is None else [gt_labels]))
        overlaps = overlaps.numpy()  # (the reads below run no graph: one run above)
        priors_np = priors.numpy().astype(np.float32)
        gts_np = gt_bboxes.numpy().astype(np.float32).reshape(-1, 4)
        assigned = np.zeros((num_priors, ), np.int64)

        # centre distances (float32, as mmdet's bbox_center_distance)
        gt_cx = (gts_np[:, 0] + gts_np[:, 2]) / np.float32(2.0)
        gt_cy = (gts_np[:, 1] + gts_np[:, 3]) / np.float32(2.0)
        priors_cx = (priors_np[:, 0] + priors_np[:, 2]) / np.float32(2.0)
        priors_cy = (priors_np[:, 1] + priors_np[:, 3]) / np.float32(2.0)
        distances = np.sqrt((priors_cx[:, None] - gt_cx[None])**2 +
                            (priors_cy[:, None] - gt_cy[None])**2).astype(np.float32)

        if (self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None
                and gt_bboxes_ignore.numel() > 0):
            ignore_max = self.iou_calculator(priors, gt_bboxes_ignore, mode='iof').numpy().max(1)
            ignored = ignore_max > self.ignore_iof_thr
            distances[ignored, :] = INF
            assigned[ignored] = -1

        # 2. the topk closest priors of each level are the candidates of each gt
        candidate_idxs: List[np.ndarray] = []
        start = 0
        for per_level in num_level_priors:
            k = min(self.topk, per_level)
            if k > 0:
                candidate_idxs.append(
                    _stable_topk_smallest(distances[start:start + per_level], k) + start)
            start += per_level
        candidate_idxs = np.concatenate(candidate_idxs, axis=0)  # (num_candidates, k_gt)

        # 3. IoU threshold mean + std (unbiased, as torch.std) of each gt's candidates
        gt_ids = np.arange(num_gt)
        candidate_overlaps = overlaps[candidate_idxs, gt_ids[None, :]]
        thr = candidate_overlaps.mean(0) + candidate_overlaps.std(0, ddof=1)
        is_pos = candidate_overlaps >= thr.astype(np.float32)[None, :]
        cand_cx, cand_cy = priors_cx[candidate_idxs], priors_cy[candidate_idxs]
        sides = np.stack([cand_cx - gts_np[:, 0], cand_cy - gts_np[:, 1],
                          gts_np[:, 2] - cand_cx, gts_np[:, 3] - cand_cy], axis=1)
        is_pos &= sides.min(axis=1) > 0.01

        # 4. a prior positive for several gts takes the highest IoU (first gt on a tie)
        overlaps_inf = np.full((num_priors, num_gt), -INF, np.float32)
        pos_prior, pos_gt = candidate_idxs[is_pos], np.broadcast_to(gt_ids, is_pos.shape)[is_pos]
        overlaps_inf[pos_prior, pos_gt] = overlaps[pos_prior, pos_gt]
        max_overlaps = overlaps_inf.max(axis=1)
        argmax_overlaps = overlaps_inf.argmax(axis=1)
        matched = max_overlaps != -INF
        assigned[matched] = argmax_overlaps[matched] + 1

        labels = None
        if gt_labels is not None:
            gt_labels_np = gt_labels.numpy().reshape(-1).astype(np.int64)
            labels_np = np.full((num_priors, ), -1, np.int64)
            labels_np[assigned > 0] = gt_labels_np[assigned[assigned > 0] - 1]
            labels = jt.array(labels_np.astype(np.int32))
        return AssignResult(num_gt, jt.array(assigned.astype(np.int32)),
                            jt.array(max_overlaps), labels)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(topk={self.topk}, ignore_iof_thr='
                f'{self.ignore_iof_thr})')
