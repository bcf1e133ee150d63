"""Jittor twin of mmdet's ``MaxIoUAssigner`` (mmdet/models/task_modules/assigners)."""
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .assign_result import AssignResult
from .iou2d_calculator import BboxOverlaps2D  # noqa: F401  (registers the default calculator)
from jt_mm_plugins.registry import JITTOR_TASK_UTILS, build_jittor_task_module


def _unpack(obj: Any, field: str) -> Any:
    """Accept either a Var or an mmdet-style ``InstanceData`` (anything with ``field``)."""
    return getattr(obj, field) if hasattr(obj, field) else obj


def unpack_assign_inputs(priors: Any, gt_bboxes: Any, gt_labels: Optional[jt.Var],
                         gt_bboxes_ignore: Optional[Any]) -> Tuple[jt.Var, jt.Var, Optional[jt.Var],
                                                                   Optional[jt.Var]]:
    """An assigner's inputs as Vars: ``priors``, ``gt_bboxes``, ``gt_labels`` (from
    ``gt_bboxes.labels`` when an instance object is given and no labels are) and
    ``gt_bboxes_ignore``; each may be a Var or an mmdet-style ``InstanceData``."""
    if gt_labels is None and hasattr(gt_bboxes, 'labels'):
        gt_labels = gt_bboxes.labels
    if gt_bboxes_ignore is not None:
        gt_bboxes_ignore = _unpack(gt_bboxes_ignore, 'bboxes')
    return _unpack(priors, 'priors'), _unpack(gt_bboxes, 'bboxes'), gt_labels, gt_bboxes_ignore


def _first_argmax(x: jt.Var, dim: int) -> Tuple[jt.Var, jt.Var]:
    """(max values, index of the FIRST maximum) along ``dim`` of a 2-D Var.

    torch's CPU ``max(dim)`` returns the first maximal index; Jittor's arg-reduce does not promise
    which one it returns on ties, and ties are common (symmetric anchors, repeated boxes).
    """
    values = x.max(dim=dim, keepdims=True)
    size = x.shape[dim]
    positions = jt.arange(size).int32().reshape((size, 1) if dim == 0 else (1, size))
    positions = positions.broadcast(x.shape)
    candidates = jt.ternary(x == values, positions, jt.zeros_like(positions) + size)
    return values.squeeze(dim), candidates.min(dim=dim)


