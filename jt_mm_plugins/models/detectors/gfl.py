"""GFL with every part in Jittor."""
from mmdet.registry import MODELS

from .single_stage import JittorSingleStageDetector


@MODELS.register_module()
class JittorGFL(JittorSingleStageDetector):
    """`Generalized Focal Loss <https://arxiv.org/abs/2006.04388>`_ (GFL) computed in Jittor, bridged
    once: the twin of mmdet's ``GFL``.

    A pure-Jittor config is mmdet's with the ``type`` of the detector and of each part replaced by
    its Jittor name (GFL -> JittorGFL, ResNet -> JittorResNet, FPN -> JittorFPN, GFLHead ->
    JittorGFLHead); task modules and losses (ATSSAssigner, QualityFocalLoss, DistributionFocalLoss,
    GIoULoss) keep mmdet's names and resolve to the Jittor implementations. See
    :class:`JittorSingleStageDetector` for the arguments.
    """
