"""Jittor twin of mmdet's ``RandomSampler`` (mmdet/models/task_modules/samplers)."""
from typing import Any, Optional, Union

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .assign_result import AssignResult
from jt_mm_plugins.registry import JITTOR_TASK_UTILS
from .sampling_result import SamplingResult

RngLike = Union[None, int, np.random.Generator, np.random.RandomState]


def _ensure_rng(rng: RngLike) -> Union[np.random.Generator, np.random.RandomState]:
    """None: numpy's global state (seeded by mmengine's ``randomness`` config); int: a seeded
    ``Generator``; a Generator/RandomState is used as is."""
    if rng is None:
        return np.random.mtrand._rand
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    raise TypeError(f'RandomSampler: rng must be None, an int seed, a numpy Generator or '
                    f'RandomState, got {type(rng).__name__}')


def _unpack(obj: Any, field: str) -> Any:
    return getattr(obj, field) if hasattr(obj, field) else obj


@JITTOR_TASK_UTILS.register_module()
class RandomSampler:
    """Randomly sample positive and negative priors, as mmdet's ``RandomSampler`` (the R-CNN
    family's minibatch sampling, `Fast R-CNN <https://arxiv.org/abs/1504.08083>`_).

    Sampling is decided on the host with numpy. Two hooks make it reproducible: ``rng`` (seed or
    numpy generator) and ``deterministic`` (take the lowest-index candidates instead of a random
    subset). For an alignment test against mmdet, set ``deterministic=True`` here and patch mmdet's
    ``RandomSampler.random_choice`` to ``lambda self, gallery, num: gallery[:num]``: both then pick
    the same priors. When all candidates fit (``num`` large enough) no randomness is involved.

    Args:
        num (int): Number of samples per image.
        pos_fraction (float): Fraction of positives among ``num``.
        neg_pos_ub (int): Upper bound of negatives per positive; negative means no bound.
            Defaults to -1.
        add_gt_as_proposals (bool): Whether gt boxes are prepended to the priors as positives.
            Defaults to True.
        rng (int | np.random.Generator | np.random.RandomState, optional): Random source.
            Defaults to None (numpy's global state).
        deterministic (bool): Take the first candidates instead of random ones. Defaults to False.
        context (object, optional): Accepted (and unused) because mmdet heads build samplers with
            ``default_args=dict(context=self)``. Defaults to None.
    """

    def __init__(self,
                 num: int,
                 pos_fraction: float,
                 neg_pos_ub: int = -1,
                 add_gt_as_proposals: bool = True,
                 rng: RngLike = None,
                 deterministic: bool = False,
                 context: Optional[Any] = None) -> None:
        if num < 0 or not 0 <= pos_fraction <= 1:
            raise InputError(f'RandomSampler: need num >= 0 and 0 <= pos_fraction <= 1, got '
                             f'num={num}, pos_fraction={pos_fraction}')
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals
        self.rng = _ensure_rng(rng)
        self.deterministic = deterministic

    def random_choice(self, gallery: np.ndarray, num: int) -> np.ndarray:
        """Pick ``num`` elements of ``gallery`` (random, or the first ones when deterministic).

        Args:
            gallery (np.ndarray): Candidate indices.
            num (int): Number to pick, at most ``len(gallery)``.

        Returns:
            np.ndarray: The picked indices.
        """
        if num > len(gallery):
            raise InputError(f'RandomSampler: cannot pick {num} of {len(gallery)} candidates')
        if self.deterministic:
            return gallery[:num]
        return gallery[self.rng.permutation(len(gallery))[:num]]

    def _sample_pos(self, gt_inds: np.ndarray, num_expected: int) -> np.ndarray:
        pos_inds = np.nonzero(gt_inds > 0)[0]
        return pos_inds if len(pos_inds) <= num_expected else self.random_choice(
            pos_inds, num_expected)

    def _sample_neg(self, gt_inds: np.ndarray, num_expected: int) -> np.ndarray:
        neg_inds = np.nonzero(gt_inds == 0)[0]
        return neg_inds if len(neg_inds) <= num_expected else self.random_choice(
            neg_inds, num_expected)

    def sample(self,
               assign_result: AssignResult,
               priors: Any,
               gt_bboxes: Any,
               gt_labels: Optional[jt.Var] = None) -> SamplingResult:
        """Sample positives and negatives from an assignment.

        Like mmdet, with ``add_gt_as_proposals`` this prepends the gt boxes to the priors and
        updates ``assign_result`` in place (``add_gt_``).

        Args:
            assign_result (AssignResult): Assignment of ``priors``.
            priors (jt.Var | InstanceData): Priors (n, 4), or an object with ``.priors``.
            gt_bboxes (jt.Var | InstanceData): Gt boxes (k, 4), or an object with ``.bboxes`` and
                ``.labels``.
            gt_labels (jt.Var, optional): Gt labels (k,); needed with ``add_gt_as_proposals``.

        Returns:
            SamplingResult: The sampled priors and their targets.
        """
        if gt_labels is None and hasattr(gt_bboxes, 'labels'):
            gt_labels = gt_bboxes.labels
        priors = _unpack(priors, 'priors')
        gt_bboxes = _unpack(gt_bboxes, 'bboxes')
        if priors.ndim < 2:
            priors = priors[None, :]
        num_gts = int(gt_bboxes.shape[0]) if gt_bboxes.ndim > 1 else 0

        gt_flags = np.zeros((priors.shape[0], ), dtype=np.uint8)
        if self.add_gt_as_proposals and num_gts > 0:
            if gt_labels is None:
                raise InputError('RandomSampler: add_gt_as_proposals=True needs gt_labels')
            priors = jt.concat([gt_bboxes.cast(priors.dtype), priors], dim=0)
            assign_result.add_gt_(gt_labels)
            gt_flags = np.concatenate([np.ones((num_gts, ), np.uint8), gt_flags])

        gt_inds = assign_result.gt_inds.numpy()
        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = np.unique(self._sample_pos(gt_inds, num_expected_pos))
        num_expected_neg = self.num - len(pos_inds)
        if self.neg_pos_ub >= 0:
            neg_upper_bound = int(self.neg_pos_ub * max(1, len(pos_inds)))
            num_expected_neg = min(num_expected_neg, neg_upper_bound)
        neg_inds = np.unique(self._sample_neg(gt_inds, num_expected_neg))
        return SamplingResult(pos_inds, neg_inds, priors, gt_bboxes, assign_result, gt_flags)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num={self.num}, pos_fraction={self.pos_fraction}, '
                f'neg_pos_ub={self.neg_pos_ub}, add_gt_as_proposals={self.add_gt_as_proposals}, '
                f'deterministic={self.deterministic})')
