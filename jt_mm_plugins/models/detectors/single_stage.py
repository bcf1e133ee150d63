"""Single-stage detection in Jittor: the Jittor core, and the mmdet-facing detector that bridges it
once (the twin of mmdet's ``SingleStageDetector``; GFL, GFocalV2, NanoDet-Plus, Gold-YOLO build on
it)."""
import copy
from typing import Dict, List, Optional, Tuple

from mmdet.registry import MODELS

from jt_mm_plugins.bridge import JITTOR_MODELS, build_jittor_module
from jt_mm_plugins.runtime import jt
from .base import JittorDetector, JittorDetectorCore


@JITTOR_MODELS.register_module()
class JittorSingleStageCore(JittorDetectorCore):
    """The Jittor side of a single-stage detector: backbone, optional neck and a dense head.

    Config handling mirrors mmdet's ``SingleStageDetector``: the head gets the whole ``train_cfg``
    and ``test_cfg``.
    """

    def __init__(self, backbone: dict, bbox_head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, neck, train_cfg, test_cfg)
        bbox_head = copy.deepcopy(bbox_head)
        bbox_head.update(train_cfg=train_cfg, test_cfg=test_cfg)
        self.bbox_head = build_jittor_module(bbox_head)

    def execute(self, inputs: jt.Var) -> Tuple:
        """The head's raw outputs (mmdet's ``mode='tensor'``)."""
        return self.bbox_head(self.extract_feat(inputs))

    def loss(self, inputs: jt.Var, batch_gt_instances: List[Dict],
             batch_img_metas: List[Dict]) -> Dict:
        return self.bbox_head.loss(self.extract_feat(inputs), batch_gt_instances, batch_img_metas)

    def predict(self, inputs: jt.Var, batch_img_metas: List[Dict],
                rescale: bool = True) -> List[Dict]:
        return self.bbox_head.predict(self.extract_feat(inputs), batch_img_metas, rescale=rescale)


@MODELS.register_module()
class JittorSingleStageDetector(JittorDetector):
    """mmdet's ``SingleStageDetector`` computed in Jittor, bridged once (see :class:`JittorDetector`).

    A config is its mmdet counterpart with the detector's and each part's ``type`` replaced by its
    Jittor name (``JittorResNet``, ``JittorFPN``, a Jittor dense head); mmdet checkpoints of the
    counterpart load strictly.

    Args:
        backbone, neck, bbox_head (dict): Configs of the Jittor parts.
        train_cfg, test_cfg (dict): As for mmdet's ``SingleStageDetector`` (passed to the head).
        data_preprocessor (dict, optional): mmdet's data preprocessor config (runs in torch).
        init_cfg (dict, optional): mmengine initialisation config (e.g. ``Pretrained``).
    """
    jittor_class = JittorSingleStageCore

    def __init__(self, backbone: dict, bbox_head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(dict(backbone=backbone, neck=neck, bbox_head=bbox_head), train_cfg,
                         test_cfg, data_preprocessor, init_cfg)
