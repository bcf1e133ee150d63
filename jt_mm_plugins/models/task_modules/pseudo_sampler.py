"""Jittor twin of mmdet's ``PseudoSampler`` (mmdet/models/task_modules/samplers)."""
from typing import Any, Optional

import numpy as np

from jt_mm_plugins.runtime import jt
from .assign_result import AssignResult
from jt_mm_plugins.registry import JITTOR_TASK_UTILS
from .sampling_result import SamplingResult


@JITTOR_TASK_UTILS.register_module()
class PseudoSampler:
    """A sampler that keeps every positive and every negative prior (no sampling), as mmdet's
    ``PseudoSampler``; used by heads that weight all priors (RetinaNet, GFL, ...).

    ``avg_factor`` of the result counts positives only, as in mmdet.

    Args:
        context (object, optional): Accepted (and unused) because mmdet heads build samplers with
            ``default_args=dict(context=self)``. Defaults to None.
    """

    def __init__(self, context: Optional[Any] = None) -> None:
        pass

    def sample(self,
               assign_result: AssignResult,
               priors: Any,
               gt_bboxes: Any,
               gt_labels: Optional[jt.Var] = None) -> SamplingResult:
        """Return all positives (gt_inds > 0) and all negatives (gt_inds == 0).

        Args:
            assign_result (AssignResult): Assignment of ``priors``.
            priors (jt.Var | InstanceData): Priors (n, 4), or an object with ``.priors``.
            gt_bboxes (jt.Var | InstanceData): Gt boxes (k, 4), or an object with ``.bboxes``.
            gt_labels (jt.Var, optional): Unused; accepted for a uniform sampler interface.

        Returns:
            SamplingResult: All positive and negative priors.
        """
        priors = getattr(priors, 'priors', priors)
        gt_bboxes = getattr(gt_bboxes, 'bboxes', gt_bboxes)
        gt_inds = assign_result.gt_inds.numpy()
        pos_inds = np.nonzero(gt_inds > 0)[0]
        neg_inds = np.nonzero(gt_inds == 0)[0]
        gt_flags = np.zeros((priors.shape[0], ), dtype=np.uint8)
        return SamplingResult(pos_inds, neg_inds, priors, gt_bboxes, assign_result, gt_flags,
                              avg_factor_with_neg=False)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
