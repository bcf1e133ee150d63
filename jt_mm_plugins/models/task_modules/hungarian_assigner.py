"""Jittor twin of mmdet's ``HungarianAssigner``: one-to-one matching of predictions to ground
truths minimising the summed match costs, solved by scipy's ``linear_sum_assignment`` (as mmdet)."""
from typing import Dict, List, Optional, Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from jt_mm_plugins.registry import JITTOR_TASK_UTILS, build_jittor_task_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .assign_result import AssignResult
from . import match_cost  # noqa: F401  (registers the match costs)


@JITTOR_TASK_UTILS.register_module()
class HungarianAssigner:
    """Each ground truth gets exactly one prediction (the rest are background, ``gt_inds`` 0), the
    matching with the least total cost (the sum of ``match_costs``).

    Args:
        match_costs (dict | list[dict]): Match cost configs (``ClassificationCost``,
            ``BBoxL1Cost``, ``IoUCost``, ``FocalLossCost``).
    """

    def __init__(self, match_costs: Union[List[dict], dict]) -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise InputError('HungarianAssigner: match_costs must not be an empty list')
        self.match_costs = [build_jittor_task_module(cfg) for cfg in match_costs]

    def cost_matrix(self, pred_instances: Dict, gt_instances: Dict,
                    img_meta: Optional[dict] = None) -> jt.Var:
        """The summed (num_preds, num_gts) cost of detached predictions (lazy: a caller matching
        several images syncs all their matrices at once)."""
        preds = {key: value.detach() for key, value in pred_instances.items()}
        costs = [cost(pred_instances=preds, gt_instances=gt_instances, img_meta=img_meta)
                 for cost in self.match_costs]
        return jt.stack(costs).sum(dim=0)

    @staticmethod
    def assign_from_cost(cost: Optional[np.ndarray], num_preds: int,
                         gt_labels: np.ndarray) -> AssignResult:
        """The assignment for a host cost matrix (None when there is no prediction or no gt)."""
        num_gts = len(gt_labels)
        gt_inds = np.full((num_preds, ), -1, dtype=np.int32)
        labels = np.full((num_preds, ), -1, dtype=np.int32)
        if num_gts == 0 or num_preds == 0:
            if num_gts == 0:
                gt_inds[:] = 0
        else:
            if not np.isfinite(cost).all():
                raise FloatingPointError('HungarianAssigner: the match cost matrix is not finite '
                                         '(NaN or infinite predictions?)')
            rows, cols = linear_sum_assignment(cost)
            gt_inds[:] = 0
            gt_inds[rows] = cols + 1
            labels[rows] = gt_labels[cols]
        return AssignResult(num_gts=num_gts, gt_inds=jt.array(gt_inds), max_overlaps=None,
                            labels=jt.array(labels))

    def assign(self, pred_instances: Dict, gt_instances: Dict,
               img_meta: Optional[dict] = None, **kwargs) -> AssignResult:
        """Match ``pred_instances`` (``scores`` (n, C), ``bboxes`` (n, 4) xyxy pixels) to
        ``gt_instances`` (``bboxes`` (k, 4), ``labels`` (k,)).

        Returns:
            AssignResult: ``gt_inds`` (1-based gt index of each prediction, 0 for background),
            ``labels`` (-1 for background), ``max_overlaps`` None.
        """
        num_preds = int(pred_instances['bboxes'].shape[0])
        gt_labels = gt_instances['labels']
        num_gts = int(gt_labels.shape[0])
        cost = None
        if num_gts and num_preds:
            cost = self.cost_matrix(pred_instances, gt_instances, img_meta).numpy()
        return self.assign_from_cost(cost, num_preds, gt_labels.numpy().astype(np.int64))
