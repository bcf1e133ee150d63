"""Jittor components; each module registers itself when imported."""
from .bbox_head import JittorBBoxHead
from .bbox_head_clip import BBoxHeadCLIP, BBoxHeadCLIPInference
from .bbox_head_clip_partitioned import BBoxHeadCLIPPartitioned
from .clip_res_layer import CLIPResLayer
from .oln_bbox_score_head import Shared2FCBBoxScoreHead
from .convfc_bbox_head import (JittorConvFCBBoxHead, JittorShared2FCBBoxHead,
                               JittorShared4Conv1FCBBoxHead)
from .single_roi_extractor import JittorSingleRoIExtractor
from .standard_roi_head import JittorStandardRoIHead
from ..utils import bbox2roi, multiclass_nms

__all__ = [
    'BBoxHeadCLIP', 'BBoxHeadCLIPInference', 'BBoxHeadCLIPPartitioned', 'CLIPResLayer',
    'JittorBBoxHead', 'JittorConvFCBBoxHead', 'JittorShared2FCBBoxHead',
    'JittorShared4Conv1FCBBoxHead', 'JittorSingleRoIExtractor', 'JittorStandardRoIHead', 'bbox2roi',
    'multiclass_nms', 'Shared2FCBBoxScoreHead'
]
