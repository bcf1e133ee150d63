"""Jittor twin of mmdet's ``CrossEntropyLoss`` (mmdet/models/losses/cross_entropy_loss.py)."""
import warnings
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.registry import JITTOR_MODELS
from .utils import WeightedLoss, weight_reduce_loss

DEFAULT_IGNORE_INDEX = -100  # as F.cross_entropy


def _one_hot(labels: jt.Var, num_classes: int, class_dim: int = 1) -> jt.Var:
    """Bool one-hot along ``class_dim``; labels outside [0, num_classes) give all-False rows."""
    shape = [1] * (labels.ndim + 1)
    shape[class_dim] = num_classes
    classes = jt.arange(num_classes).int32().reshape(shape)
    return labels.int32().unsqueeze(class_dim) == classes


def log_softmax(x: jt.Var, dim: int = 1) -> jt.Var:
    """Numerically stable log-softmax (the shift is a constant, so gradients are exact)."""
    shifted = x - x.max(dim=dim, keepdims=True).stop_grad()
    return shifted - shifted.exp().sum(dim=dim, keepdims=True).log()


def binary_cross_entropy_with_logits(pred: jt.Var,
                                     target: jt.Var,
                                     pos_weight: Optional[jt.Var] = None) -> jt.Var:
    """Element-wise ``F.binary_cross_entropy_with_logits(..., reduction='none')``.

    ``(1 - t) x + w_t (log(1 + exp(-|x|)) + max(-x, 0))`` with ``w_t = (pos_weight - 1) t + 1``.
    """
    softplus_neg = jt.log(1 + (-pred.abs()).exp()) + jt.maximum(-pred, 0.)
    if pos_weight is None:
        return (1 - target) * pred + softplus_neg
    log_weight = (pos_weight - 1) * target + 1
    return (1 - target) * pred + log_weight * softplus_neg


def cross_entropy(pred: jt.Var,
                  label: jt.Var,
                  weight: Optional[jt.Var] = None,
                  reduction: str = 'mean',
                  avg_factor: Optional[Union[float, jt.Var]] = None,
                  class_weight: Optional[jt.Var] = None,
                  ignore_index: Optional[int] = DEFAULT_IGNORE_INDEX,
                  avg_non_ignore: bool = False) -> jt.Var:
    """Softmax cross-entropy with mmdet's weighting and reduction.

    Args:
        pred (jt.Var): Logits (N, C) (or (N, C, ...)).
        label (jt.Var): Class indices (N,) (or (N, ...)).
        weight (jt.Var, optional): Sample-wise weight. Defaults to None.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.
        class_weight (jt.Var, optional): Weight per class (C,). Defaults to None.
        ignore_index (int, optional): Label to ignore (loss 0). None means -100.
        avg_non_ignore (bool): Whether 'mean' averages over non-ignored labels only.
            Defaults to False.

    Returns:
        jt.Var: The loss.
    """
    ignore_index = DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
    num_classes = pred.shape[1]
    one_hot = _one_hot(label, num_classes)
    valid = (label.int32() != ignore_index).float32()
    nll = -(log_softmax(pred, dim=1) * one_hot.float32()).sum(dim=1)
    if class_weight is not None:
        shape = [1] * pred.ndim
        shape[1] = num_classes
        nll = nll * (one_hot.float32() * class_weight.reshape(shape)).sum(dim=1)
    loss = nll * valid

    if avg_factor is None and avg_non_ignore and reduction == 'mean':
        avg_factor = float(valid.sum().item())
    if weight is not None:
        weight = weight.float32()
    return weight_reduce_loss(loss, weight=weight, reduction=reduction, avg_factor=avg_factor)


def _expand_onehot_labels(labels: jt.Var, label_weights: Optional[jt.Var], label_channels: int,
                          ignore_index: int) -> Tuple[jt.Var, jt.Var, jt.Var]:
    """One-hot labels (N, C) for a sigmoid classifier; background (label == C) is all zeros."""
    valid = jt.logical_and(labels >= 0, labels != ignore_index)
    bin_labels = jt.logical_and(_one_hot(labels, label_channels), valid.unsqueeze(1)).float32()
    valid_mask = valid.float32().unsqueeze(1).broadcast((labels.shape[0], label_channels))
    if label_weights is None:
        bin_label_weights = valid_mask
    else:
        bin_label_weights = label_weights.reshape(-1, 1).float32() * valid_mask
    return bin_labels, bin_label_weights, valid_mask


