"""Jittor task modules (prior generators, coders, assigners, samplers) under mmdet's names."""
from jt_mm_plugins.registry import JITTOR_TASK_UTILS, build_jittor_loss, build_jittor_task_module
from .anchor_generator import AnchorGenerator
from .assign_result import AssignResult
from .atss_assigner import ATSSAssigner
from .delta_xywh_coder import DeltaXYWHBBoxCoder, bbox2delta, delta2bbox
from .dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from .distance_point_coder import DistancePointBBoxCoder, bbox2distance, distance2bbox
from .hungarian_assigner import HungarianAssigner
from .iou2d_calculator import BboxOverlaps2D
from .match_cost import (BBoxL1Cost, ClassificationCost, FocalLossCost, IoUCost,
                         bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh)
from .max_iou_assigner import MaxIoUAssigner
from .point_generator import MlvlPointGenerator
from .pseudo_sampler import PseudoSampler
from .random_sampler import RandomSampler
from .sampling_result import SamplingResult
from .tblr_bbox_coder import TBLRBBoxCoder

__all__ = [
    'HungarianAssigner', 'BBoxL1Cost', 'ClassificationCost', 'FocalLossCost', 'IoUCost',
    'bbox_cxcywh_to_xyxy', 'bbox_xyxy_to_cxcywh',
    'JITTOR_TASK_UTILS', 'build_jittor_task_module', 'build_jittor_loss',
    'AnchorGenerator', 'DeltaXYWHBBoxCoder', 'bbox2delta', 'delta2bbox', 'DistancePointBBoxCoder',
    'bbox2distance', 'distance2bbox', 'BboxOverlaps2D', 'MaxIoUAssigner', 'ATSSAssigner',
    'DynamicSoftLabelAssigner', 'MlvlPointGenerator',
    'AssignResult', 'RandomSampler', 'PseudoSampler', 'SamplingResult', 'TBLRBBoxCoder'
]
