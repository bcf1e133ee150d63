"""Jittor twins of mmdet's ``IoULoss`` and ``GIoULoss`` (mmdet/models/losses/iou_loss.py)."""
import warnings
from typing import Optional, Union

from jt_mm_plugins.ops.bbox_overlaps import bbox_overlaps
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_MODELS
from .utils import WeightedLoss, weighted_loss

IOU_LOSS_MODES = ('linear', 'square', 'log')


def _clamp_min(x: jt.Var, low: float) -> jt.Var:
    # torch.clamp's gradient passes where x >= low
    return jt.ternary(x < low, jt.zeros_like(x) + low, x)


@weighted_loss
def iou_loss(pred: jt.Var,
             target: jt.Var,
             linear: bool = False,
             mode: str = 'log',
             eps: float = 1e-6) -> jt.Var:
    """Element-wise IoU loss of aligned box pairs (`UnitBox <https://arxiv.org/abs/1608.01471>`_).

    Args:
        pred (jt.Var): Predicted boxes (x1, y1, x2, y2), shape (n, 4).
        target (jt.Var): Target boxes, shape (n, 4).
        linear (bool): Deprecated alias of ``mode='linear'``. Defaults to False.
        mode (str): 'linear' (1 - IoU), 'square' (1 - IoU^2) or 'log' (-log IoU).
            Defaults to 'log'.
        eps (float): Lower clamp of the IoU. Defaults to 1e-6.

    Returns:
        jt.Var: Loss per pair, shape (n,).
    """
    if mode not in IOU_LOSS_MODES:
        raise InputError(f'iou_loss: mode must be one of {IOU_LOSS_MODES}, got {mode!r}')
    if linear:
        mode = 'linear'
        warnings.warn('DeprecationWarning: Setting "linear=True" in iou_loss is deprecated, '
                      'please use "mode=`linear`" instead.')
    ious = _clamp_min(bbox_overlaps(pred, target, is_aligned=True), eps)
    if mode == 'linear':
        return 1 - ious
    if mode == 'square':
        return 1 - ious * ious
    return -ious.log()


@weighted_loss
def giou_loss(pred: jt.Var, target: jt.Var, eps: float = 1e-7) -> jt.Var:
    """Element-wise `GIoU <https://arxiv.org/abs/1902.09630>`_ loss of aligned box pairs.

    Args:
        pred (jt.Var): Predicted boxes (x1, y1, x2, y2), shape (n, 4).
        target (jt.Var): Target boxes, shape (n, 4).
        eps (float): Lower clamp of the union and enclosing areas. Defaults to 1e-7.

    Returns:
        jt.Var: Loss per pair (1 - GIoU), shape (n,).
    """
    return 1 - bbox_overlaps(pred, target, mode='giou', is_aligned=True, eps=eps)


def _reduce_weight_to_boxes(weight: Optional[jt.Var], pred: jt.Var, owner: str) -> Optional[jt.Var]:
    """mmdet averages an (n, 4) weight to (n,) to match the per-box IoU loss."""
    if weight is None or weight.ndim <= 1:
        return weight
    if tuple(weight.shape) != tuple(pred.shape):
        raise InputError(f'{owner}: weight {tuple(weight.shape)} must be (n,) or shaped like pred '
                         f'{tuple(pred.shape)}')
    return weight.mean(-1)


@JITTOR_MODELS.register_module()
class IoULoss(WeightedLoss):
    """IoU loss of `UnitBox <https://arxiv.org/abs/1608.01471>`_, as mmdet's ``IoULoss``.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)``
    (see :class:`WeightedLoss`) with boxes (n, 4) and a weight (n,) or (n, 4).

    Args:
        linear (bool): Deprecated alias of ``mode='linear'``. Defaults to False.
        eps (float): Lower clamp of the IoU. Defaults to 1e-6.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        mode (str): 'linear', 'square' or 'log'. Defaults to 'log'.
    """
    zero_weight_policy = 'reduced'

    def __init__(self,
                 linear: bool = False,
                 eps: float = 1e-6,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 mode: str = 'log') -> None:
        if mode not in IOU_LOSS_MODES:
            raise InputError(f'IoULoss: mode must be one of {IOU_LOSS_MODES}, got {mode!r}')
        super().__init__(reduction, loss_weight)
        if linear:
            mode = 'linear'
            warnings.warn('DeprecationWarning: Setting "linear=True" in IOULoss is deprecated, '
                          'please use "mode=`linear`" instead.')
        self.mode = mode
        self.linear = linear
        self.eps = eps

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        weight = _reduce_weight_to_boxes(weight, pred, 'IoULoss')
        return iou_loss(
            pred,
            target,
            weight,
            mode=self.mode,
            eps=self.eps,
            reduction=reduction,
            avg_factor=avg_factor)


@JITTOR_MODELS.register_module()
class GIoULoss(WeightedLoss):
    """`Generalized IoU loss <https://arxiv.org/abs/1902.09630>`_, as mmdet's ``GIoULoss``.

    Called as ``loss(pred, target, weight=None, avg_factor=None, reduction_override=None)``
    (see :class:`WeightedLoss`) with boxes (n, 4) and a weight (n,) or (n, 4).

    Args:
        eps (float): Lower clamp of the union and enclosing areas. Defaults to 1e-6.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """
    zero_weight_policy = 'first'

    def __init__(self,
                 eps: float = 1e-6,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.eps = eps

    def compute_loss(self, pred: jt.Var, target: jt.Var, weight: Optional[jt.Var], reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]]) -> jt.Var:
        weight = _reduce_weight_to_boxes(weight, pred, 'GIoULoss')
        return giou_loss(
            pred, target, weight, eps=self.eps, reduction=reduction, avg_factor=avg_factor)
