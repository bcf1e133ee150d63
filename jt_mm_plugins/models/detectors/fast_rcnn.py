"""Fast R-CNN (a two-stage detector on given proposals) with every part in Jittor."""
from typing import Optional

from mmdet.registry import MODELS

from .two_stage import JittorTwoStageDetector


@MODELS.register_module()
class JittorFastRCNN(JittorTwoStageDetector):
    """`Fast R-CNN <https://arxiv.org/abs/1504.08083>`_ computed in Jittor, bridged once: mmdet's
    ``FastRCNN`` twin (same arguments, same parameter names, so an mmdet ``FastRCNN`` checkpoint
    loads strictly).

    There is no RPN head: each image's proposals come from its data sample's ``proposals``
    (``bboxes`` and ``scores``, filled by mmdet's ``LoadProposals`` from a proposal file), in
    training and at test time; a batch without them is refused by name. A pure-Jittor config is
    its mmdet counterpart with the detector and part types replaced by their Jittor names (see
    :class:`~.faster_rcnn.JittorFasterRCNN`).

    Args:
        backbone, roi_head (dict): Configs of the Jittor parts.
        train_cfg, test_cfg (dict): As for mmdet's ``FastRCNN`` (``rcnn`` entries).
        neck (dict, optional): Config of the Jittor neck.
        data_preprocessor (dict, optional): mmdet's data preprocessor config (runs in torch).
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, backbone: dict, roi_head: dict, train_cfg: Optional[dict],
                 test_cfg: dict, neck: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, rpn_head=None, roi_head=roi_head, neck=neck,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
