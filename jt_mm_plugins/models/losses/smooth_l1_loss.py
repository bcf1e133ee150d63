"""Jittor twins of mmdet's ``SmoothL1Loss`` and ``L1Loss``
(mmdet/models/losses/smooth_l1_loss.py)."""
from typing import Optional, Union

from jt_mm_plugins.runtime import jt
from ..task_modules.registry import JITTOR_LOSSES
from .utils import check_reduction, weighted_loss, zero_weight_shortcut


def _check_shapes(pred: jt.Var, target: jt.Var, owner: str) -> None:
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f'{owner}: pred {tuple(pred.shape)} and target {tuple(target.shape)} '
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
        raise ValueError(f'smooth_l1_loss: beta must be > 0, got {beta}')
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


@JITTOR_LOSSES.register_module()
class SmoothL1Loss(jt.nn.Module):
    """Smooth L1 loss, as used for box regression in
    `Fast R-CNN <https://arxiv.org/abs/1504.08083>`_.

    Args:
        beta (float): Threshold between the quadratic and linear parts. Defaults to 1.0.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 beta: float = 1.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        check_reduction(reduction, 'SmoothL1Loss')
        self.beta = beta
        self.reduction = reduction
        self.loss_weight = loss_weight

    def execute(self,
                pred: jt.Var,
                target: jt.Var,
                weight: Optional[jt.Var] = None,
                avg_factor: Optional[Union[float, jt.Var]] = None,
                reduction_override: Optional[str] = None) -> jt.Var:
        """Compute the loss.

        Args:
            pred (jt.Var): Prediction.
            target (jt.Var): Target, same shape.
            weight (jt.Var, optional): Element-wise weight. Defaults to None.
            avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.
            reduction_override (str, optional): Overrides ``reduction``. Defaults to None.

        Returns:
            jt.Var: The loss.
        """
        shortcut = zero_weight_shortcut(pred, weight)
        if shortcut is not None:
            return shortcut
        check_reduction(reduction_override, 'SmoothL1Loss')
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * smooth_l1_loss(
            pred, target, weight, beta=self.beta, reduction=reduction, avg_factor=avg_factor)


@JITTOR_LOSSES.register_module()
class L1Loss(jt.nn.Module):
    """L1 loss.

    Args:
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        check_reduction(reduction, 'L1Loss')
        self.reduction = reduction
        self.loss_weight = loss_weight

    def execute(self,
                pred: jt.Var,
                target: jt.Var,
                weight: Optional[jt.Var] = None,
                avg_factor: Optional[Union[float, jt.Var]] = None,
                reduction_override: Optional[str] = None) -> jt.Var:
        """Compute the loss.

        Args:
            pred (jt.Var): Prediction.
            target (jt.Var): Target, same shape.
            weight (jt.Var, optional): Element-wise weight. Defaults to None.
            avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.
            reduction_override (str, optional): Overrides ``reduction``. Defaults to None.

        Returns:
            jt.Var: The loss.
        """
        shortcut = zero_weight_shortcut(pred, weight)
        if shortcut is not None:
            return shortcut
        check_reduction(reduction_override, 'L1Loss')
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * l1_loss(
            pred, target, weight, reduction=reduction, avg_factor=avg_factor)
