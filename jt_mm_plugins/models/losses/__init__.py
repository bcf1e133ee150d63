"""Jittor losses under mmdet's names, registered in ``JITTOR_MODELS`` as mmdet registers its losses in
``MODELS`` (:mod:`jt_mm_plugins.registry`); ``build_jittor_loss(cfg)`` builds one."""
from jt_mm_plugins.registry import build_jittor_loss
from .cross_entropy_loss import (CrossEntropyLoss, binary_cross_entropy, cross_entropy)
from .focal_loss import FocalLoss, sigmoid_focal_loss
from .gfocal_loss import (DistributionFocalLoss, QualityFocalLoss, distribution_focal_loss,
                          quality_focal_loss)
from .iou_loss import GIoULoss, IoULoss, giou_loss, iou_loss
from .smooth_l1_loss import L1Loss, SmoothL1Loss, l1_loss, smooth_l1_loss
from .utils import reduce_loss, weight_reduce_loss, weighted_loss

__all__ = [
    'build_jittor_loss', 'CrossEntropyLoss', 'cross_entropy',
    'binary_cross_entropy', 'FocalLoss', 'sigmoid_focal_loss', 'QualityFocalLoss',
    'DistributionFocalLoss', 'quality_focal_loss', 'distribution_focal_loss', 'IoULoss',
    'GIoULoss', 'iou_loss', 'giou_loss', 'SmoothL1Loss', 'L1Loss', 'smooth_l1_loss', 'l1_loss',
    'reduce_loss', 'weight_reduce_loss', 'weighted_loss'
]
