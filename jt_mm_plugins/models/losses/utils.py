"""Loss reduction helpers, Jittor twins of mmdet/models/losses/utils.py."""
import functools
from typing import Callable, Optional, Union

import numpy as np

from jt_mm_plugins.runtime import jt

REDUCTIONS = ('none', 'mean', 'sum')
# torch.finfo(torch.float32).eps, added to avg_factor as mmdet does
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def check_reduction(reduction: Optional[str], owner: str) -> None:
    """Raise a clear error for a reduction other than 'none', 'mean', 'sum' (or None)."""
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(f'{owner}: reduction must be one of {REDUCTIONS}, got {reduction!r}')


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
        raise ValueError('avg_factor can not be used with reduction="sum"')
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
            raise ValueError(f'loss weight of shape {tuple(weight.shape)} does not fit a loss of '
                             f'shape {tuple(loss.shape)}')
        weight = weight.reshape(loss.shape[0], -1)
    if weight.ndim != loss.ndim:
        raise ValueError(f'loss weight of shape {tuple(weight.shape)} does not fit a loss of shape '
                         f'{tuple(loss.shape)}')
    return weight
