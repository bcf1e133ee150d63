"""Jittor twin of mmdet's sigmoid ``FocalLoss`` (mmdet/models/losses/focal_loss.py)."""
from typing import Optional, Union

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.registry import JITTOR_MODELS
from .cross_entropy_loss import binary_cross_entropy_with_logits
from .utils import WeightedLoss, expand_weight_like, weight_reduce_loss


def _to_one_hot(target: jt.Var, num_classes: int) -> jt.Var:
    """Class indices (N,) in [0, num_classes] to float one-hot (N, num_classes); index
    ``num_classes`` is background (all zeros)."""
    classes = jt.arange(num_classes).int32()[None, :]
    return (target.int32()[:, None] == classes).float32()


def _focal_weight(prob: jt.Var, target: jt.Var, gamma: float, alpha: float) -> jt.Var:
    # pt here is (1 - p_t) of the paper, hence pt ** gamma
    pt = (1 - prob) * target + prob * (1 - target)
    return (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)


def sigmoid_focal_loss(pred: jt.Var,
                       target: jt.Var,
                       weight: Optional[jt.Var] = None,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       reduction: str = 'mean',
                       avg_factor: Optional[Union[float, jt.Var]] = None) -> jt.Var:
    """Sigmoid focal loss on logits with one-hot (float) targets, as mmdet's
    ``py_sigmoid_focal_loss`` (and numerically mmcv's CUDA kernel).

    Args:
        pred (jt.Var): Logits (N, C).
        target (jt.Var): One-hot targets (N, C).
        weight (jt.Var, optional): Weight (N,), (N, C) or flattened (N * C,). Defaults to None.
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Balance between positives and negatives. Defaults to 0.25.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.

    Returns:
        jt.Var: The loss.
    """
    target = target.float32()
    focal_weight = _focal_weight(pred.sigmoid(), target, gamma, alpha)
    loss = binary_cross_entropy_with_logits(pred, target) * focal_weight
    return weight_reduce_loss(loss, expand_weight_like(weight, loss), reduction, avg_factor)


def focal_loss_with_prob(pred: jt.Var,
                         target: jt.Var,
                         weight: Optional[jt.Var] = None,
                         gamma: float = 2.0,
                         alpha: float = 0.25,
                         reduction: str = 'mean',
                         avg_factor: Optional[Union[float, jt.Var]] = None) -> jt.Var:
    """Focal loss on probabilities (``activated=True``), as mmdet's ``py_focal_loss_with_prob``.

    Args:
        pred (jt.Var): Probabilities (N, C).
        target (jt.Var): One-hot targets (N, C) or class indices (N,).
        weight (jt.Var, optional): Weight (N,), (N, C) or (N * C,). Defaults to None.
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Balance between positives and negatives. Defaults to 0.25.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.

    Returns:
        jt.Var: The loss.
    """
    if pred.ndim != target.ndim:
        target = _to_one_hot(target, pred.shape[1])
    target = target.float32()
    focal_weight = _focal_weight(pred, target, gamma, alpha)
    # F.binary_cross_entropy clamps the logs at -100
    bce = -(target * jt.maximum(jt.log(pred), -100.) +
            (1 - target) * jt.maximum(jt.log(1 - pred), -100.))
    loss = bce * focal_weight
    return weight_reduce_loss(loss, expand_weight_like(weight, loss), reduction, avg_factor)


@JITTOR_MODELS.register_module()
class FocalLoss(WeightedLoss):
    """Sigmoid `Focal Loss <https://arxiv.org/abs/1708.02002>`_, as mmdet's ``FocalLoss``.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)``
    (see :class:`WeightedLoss`) with logits (or probabilities when ``activated``) (N, C), targets
    as class indices (N,) with C as background or one-hot (N, C), and a weight (N,), (N, C) or
    (N * C,).

    Args:
        use_sigmoid (bool): Only True (sigmoid focal loss) is supported. Defaults to True.
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Balance between positives and negatives. Defaults to 0.25.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        activated (bool): Whether ``pred`` holds probabilities instead of logits.
            Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 gamma: float = 2.0,
                 alpha: float = 0.25,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 activated: bool = False) -> None:
        if use_sigmoid is not True:
            raise NotImplementedError('FocalLoss: only the sigmoid focal loss (use_sigmoid=True) '
                                      'is supported')
        super().__init__(reduction, loss_weight)
        self.use_sigmoid = use_sigmoid
        self.gamma = gamma
        self.alpha = alpha
        self.activated = activated

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        if self.activated:
            loss_func = focal_loss_with_prob
        else:
            if pred.ndim != target.ndim:
                target = _to_one_hot(target, pred.shape[1])
            loss_func = sigmoid_focal_loss
        return loss_func(
            pred,
            target,
            weight,
            gamma=self.gamma,
            alpha=self.alpha,
            reduction=reduction,
            avg_factor=avg_factor)