def binary_cross_entropy(pred: jt.Var,
                         label: jt.Var,
                         weight: Optional[jt.Var] = None,
                         reduction: str = 'mean',
                         avg_factor: Optional[Union[float, jt.Var]] = None,
                         class_weight: Optional[jt.Var] = None,
                         ignore_index: Optional[int] = DEFAULT_IGNORE_INDEX,
                         avg_non_ignore: bool = False) -> jt.Var:
    """Sigmoid (binary) cross-entropy with mmdet's label expansion, weighting and reduction.

    Args:
        pred (jt.Var): Logits (N, C), or (N,) with targets of the same shape.
        label (jt.Var): Class indices (N,) when ``pred`` is (N, C) (expanded to one-hot; index C
            is background), else targets shaped like ``pred``.
        weight (jt.Var, optional): Sample-wise weight. Defaults to None.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.
        class_weight (jt.Var, optional): ``pos_weight`` per class. Defaults to None.
        ignore_index (int, optional): Label to ignore. None means -100.
        avg_non_ignore (bool): Whether 'mean' averages over non-ignored elements only.
            Defaults to False.

    Returns:
        jt.Var: The loss.
    """
    ignore_index = DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
    if pred.ndim != label.ndim:
        label, weight, valid_mask = _expand_onehot_labels(label, weight, pred.shape[-1],
                                                          ignore_index)
    else:
        valid_mask = jt.logical_and(label >= 0, label != ignore_index).float32()
        weight = valid_mask if weight is None else weight * valid_mask

    if avg_factor is None and avg_non_ignore and reduction == 'mean':
        avg_factor = float(valid_mask.sum().item())
    loss = binary_cross_entropy_with_logits(pred, label.float32(), pos_weight=class_weight)
    return weight_reduce_loss(loss, weight.float32(), reduction=reduction, avg_factor=avg_factor)


@JITTOR_MODELS.register_module()
class CrossEntropyLoss(WeightedLoss):
    """Cross-entropy loss (softmax or sigmoid), as mmdet's ``CrossEntropyLoss``.

    Args:
        use_sigmoid (bool): Whether to use sigmoid (binary) instead of softmax cross-entropy.
            Defaults to False.
        use_mask (bool): Mask cross-entropy is not implemented; only False. Defaults to False.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        class_weight (list[float], optional): Weight per class. Defaults to None.
        ignore_index (int, optional): Label to ignore. Defaults to None (-100).
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        avg_non_ignore (bool): Whether 'mean' averages over non-ignored labels only.
            Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = False,
                 use_mask: bool = False,
                 reduction: str = 'mean',
                 class_weight: Optional[Sequence[float]] = None,
                 ignore_index: Optional[int] = None,
                 loss_weight: float = 1.0,
                 avg_non_ignore: bool = False) -> None:
        if use_mask:
            raise NotImplementedError('CrossEntropyLoss (Jittor): use_mask=True (mask '
                                      'cross-entropy) is not implemented')
        super().__init__(reduction, loss_weight)
        self.use_sigmoid = use_sigmoid
        self.use_mask = use_mask
        # a plain list: a jt.Var attribute would become a trainable parameter of the Module
        self.class_weight = None if class_weight is None else [float(w) for w in class_weight]
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        if ignore_index is not None and not avg_non_ignore and reduction == 'mean':
            warnings.warn('Default ``avg_non_ignore`` is False, if you would like to ignore the '
                          'certain label and average loss over non-ignore labels, which is the '
                          'same with PyTorch official cross_entropy, set ``avg_non_ignore=True``.')
        self.cls_criterion = binary_cross_entropy if use_sigmoid else cross_entropy

    def execute(self,
                cls_score: jt.Var,
                label: jt.Var,
                weight: Optional[jt.Var] = None,
                avg_factor: Optional[Union[float, jt.Var]] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = None) -> jt.Var:
        """Compute the loss.

        Args:
            cls_score (jt.Var): Logits.
            label (jt.Var): Labels (class indices, or binary targets shaped like ``cls_score``).
            weight (jt.Var, optional): Sample-wise weight. Defaults to None.
            avg_factor (float | jt.Var, optional): Divisor for 'mean'. Defaults to None.
            reduction_override (str, optional): Overrides ``reduction``. Defaults to None.
            ignore_index (int, optional): Overrides the configured ignore index. Defaults to None.

        Returns:
            jt.Var: The loss.
        """
        reduction = self.resolve_reduction(reduction_override)
        return self.loss_weight * self.compute_loss(
            cls_score, label, weight, reduction, avg_factor, ignore_index=ignore_index)

    def compute_loss(self,
                     pred: jt.Var,
                     target: jt.Var,
                     weight: Optional[jt.Var],
                     reduction: str,
                     avg_factor: Optional[Union[float, jt.Var]],
                     ignore_index: Optional[int] = None) -> jt.Var:
        if ignore_index is None:
            ignore_index = self.ignore_index
        class_weight = (None if self.class_weight is None else jt.array(
            np.array(self.class_weight, np.float32)))
        return self.cls_criterion(
            pred,
            target,
            weight,
            class_weight=class_weight,
            reduction=reduction,
            avg_factor=avg_factor,
            ignore_index=ignore_index,
            avg_non_ignore=self.avg_non_ignore)

    def extra_repr(self) -> str:
        return f'use_sigmoid={self.use_sigmoid}, avg_non_ignore={self.avg_non_ignore}'
