"""Jittor twins of mmdet's ``QualityFocalLoss`` and ``DistributionFocalLoss``
(mmdet/models/losses/gfocal_loss.py), from `Generalized Focal Loss
<https://arxiv.org/abs/2006.04388>`_."""
from typing import Optional, Sequence, Tuple, Union

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_MODELS
from .cross_entropy_loss import binary_cross_entropy_with_logits, log_softmax
from .utils import WeightedLoss, weighted_loss


def binary_cross_entropy_prob(prob: jt.Var, target: jt.Var) -> jt.Var:
    """Element-wise ``F.binary_cross_entropy(prob, target, reduction='none')`` on probabilities
    (torch clamps both logs at -100)."""
    return -(target * jt.maximum(jt.log(prob), -100.) +
             (1 - target) * jt.maximum(jt.log(1 - prob), -100.))


def _positive_mask(label: jt.Var, num_classes: int) -> jt.Var:
    """Bool (N, C): True at (i, label[i]) for labels in [0, C) (background C and negatives give
    all-False rows)."""
    classes = jt.arange(num_classes).int32().reshape(1, -1)
    return label.int32().reshape(-1, 1) == classes


def _qfl(pred: jt.Var, prob: jt.Var, label: jt.Var, score: jt.Var, beta: float,
         bce) -> jt.Var:
    """Shared body of the two label/score QFLs: ``bce(pred, 0) * p^beta`` everywhere, replaced at
    (i, label[i]) by ``bce(pred, score) * |score - p|^beta`` (mmdet writes the positives into the
    negative loss; a select gives the same values and gradients), summed over classes."""
    if pred.ndim != 2:
        raise InputError(f'quality_focal_loss: pred must be (N, C), got {tuple(pred.shape)}')
    if tuple(label.shape) != (pred.shape[0], ) or tuple(score.shape) != (pred.shape[0], ):
        raise InputError(f'quality_focal_loss: label {tuple(label.shape)} and score '
                         f'{tuple(score.shape)} must both be ({pred.shape[0]},)')
    score = score.astype(pred.dtype).reshape(-1, 1)
    neg_loss = bce(pred, jt.zeros_like(pred)) * prob.pow(beta)
    pos_loss = bce(pred, score.broadcast(pred.shape)) * (score - prob).abs().pow(beta)
    loss = jt.ternary(_positive_mask(label, pred.shape[1]), pos_loss, neg_loss)
    return loss.sum(dim=1)


def _split_target(target: Sequence[jt.Var]) -> Tuple[jt.Var, jt.Var]:
    if not isinstance(target, (tuple, list)) or len(target) != 2:
        raise InputError('quality_focal_loss: target must be (label (N,), score (N,)) or a '
                         f'(N, C) soft one-hot Var, got {type(target).__name__}')
    return target[0], target[1]


@weighted_loss
def quality_focal_loss(pred: jt.Var, target: Sequence[jt.Var], beta: float = 2.0) -> jt.Var:
    """Quality Focal Loss on logits, as mmdet's ``quality_focal_loss``.

    Args:
        pred (jt.Var): Joint classification-quality logits (N, C).
        target (tuple[jt.Var]): Category label (N,) (C is background) and quality (IoU) (N,).
        beta (float): Exponent of the modulating factor. Defaults to 2.0.

    Returns:
        jt.Var: Loss per prediction, (N,).
    """
    label, score = _split_target(target)
    return _qfl(pred, pred.sigmoid(), label, score, beta, binary_cross_entropy_with_logits)


@weighted_loss
def quality_focal_loss_with_prob(pred: jt.Var, target: Sequence[jt.Var],
                                 beta: float = 2.0) -> jt.Var:
    """Quality Focal Loss on probabilities, as mmdet's ``quality_focal_loss_with_prob``.

    Args:
        pred (jt.Var): Joint classification-quality probabilities (N, C).
        target (tuple[jt.Var]): Category label (N,) and quality (N,).
        beta (float): Exponent of the modulating factor. Defaults to 2.0.

    Returns:
        jt.Var: Loss per prediction, (N,).
    """
    label, score = _split_target(target)
    return _qfl(pred, pred, label, score, beta, binary_cross_entropy_prob)


