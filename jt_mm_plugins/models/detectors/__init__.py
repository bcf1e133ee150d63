"""Jittor detectors (mmdet-facing, bridged once at the detector boundary)."""
from .base import JittorDetector, JittorDetectorCore
from .detr import JittorDETR, JittorDETRCore
from .fast_rcnn import JittorFastRCNN
from .faster_rcnn import JittorFasterRCNN
from .gfl import JittorGFL
from .nanodet_plus import JittorNanoDetPlusCore, NanoDetPlus, NanoDetPlusMixed
from .single_stage import JittorSingleStageCore, JittorSingleStageDetector
from .two_stage import JittorTwoStageCore, JittorTwoStageDetector

__all__ = [
    'JittorDetector', 'JittorDetectorCore', 'JittorFastRCNN', 'JittorFasterRCNN', 'JittorGFL',
    'JittorSingleStageCore', 'JittorSingleStageDetector', 'JittorTwoStageCore',
    'JittorTwoStageDetector', 'JittorNanoDetPlusCore', 'NanoDetPlus', 'NanoDetPlusMixed',
    'JittorDETR', 'JittorDETRCore'
]
from .gold_yolo import GoldYOLO  # noqa: F401
