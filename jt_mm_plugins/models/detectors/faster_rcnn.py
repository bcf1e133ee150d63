"""Faster R-CNN with every part in Jittor."""
from mmdet.registry import MODELS

from .two_stage import JittorTwoStageDetector


@MODELS.register_module()
class JittorFasterRCNN(JittorTwoStageDetector):
    """`Faster R-CNN <https://arxiv.org/abs/1506.01497>`_ computed in Jittor, bridged once.

    A pure-Jittor config is its mmdet counterpart with the ``type`` of the detector and of each part
    replaced by its Jittor name (FasterRCNN -> JittorFasterRCNN, ResNet -> JittorResNet,
    FPN -> JittorFPN, RPNHead -> JittorRPNHead, StandardRoIHead -> JittorStandardRoIHead,
    SingleRoIExtractor -> JittorSingleRoIExtractor, Shared2FCBBoxHead -> JittorShared2FCBBoxHead).
    Task modules (assigners, samplers, coders, losses, NMS) keep mmdet's names and resolve to the
    Jittor implementations. See :class:`JittorTwoStageDetector` for the arguments.
    """
