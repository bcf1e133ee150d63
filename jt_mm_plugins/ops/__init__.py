"""Jittor detection kernels with CPU and CUDA sources, following ``mmcv.ops`` / mmdet semantics."""
from .batch_norm import batch_norm_train
from .bbox_overlaps import bbox_overlaps
from .channel_bias import add_channel_bias
from .conv1x1 import conv1x1, conv1x1_supported
from .group_norm import group_norm
from .nms import batched_nms, nms, soft_nms
from .relu import relu
from .roi_align import RoIAlign, roi_align
from .upsample_add import upsample_x2_add, upsample_x2_add_supported

__all__ = ['add_channel_bias', 'batch_norm_train', 'bbox_overlaps', 'conv1x1', 'conv1x1_supported',
           'group_norm', 'nms', 'batched_nms', 'soft_nms', 'relu', 'roi_align', 'RoIAlign',
           'upsample_x2_add', 'upsample_x2_add_supported']