@weighted_loss
def quality_focal_loss_tensor_target(pred: jt.Var,
                                     target: jt.Var,
                                     beta: float = 2.0,
                                     activated: bool = False) -> jt.Var:
    """Quality Focal Loss with a soft one-hot (N, C) target, as mmdet's
    ``quality_focal_loss_tensor_target`` (positives are the non-zero target entries).

    Args:
        pred (jt.Var): Logits (or probabilities when ``activated``) (N, C).
        target (jt.Var): Soft targets (N, C).
        beta (float): Exponent of the modulating factor. Defaults to 2.0.
        activated (bool): Whether ``pred`` holds probabilities. Defaults to False.

    Returns:
        jt.Var: Loss per prediction, (N,).
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise InputError(f'quality_focal_loss: pred {tuple(pred.shape)} and tensor target '
                         f'{tuple(target.shape)} must have the same shape')
    prob, bce = (pred, binary_cross_entropy_prob) if activated else (
        pred.sigmoid(), binary_cross_entropy_with_logits)
    target = target.astype(pred.dtype)
    neg_loss = bce(pred, jt.zeros_like(pred)) * prob.pow(beta)
    pos_loss = bce(pred, target) * (target - prob).abs().pow(beta)
    return jt.ternary(target != 0, pos_loss, neg_loss).sum(dim=1)


@weighted_loss
def distribution_focal_loss(pred: jt.Var, label: jt.Var) -> jt.Var:
    """Distribution Focal Loss, as mmdet's ``distribution_focal_loss``: cross-entropy towards the
    two integers around the target, weighted by its distance to each.

    Args:
        pred (jt.Var): Logits of the discretised distance distribution (N, n + 1).
        label (jt.Var): Target distances (N,) in [0, n) (the bins are 0..n).

    Returns:
        jt.Var: Loss per prediction, (N,).
    """
    if pred.ndim != 2 or tuple(label.shape) != (pred.shape[0], ):
        raise InputError(f'distribution_focal_loss: pred must be (N, n + 1) and label (N,), got '
                         f'{tuple(pred.shape)} and {tuple(label.shape)}')
    label = label.astype(pred.dtype)
    dis_left = label.int32()  # truncation, as torch's .long() of non-negative targets
    dis_right = dis_left + 1
    weight_left = dis_right.astype(pred.dtype) - label
    weight_right = label - dis_left.astype(pred.dtype)
    log_prob = log_softmax(pred, dim=1)
    bins = jt.arange(pred.shape[1]).int32().reshape(1, -1)
    ce_left = -(log_prob * (bins == dis_left.reshape(-1, 1)).astype(pred.dtype)).sum(dim=1)
    ce_right = -(log_prob * (bins == dis_right.reshape(-1, 1)).astype(pred.dtype)).sum(dim=1)
    return ce_left * weight_left + ce_right * weight_right


@JITTOR_MODELS.register_module()
class QualityFocalLoss(WeightedLoss):
    """`Quality Focal Loss <https://arxiv.org/abs/2006.04388>`_, as mmdet's ``QualityFocalLoss``.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)`` (see
    :class:`WeightedLoss`) with ``pred`` (N, C) and ``target`` either ``(label (N,), score (N,))``
    or a soft one-hot (N, C) Var; ``weight`` (N,).

    Args:
        use_sigmoid (bool): Must be True, as in mmdet (QFL is a sigmoid loss). Defaults to True.
        beta (float): Exponent of the modulating factor ``|q - p|^beta``. Defaults to 2.0.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        activated (bool): True when ``pred`` is already a probability (GFocalV2's joint score),
            False for logits. Defaults to False.
    """

    def __init__(self, use_sigmoid: bool = True, beta: float = 2.0, reduction: str = 'mean',
                 loss_weight: float = 1.0, activated: bool = False) -> None:
        if use_sigmoid is not True:
            raise InputError('QualityFocalLoss: only sigmoid in QFL is supported '
                             f'(use_sigmoid=True), got use_sigmoid={use_sigmoid!r}')
        super().__init__(reduction, loss_weight)
        self.use_sigmoid = use_sigmoid
        self.beta = beta
        self.activated = activated

    def compute_loss(self, pred: jt.Var, target: Union[jt.Var, Sequence[jt.Var]],
                     weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        if isinstance(target, jt.Var):
            return quality_focal_loss_tensor_target(
                pred, target, weight, beta=self.beta, activated=self.activated,
                reduction=reduction, avg_factor=avg_factor)
        loss_func = quality_focal_loss_with_prob if self.activated else quality_focal_loss
        return loss_func(pred, target, weight, beta=self.beta, reduction=reduction,
                         avg_factor=avg_factor)


@JITTOR_MODELS.register_module()
class DistributionFocalLoss(WeightedLoss):
    """`Distribution Focal Loss <https://arxiv.org/abs/2006.04388>`_, as mmdet's
    ``DistributionFocalLoss``.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)`` with
    logits (N, n + 1), target distances (N,) and a weight (N,).

    Args:
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        return distribution_focal_loss(pred, target, weight, reduction=reduction,
                                       avg_factor=avg_factor)
