"""``DynamicSoftLabelAssigner``: NanoDet-Plus's dynamic soft label assigner
(``nanodet/model/head/assigner/dsl_assigner.py``, ../shared/specs/seed-systems.md section 4.4) in
Jittor, with the interface of mmdet's ``DynamicSoftLabelAssigner``
(mmdet/models/task_modules/assigners/dynamic_soft_label_assigner.py, RTMDet's)."""
import math
from typing import Any, Optional, Tuple

import numpy as np

from jt_mm_plugins.registry import JITTOR_TASK_UTILS, build_jittor_task_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .assign_result import AssignResult
from .iou2d_calculator import BboxOverlaps2D  # noqa: F401  (registers the default calculator)

INF = 100000000
EPS = 1.0e-7


def _field(obj: Any, name: str, owner: str) -> Any:
    """``obj.name`` or ``obj[name]`` (InstanceData, a namespace or a dict)."""
    if isinstance(obj, dict):
        if name not in obj:
            raise InputError(f'{owner}: the inputs need "{name}", got keys {sorted(obj)}')
        return obj[name]
    if not hasattr(obj, name):
        raise InputError(f'{owner}: the inputs need a "{name}" field ({type(obj).__name__} has '
                         'none)')
    return getattr(obj, name)


def _stable_smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries of a 1-D array, ties in index order."""
    return np.argsort(values, kind='stable')[:k]


@JITTOR_TASK_UTILS.register_module()
class DynamicSoftLabelAssigner:
    """Dynamic soft label assignment of NanoDet-Plus (also RTMDet's, with a centre prior).

    For one image:

    1. candidates are the priors whose centre lies strictly inside at least one gt box;
    2. ``cost = cls_cost + iou_weight * (-log(IoU + 1e-7))`` (+ the centre prior, see below),
       ``cls_cost = sum_c BCE_logits(z, onehot * IoU) * |onehot * IoU - sigmoid(z)|^2`` with the
       IoU of each candidate's predicted box with each gt;
    3. dynamic k of a gt = max(1, int(sum of its ``topk`` largest candidate IoUs)); each gt takes
       its k cheapest candidates (ties in index order);
    4. a prior taken by several gts keeps the cheapest gt (over all gts, the first on a tie);
    5. ``max_overlaps`` of a positive is its IoU with its gt (the soft label of the quality
       focal loss), -1e8 elsewhere; ``gt_inds`` is 1-based, 0 for the background.

    Differences between the two originals, and what this class does:

    * mmdet (RTMDet) adds a soft centre prior ``10 ** (distance / stride - soft_center_radius)``
      to the cost; NanoDet-Plus has none. This class follows NanoDet-Plus by default
      (``soft_center_radius=None``); a number adds mmdet's prior (mmdet's default is 3.0).
    * NanoDet-Plus gets sigmoid probabilities and calls ``binary_cross_entropy`` (log clamped at
      -100); mmdet gets logits and calls ``binary_cross_entropy_with_logits``. This class takes
      logits as mmdet does (the heads pass raw scores); the two agree except where a sigmoid
      saturates in float32 (|z| > ~17).
    * NanoDet names the IoU weight ``iou_factor``, mmdet ``iou_weight``: both are accepted.
    * mmdet's centre of a gt with ``masks`` (centre of mass) and NanoDet's ``ignore_iof_thr`` are
      not supported (errors say so).

    The cost is computed in Jittor (in the scores' dtype); the top-k choices are taken on the host,
    as the other Jittor assigners do.

    Args:
        soft_center_radius (float, optional): mmdet's centre-prior radius; None (NanoDet-Plus):
            no centre prior. Defaults to None.
        topk (int): IoUs summed for a gt's dynamic k. Defaults to 13.
        iou_weight (float): Weight of the IoU cost. Defaults to 3.0.
        iou_calculator (dict): Overlap calculator config. Defaults to
            ``dict(type='BboxOverlaps2D')``.
        iou_factor (float, optional): NanoDet-Plus's name of ``iou_weight``.
        ignore_iof_thr (float): NanoDet's ignore threshold; only a negative value (off) is
            supported. Defaults to -1.
    """

    def __init__(self,
                 soft_center_radius: Optional[float] = None,
                 topk: int = 13,
                 iou_weight: float = 3.0,
                 iou_calculator: dict = dict(type='BboxOverlaps2D'),
                 iou_factor: Optional[float] = None,
                 ignore_iof_thr: float = -1) -> None:
        if not isinstance(topk, int) or topk < 1:
            raise InputError(f'DynamicSoftLabelAssigner: topk must be an int >= 1, got {topk!r}')
        if iou_factor is not None:
            iou_weight = iou_factor
        if ignore_iof_thr > 0:
            raise NotImplementedError('DynamicSoftLabelAssigner (Jittor): ignore_iof_thr > 0 is '
                                      'not supported; use -1')
        self.soft_center_radius = soft_center_radius
        self.topk = topk
        self.iou_weight = float(iou_weight)
        self.iou_calculator = build_jittor_task_module(iou_calculator)
        self.ignore_iof_thr = ignore_iof_thr

    def _empty(self, num_gt: int, num_priors: int) -> AssignResult:
        return AssignResult(num_gt, jt.array(np.zeros((num_priors, ), np.int32)),
                            jt.array(np.zeros((num_priors, ), np.float32)),
                            jt.array(np.full((num_priors, ), -1, np.int32)))

    def assign(self, pred_instances: Any, gt_instances: Any,
               gt_instances_ignore: Optional[Any] = None, **kwargs) -> AssignResult:
        """Assign gt boxes to priors (mmdet's signature).

        Args:
            pred_instances: ``priors`` (n, 4) as (cx, cy, stride_w, stride_h), ``bboxes`` (n, 4)
                decoded predicted boxes, ``scores`` (n, num_classes) logits (attributes or keys).
            gt_instances: ``bboxes`` (k, 4), ``labels`` (k,).
            gt_instances_ignore: Must be None or empty (see ``ignore_iof_thr``).

        Returns:
            AssignResult: ``gt_inds`` (n,), ``max_overlaps`` (n,), ``labels`` (n,).
        """
        owner = 'DynamicSoftLabelAssigner'
        if gt_instances_ignore is not None and hasattr(gt_instances_ignore, 'masks'):
            raise NotImplementedError(f'{owner} (Jittor): gt masks are not supported')
        if hasattr(gt_instances, 'masks'):
            raise NotImplementedError(f'{owner} (Jittor): the centre of mass of gt masks is not '
                                      'supported; pass boxes only')
        priors = _field(pred_instances, 'priors', owner)
        decoded = _field(pred_instances, 'bboxes', owner)
        scores = _field(pred_instances, 'scores', owner)
        gt_bboxes = _field(gt_instances, 'bboxes', owner)
        gt_labels = _field(gt_instances, 'labels', owner)
        num_priors, num_gt = int(decoded.shape[0]), int(gt_bboxes.shape[0])
        if int(priors.shape[0]) != num_priors or int(scores.shape[0]) != num_priors:
            raise InputError(f'{owner}: priors {tuple(priors.shape)}, bboxes '
                             f'{tuple(decoded.shape)} and scores {tuple(scores.shape)} must have '
                             'the same number of rows')
        if num_gt == 0 or num_priors == 0:
            return self._empty(num_gt, num_priors)
        gt_bboxes = gt_bboxes.reshape(-1, 4)
        centers = priors[:, :2]
        deltas = jt.concat([centers.unsqueeze(1) - gt_bboxes[:, :2].unsqueeze(0),
                            gt_bboxes[:, 2:].unsqueeze(0) - centers.unsqueeze(1)], dim=-1)
        is_in_gts = deltas.min(dim=-1) > 0
        jt.sync([is_in_gts])
        valid = np.nonzero(is_in_gts.numpy().any(axis=1))[0]
        if len(valid) == 0:
            return self._empty(num_gt, num_priors)
        valid_var = jt.array(valid.astype(np.int32))
        cost, ious = self._cost(priors[valid_var], decoded[valid_var], scores[valid_var],
                                gt_bboxes, gt_labels)
        jt.sync([cost, ious, gt_labels])
        cost, ious = cost.numpy(), ious.numpy()
        matched_rows, matched_gt = self.dynamic_k_matching(cost, ious, num_gt)

        gt_inds = np.zeros((num_priors, ), np.int32)
        labels = np.full((num_priors, ), -1, np.int32)
        max_overlaps = np.full((num_priors, ), -INF, np.float32)
        fg = valid[matched_rows]
        gt_inds[fg] = matched_gt + 1
        labels[fg] = gt_labels.numpy().reshape(-1).astype(np.int64)[matched_gt]
        max_overlaps[fg] = ious[matched_rows, matched_gt]
        return AssignResult(num_gt, jt.array(gt_inds), jt.array(max_overlaps), jt.array(labels))

    def _cost(self, priors: jt.Var, decoded: jt.Var, scores: jt.Var, gt_bboxes: jt.Var,
              gt_labels: jt.Var) -> Tuple[jt.Var, jt.Var]:
        """Cost (num_valid, num_gt) and IoUs (num_valid, num_gt) of the candidates."""
        num_valid, num_classes = int(scores.shape[0]), int(scores.shape[1])
        num_gt = int(gt_bboxes.shape[0])
        ious = self.iou_calculator(decoded, gt_bboxes)
        cost = -jt.log(ious + EPS) * self.iou_weight
        onehot = (gt_labels.reshape(1, -1, 1).int32() ==
                  jt.arange(num_classes).int32().reshape(1, 1, -1)).float32()
        soft_label = onehot * ious.unsqueeze(-1)  # (num_valid, num_gt, C)
        z = scores.unsqueeze(1).broadcast((num_valid, num_gt, num_classes))
        bce = jt.maximum(z, 0) - z * soft_label + jt.log(1 + jt.exp(-z.abs()))
        cost = cost + (bce * (soft_label - z.sigmoid()).sqr()).sum(dim=-1)
        if self.soft_center_radius is not None:
            gt_center = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2.0
            distance = ((priors[:, None, :2] - gt_center[None]).sqr().sum(-1).sqrt() /
                        priors[:, 2:3])
            cost = cost + jt.exp((distance - self.soft_center_radius) * math.log(10.0))
        return cost, ious

    def dynamic_k_matching(self, cost: np.ndarray,
                           pairwise_ious: np.ndarray, num_gt: int) -> Tuple[np.ndarray, np.ndarray]:
        """Dynamic-k matching on the host (as SimOTA / mmdet / NanoDet-Plus).

        Args:
            cost (np.ndarray): (num_valid, num_gt) costs.
            pairwise_ious (np.ndarray): (num_valid, num_gt) IoUs.
            num_gt (int): Number of gts.

        Returns:
            tuple[np.ndarray, np.ndarray]: Rows (into the candidates) of the positives, in order,
            and their 0-based gt indices.
        """
        matching = np.zeros(cost.shape, bool)
        candidate_topk = min(self.topk, pairwise_ious.shape[0])
        topk_ious = -np.sort(-pairwise_ious, axis=0)[:candidate_topk]
        dynamic_ks = np.maximum(topk_ious.sum(0, dtype=np.float32).astype(np.int32), 1)
        for gt_idx in range(num_gt):
            matching[_stable_smallest(cost[:, gt_idx], int(dynamic_ks[gt_idx])), gt_idx] = True
        multiple = matching.sum(1) > 1
        if multiple.any():
            cheapest = cost[multiple].argmin(axis=1)
            matching[multiple] = False
            matching[np.nonzero(multiple)[0], cheapest] = True
        rows = np.nonzero(matching.any(axis=1))[0]
        return rows, matching[rows].argmax(axis=1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(soft_center_radius={self.soft_center_radius}, '
                f'topk={self.topk}, iou_weight={self.iou_weight})')
