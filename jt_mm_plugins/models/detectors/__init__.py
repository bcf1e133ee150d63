"""Jittor detectors (mmdet-facing, bridged once at the detector boundary)."""
from .faster_rcnn import JittorFasterRCNN
from .two_stage import JittorTwoStageCore, JittorTwoStageDetector

__all__ = ['JittorFasterRCNN', 'JittorTwoStageCore', 'JittorTwoStageDetector']
