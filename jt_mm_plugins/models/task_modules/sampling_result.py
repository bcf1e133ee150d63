"""Jittor twin of mmdet's ``SamplingResult`` (mmdet/models/task_modules/samplers)."""
from typing import Any, Dict, Optional

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .assign_result import AssignResult


def _take(values: Optional[jt.Var], inds: np.ndarray, row_shape: tuple = ()) -> Optional[jt.Var]:
    """``values[inds]`` for int64 numpy indices; an empty index gives an empty Var of the right
    shape (Jittor's gather with an empty index is not relied on)."""
    if values is None:
        return None
    if len(inds) == 0:
        return jt.array(np.zeros((0, ) + row_shape, dtype=np.dtype(str(values.dtype))))
    return values[jt.array(inds.astype(np.int32))]


class SamplingResult:
    """Positive/negative priors picked by a sampler, with their targets (mmdet's fields).

    Indices are kept both as Jittor Vars (``pos_inds``, ``neg_inds``, int32) and as numpy arrays
    (``pos_inds_np``, ``neg_inds_np``) because samplers decide on the host anyway.

    Args:
        pos_inds (np.ndarray): Sorted indices of positive priors.
        neg_inds (np.ndarray): Sorted indices of negative priors.
        priors (jt.Var): All priors (n, 4) (with gt boxes prepended if the sampler added them).
        gt_bboxes (jt.Var): Gt boxes (k, 4).
        assign_result (AssignResult): Assignment of ``priors``.
        gt_flags (np.ndarray): 1 for priors that are gt boxes, else 0, shape (n,).
        avg_factor_with_neg (bool): Whether ``avg_factor`` counts negatives too (else positives
            only). Defaults to True.
    """

    def __init__(self,
                 pos_inds: np.ndarray,
                 neg_inds: np.ndarray,
                 priors: jt.Var,
                 gt_bboxes: jt.Var,
                 assign_result: AssignResult,
                 gt_flags: np.ndarray,
                 avg_factor_with_neg: bool = True) -> None:
        self.pos_inds_np = np.asarray(pos_inds, dtype=np.int64).reshape(-1)
        self.neg_inds_np = np.asarray(neg_inds, dtype=np.int64).reshape(-1)
        self.pos_inds = jt.array(self.pos_inds_np.astype(np.int32))
        self.neg_inds = jt.array(self.neg_inds_np.astype(np.int32))
        self.num_pos = max(len(self.pos_inds_np), 1)
        self.num_neg = max(len(self.neg_inds_np), 1)
        self.avg_factor_with_neg = avg_factor_with_neg
        self.avg_factor = self.num_pos + self.num_neg if avg_factor_with_neg else self.num_pos

        box_dim = int(priors.shape[-1])
        self.pos_priors = _take(priors, self.pos_inds_np, (box_dim, ))
        self.neg_priors = _take(priors, self.neg_inds_np, (box_dim, ))
        self.pos_is_gt = jt.array(np.asarray(gt_flags, np.uint8)[self.pos_inds_np])

        self.num_gts = int(gt_bboxes.shape[0]) if gt_bboxes.ndim > 1 else 0
        gt_inds = assign_result.gt_inds.numpy()[self.pos_inds_np]
        self.pos_assigned_gt_inds = jt.array((gt_inds - 1).astype(np.int32))
        self.pos_gt_labels = _take(assign_result.labels, self.pos_inds_np)
        if self.num_gts == 0:
            if len(gt_inds):
                raise InputError('SamplingResult: positive priors but no gt boxes')
            self.pos_gt_bboxes = jt.zeros((0, 4), dtype=gt_bboxes.dtype)
        else:
            self.pos_gt_bboxes = _take(gt_bboxes.reshape(-1, 4), (gt_inds - 1).astype(np.int64),
                                       (4, ))

    @property
    def priors(self) -> jt.Var:
        """jt.Var: Positive then negative priors, concatenated."""
        return jt.concat([self.pos_priors, self.neg_priors], dim=0)

    @property
    def bboxes(self) -> jt.Var:
        """jt.Var: Alias of :attr:`priors` (mmdet's older name)."""
        return self.priors

    @property
    def pos_bboxes(self) -> jt.Var:
        """jt.Var: Alias of :attr:`pos_priors`."""
        return self.pos_priors

    @property
    def neg_bboxes(self) -> jt.Var:
        """jt.Var: Alias of :attr:`neg_priors`."""
        return self.neg_priors

    @property
    def info(self) -> Dict[str, Any]:
        """dict: The result's main fields."""
        return {
            'pos_inds': self.pos_inds,
            'neg_inds': self.neg_inds,
            'pos_priors': self.pos_priors,
            'neg_priors': self.neg_priors,
            'pos_is_gt': self.pos_is_gt,
            'num_gts': self.num_gts,
            'pos_assigned_gt_inds': self.pos_assigned_gt_inds,
            'num_pos': self.num_pos,
            'num_neg': self.num_neg,
            'avg_factor': self.avg_factor,
        }

    def __repr__(self) -> str:
        return (f'<SamplingResult(num_pos={len(self.pos_inds_np)}, '
                f'num_neg={len(self.neg_inds_np)}, num_gts={self.num_gts}, '
                f'avg_factor={self.avg_factor})>')
