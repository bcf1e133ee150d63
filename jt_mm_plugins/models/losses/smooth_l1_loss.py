"""Jittor twins of mmdet's ``SmoothL1Loss`` and ``L1Loss``
(mmdet/models/losses/smooth_l1_loss.py)."""
from typing import Optional, Union

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_MODELS
from .utils import WeightedLoss, weighted_loss


def _check_shapes(pred: jt.Var, target: jt.Var, owner: str) -> None:
    if tuple(pred.shape) != tuple(target.shape):
        raise InputError(f'{owner}: pred {tuple(pred.shape)} and target {tuple(target.shape)} '
                         'must have the same shape')


@weighted_loss
def smooth_l1_loss(pred: jt.Var, target: jt.Var, beta: float = 1.0) -> jt.Var:
    """Element-wise smooth L1 loss: ``0.5 d^2 / beta`` if ``d < beta`` else ``d - 0.5 beta``.

    Args:
        pred (jt.Var): Prediction.
        target (jt.Var): Target, same shape.
        beta (float): Threshold between the quadratic and linear parts. Defaults to 1.0.

    Returns:
        jt.Var: Element-wise loss.
    """
    if beta <= 0:
        raise InputError(f'smooth_l1_loss: beta must be > 0, got {beta}')
    if target.numel() == 0:
        return pred.sum() * 0
    _check_shapes(pred, target, 'smooth_l1_loss')
    diff = (pred - target).abs()
    return jt.ternary(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


@weighted_loss
def l1_loss(pred: jt.Var, target: jt.Var) -> jt.Var:
    """Element-wise L1 loss.

    Args:
        pred (jt.Var): Prediction.
        target (jt.Var): Target, same shape.

    Returns:
        jt.Var: Element-wise loss.
    """
    if target.numel() == 0:
        return pred.sum() * 0
    _check_shapes(pred, target, 'l1_loss')
    return (pred - target).abs()


@JITTOR_MODELS.register_module()
class SmoothL1Loss(WeightedLoss):
    """Smooth L1 loss, as used for box regression in
    `Fast R-CNN <https://arxiv.org/abs/1504.08083>`_.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)``
    (see :class:`WeightedLoss`), with ``pred``, ``target`` and an element-wise ``weight`` of the
    same shape.

    Args:
        beta (float): Threshold between the quadratic and linear parts. Defaults to 1.0.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """
    zero_weight_policy = 'first'

    def __init__(self,
                 beta: float = 1.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.beta = beta

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        return smooth_l1_loss(
            pred, target, weight, beta=self.beta, reduction=reduction, avg_factor=avg_factor)


@JITTOR_MODELS.register_module()
class L1Loss(WeightedLoss):
    """L1 loss.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)``
    (see :class:`WeightedLoss`), with ``pred``, ``target`` and an element-wise ``weight`` of the
    same shape.

    Args:
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """
    zero_weight_policy = 'first'

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        return l1_loss(pred, target, weight, reduction=reduction, avg_factor=avg_factor)
