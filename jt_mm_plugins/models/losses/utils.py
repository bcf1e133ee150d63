"""Loss reduction helpers, Jittor twins of mmdet/models/losses/utils.py."""
import functools
from typing import Callable, Optional, Union

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

REDUCTIONS = ('none', 'mean', 'sum')
# torch.finfo(torch.float32).eps, added to avg_factor as mmdet does
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def check_reduction(reduction: Optional[str], owner: str) -> None:
    """Raise a clear error for a reduction other than 'none', 'mean', 'sum' (or None)."""
    if reduction is not None and reduction not in REDUCTIONS:
        raise InputError(f'{owner}: reduction must be one of {REDUCTIONS}, got {reduction!r}')


def reduce_loss(loss: jt.Var, reduction: str) -> jt.Var:
    """Reduce an element-wise loss.

    Args:
        loss (jt.Var): Element-wise loss.
        reduction (str): 'none', 'mean' or 'sum'.

    Returns:
        jt.Var: The reduced loss.
    """
    check_reduction(reduction, 'reduce_loss')
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    return loss


def weight_reduce_loss(loss: jt.Var,
                       weight: Optional[jt.Var] = None,
                       reduction: str = 'mean',
                       avg_factor: Optional[Union[float, jt.Var]] = None) -> jt.Var:
    """Apply element-wise weights, then reduce (mmdet's semantics).

    With ``avg_factor`` and 'mean' the loss is ``sum / (avg_factor + eps)``; 'none' leaves it
    element-wise; 'sum' with ``avg_factor`` is an error.

    Args:
        loss (jt.Var): Element-wise loss.
        weight (jt.Var, optional): Element-wise weights. Defaults to None.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        avg_factor (float | jt.Var, optional): Divisor of the summed loss. Defaults to None.

    Returns:
        jt.Var: The processed loss.
    """
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == 'mean':
        return loss.sum() / (avg_factor + FLOAT32_EPS)
    if reduction != 'none':
        raise InputError('avg_factor can not be used with reduction="sum"')
    return loss


def weighted_loss(loss_func: Callable) -> Callable:
    """Decorate an element-wise loss ``loss_func(pred, target, **kwargs)`` into
    ``loss_func(pred, target, weight=None, reduction='mean', avg_factor=None, **kwargs)``.
    """

    @functools.wraps(loss_func)
    def wrapper(pred: jt.Var,
                target: jt.Var,
                weight: Optional[jt.Var] = None,
                reduction: str = 'mean',
                avg_factor: Optional[Union[float, jt.Var]] = None,
                **kwargs) -> jt.Var:
        loss = loss_func(pred, target, **kwargs)
        return weight_reduce_loss(loss, weight, reduction, avg_factor)

    return wrapper


def zero_weight_shortcut(pred: jt.Var, weight: Optional[jt.Var]) -> Optional[jt.Var]:
    """mmdet's regression losses return ``(pred * weight).sum()`` (a zero that keeps the graph)
    when no weight is positive. Returns that Var, or None when some weight is positive.

    Reading the weights syncs Jittor, as ``torch.any`` does in mmdet.
    """
    if weight is None or weight.numel() == 0 or bool((weight > 0).any().item()):
        return None
    if pred.ndim == weight.ndim + 1:
        weight = weight.unsqueeze(1)
    return (pred * weight).sum()


def expand_weight_like(weight: Optional[jt.Var], loss: jt.Var) -> Optional[jt.Var]:
    """Shape a per-prior (n,) or flattened (n * c,) weight like an (n, c) loss, as mmdet's focal
    losses do."""
    if weight is None or tuple(weight.shape) == tuple(loss.shape):
        return weight
    if weight.shape[0] == loss.shape[0]:
        weight = weight.reshape(-1, 1)
    else:
        if weight.numel() != loss.numel():
            raise InputError(f'loss weight of shape {tuple(weight.shape)} does not fit a loss of '
                             f'shape {tuple(loss.shape)}')
        weight = weight.reshape(loss.shape[0], -1)
    if weight.ndim != loss.ndim:
        raise InputError(f'loss weight of shape {tuple(weight.shape)} does not fit a loss of shape '
                         f'{tuple(loss.shape)}')
    return weight


class WeightedLoss(jt.nn.Module):
    """Common part of mmdet's loss modules: ``reduction`` (checked when built), ``loss_weight``
    and the call ``execute(pred, target, weight, avg_factor, reduction_override)``, which
    resolves the reduction and scales the result. A subclass implements only its math in
    :meth:`compute_loss`.

    mmdet's regression losses return ``(pred * weight).sum()`` (a zero that keeps the graph) when
    no weight is positive; ``zero_weight_policy`` says when a subclass does so:
    ``'first'``, before ``reduction_override`` is checked (mmdet's ``SmoothL1Loss``, ``L1Loss``,
    ``GIoULoss``); ``'reduced'``, after, and only for a reduction other than ``'none'`` (mmdet's
    ``IoULoss``); ``None``, never (classification losses).

    Error messages name the subclass.

    Args:
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """
    zero_weight_policy: Optional[str] = None

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        check_reduction(reduction, type(self).__name__)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def resolve_reduction(self, reduction_override: Optional[str]) -> str:
        """``reduction_override`` (checked) if given, else the configured reduction."""
        check_reduction(reduction_override, type(self).__name__)
        return reduction_override if reduction_override else self.reduction

    def _zero_weight_result(self, when: str, pred: jt.Var,
                            weight: Optional[jt.Var]) -> Optional[jt.Var]:
        if self.zero_weight_policy != when:
            return None
        return zero_weight_shortcut(pred, weight)

    def execute(self,
                pred: jt.Var,
                target: jt.Var,
                weight: Optional[jt.Var] = None,
                avg_factor: Optional[Union[float, jt.Var]] = None,
                reduction_override: Optional[str] = None) -> jt.Var:
        """Compute the loss.

        Args:
            pred (jt.Var): Prediction.
            target (jt.Var): Target.
            weight (jt.Var, optional): Weight (shapes as the subclass accepts). Defaults to None.
            avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.
            reduction_override (str, optional): Overrides ``reduction``. Defaults to None.

        Returns:
            jt.Var: The loss, times ``loss_weight``.
        """
        shortcut = self._zero_weight_result('first', pred, weight)
        if shortcut is not None:
            return shortcut
        reduction = self.resolve_reduction(reduction_override)
        if reduction != 'none':
            shortcut = self._zero_weight_result('reduced', pred, weight)
            if shortcut is not None:
                return shortcut
        return self.loss_weight * self.compute_loss(pred, target, weight, reduction, avg_factor)

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        """The unscaled loss for an already resolved ``reduction``; implemented by subclasses."""
        raise NotImplementedError(f'{type(self).__name__} must implement compute_loss()')