@JITTOR_TASK_UTILS.register_module()
class MaxIoUAssigner:
    """Assign each prior to a gt box or to the background by IoU, as in
    `Faster R-CNN <https://arxiv.org/abs/1506.01497>`_ (mmdet's ``MaxIoUAssigner``).

    Each prior gets -1 (ignored), 0 (negative) or a 1-based gt index. Steps, in order:

    1. every prior starts as -1;
    2. priors whose max IoU lies in the negative range become 0;
    3. priors whose max IoU >= ``pos_iou_thr`` take their best gt;
    4. with ``match_low_quality``, each gt (in index order, later gts winning) takes its best
       prior(s) if that IoU >= ``min_pos_iou``.

    Args:
        pos_iou_thr (float): IoU threshold for positives.
        neg_iou_thr (float | tuple[float, float]): IoU below which a prior is negative, or a
            [low, high) range.
        min_pos_iou (float): Minimum IoU for a low-quality match (step 4). Defaults to 0.
        gt_max_assign_all (bool): Whether step 4 assigns all priors that tie for a gt's best IoU
            (else only the first). Defaults to True.
        ignore_iof_thr (float): IoF with an ignored box above which a prior is ignored; negative
            disables ignoring. Defaults to -1.
        ignore_wrt_candidates (bool): Whether the IoF is computed relative to the priors (else to
            the ignored boxes). Defaults to True.
        match_low_quality (bool): Whether to run step 4. Defaults to True.
        gpu_assign_thr (float): Accepted for mmdet config compatibility; Jittor assigns on its
            current device regardless. Defaults to -1.
        iou_calculator (dict): Config of the overlap calculator. Defaults to
            ``dict(type='BboxOverlaps2D')``.
        perm_repeat_gt_cfg (dict, optional): Not supported (only None). Defaults to None.
    """

    def __init__(self,
                 pos_iou_thr: float,
                 neg_iou_thr: Union[float, Sequence[float]],
                 min_pos_iou: float = .0,
                 gt_max_assign_all: bool = True,
                 ignore_iof_thr: float = -1,
                 ignore_wrt_candidates: bool = True,
                 match_low_quality: bool = True,
                 gpu_assign_thr: float = -1,
                 iou_calculator: dict = dict(type='BboxOverlaps2D'),
                 perm_repeat_gt_cfg: Optional[dict] = None) -> None:
        if perm_repeat_gt_cfg is not None:
            raise NotImplementedError(
                'MaxIoUAssigner (Jittor): perm_repeat_gt_cfg is not supported')
        if isinstance(neg_iou_thr, (list, tuple)):
            if len(neg_iou_thr) != 2:
                raise InputError(f'MaxIoUAssigner: a neg_iou_thr range needs 2 values, got '
                                 f'{neg_iou_thr!r}')
            neg_iou_thr = (float(neg_iou_thr[0]), float(neg_iou_thr[1]))
        elif isinstance(neg_iou_thr, (int, float)):
            neg_iou_thr = float(neg_iou_thr)
        else:
            raise TypeError(f'MaxIoUAssigner: neg_iou_thr must be a float or a (low, high) pair, '
                            f'got {neg_iou_thr!r}')
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.gpu_assign_thr = gpu_assign_thr
        self.match_low_quality = match_low_quality
        self.iou_calculator = build_jittor_task_module(iou_calculator)
        self.perm_repeat_gt_cfg = perm_repeat_gt_cfg

    def assign(self,
               priors: Any,
               gt_bboxes: Any,
               gt_labels: Optional[jt.Var] = None,
               gt_bboxes_ignore: Optional[Any] = None) -> AssignResult:
        """Assign gt boxes to priors.

        Args:
            priors (jt.Var | InstanceData): Priors (anchors, proposals) (n, 4), or an object with
                ``.priors`` (mmdet's ``pred_instances``).
            gt_bboxes (jt.Var | InstanceData): Gt boxes (k, 4), or an object with ``.bboxes`` and
                ``.labels`` (mmdet's ``gt_instances``).
            gt_labels (jt.Var, optional): Gt labels (k,); taken from ``gt_bboxes.labels`` when an
                instance object is given. Without labels, ``AssignResult.labels`` is None.
            gt_bboxes_ignore (jt.Var | InstanceData, optional): Boxes to ignore (j, 4).
                Defaults to None.

        Returns:
            AssignResult: The assignment.
        """
        priors, gt_bboxes, gt_labels, gt_bboxes_ignore = unpack_assign_inputs(
            priors, gt_bboxes, gt_labels, gt_bboxes_ignore)

        overlaps = self.iou_calculator(gt_bboxes, priors)
        num_priors = priors.shape[0] if priors.ndim > 1 else 0
        if (self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None
                and gt_bboxes_ignore.numel() > 0 and num_priors > 0):
            if self.ignore_wrt_candidates:
                ignore_max = self.iou_calculator(priors, gt_bboxes_ignore, mode='iof').max(dim=1)
            else:
                ignore_max = self.iou_calculator(gt_bboxes_ignore, priors, mode='iof').max(dim=0)
            ignored = (ignore_max > self.ignore_iof_thr)[None, :].broadcast(overlaps.shape)
            overlaps = jt.ternary(ignored, jt.zeros_like(overlaps) - 1, overlaps)
        return self.assign_wrt_overlaps(overlaps, gt_labels)

    def assign_wrt_overlaps(self, overlaps: jt.Var,
                            gt_labels: Optional[jt.Var] = None) -> AssignResult:
        """Assign from a precomputed (num_gts, num_priors) overlap matrix.

        Args:
            overlaps (jt.Var): Overlaps between k gt boxes and n priors, shape (k, n).
            gt_labels (jt.Var, optional): Labels of the k gt boxes. Defaults to None.

        Returns:
            AssignResult: The assignment.
        """
        num_gts, num_priors = int(overlaps.shape[0]), int(overlaps.shape[1])
        if num_gts == 0 or num_priors == 0:
            return self._empty_assignment(num_gts, num_priors, gt_labels)

        max_overlaps, argmax_overlaps = _first_argmax(overlaps, dim=0)
        gt_max_overlaps, gt_argmax_overlaps = _first_argmax(overlaps, dim=1)

        # 1. ignored (-1) by default
        assigned = jt.zeros((num_priors, ), dtype='int32') - 1
        # 2. negatives: max IoU in the negative range
        if isinstance(self.neg_iou_thr, tuple):
            low, high = self.neg_iou_thr
            negative = jt.logical_and(max_overlaps >= low, max_overlaps < high)
        else:
            negative = jt.logical_and(max_overlaps >= 0, max_overlaps < self.neg_iou_thr)
        assigned = jt.ternary(negative, jt.zeros_like(assigned), assigned)
        # 3. positives: max IoU above the positive threshold
        positive = max_overlaps >= self.pos_iou_thr
        assigned = jt.ternary(positive, argmax_overlaps.int32() + 1, assigned)
        # 4. low-quality matches: every gt claims its best prior(s)
        if self.match_low_quality:
            assigned = self._match_low_quality(overlaps, gt_max_overlaps, gt_argmax_overlaps,
                                               assigned)

        labels = None
        if gt_labels is not None:
            gt_labels = gt_labels.int32().reshape(-1)
            label_of_prior = gt_labels[jt.maximum(assigned - 1, 0)]
            labels = jt.ternary(assigned > 0, label_of_prior, jt.zeros_like(assigned) - 1)
        return AssignResult(num_gts, assigned, max_overlaps, labels)

    def _match_low_quality(self, overlaps: jt.Var, gt_max_overlaps: jt.Var,
                           gt_argmax_overlaps: jt.Var, assigned: jt.Var) -> jt.Var:
        """Step 4 without a Python loop over gts.

        mmdet loops over gts in order and later gts overwrite earlier ones; taking, per prior, the
        largest 1-based index of the gts that claim it reproduces that exactly.
        """
        num_gts, num_priors = overlaps.shape
        eligible = (gt_max_overlaps >= self.min_pos_iou)[:, None].broadcast(overlaps.shape)
        if self.gt_max_assign_all:
            claims = overlaps == gt_max_overlaps[:, None].broadcast(overlaps.shape)
        else:
            prior_ids = jt.arange(num_priors).int32()[None, :].broadcast(overlaps.shape)
            claims = prior_ids == gt_argmax_overlaps.int32()[:, None].broadcast(overlaps.shape)
        claims = jt.logical_and(claims, eligible)
        gt_ids = jt.array(np.arange(1, num_gts + 1, dtype=np.int32))[:, None].broadcast(
            overlaps.shape)
        claimant = jt.ternary(claims, gt_ids, jt.zeros_like(gt_ids)).max(dim=0)
        return jt.ternary(claimant > 0, claimant, assigned)

    @staticmethod
    def _empty_assignment(num_gts: int, num_priors: int,
                          gt_labels: Optional[jt.Var]) -> AssignResult:
        """No gts (all priors negative) or no priors (empty result), as mmdet."""
        fill = 0 if num_gts == 0 else -1
        gt_inds = jt.array(np.full((num_priors, ), fill, dtype=np.int32))
        max_overlaps = jt.array(np.zeros((num_priors, ), dtype=np.float32))
        labels = None if gt_labels is None else jt.array(np.full((num_priors, ), -1, np.int32))
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pos_iou_thr={self.pos_iou_thr}, neg_iou_thr='
                f'{self.neg_iou_thr}, min_pos_iou={self.min_pos_iou}, gt_max_assign_all='
                f'{self.gt_max_assign_all}, ignore_iof_thr={self.ignore_iof_thr}, '
                f'match_low_quality={self.match_low_quality})')
