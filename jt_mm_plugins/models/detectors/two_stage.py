"""Two-stage detection in Jittor: the Jittor core, and the mmdet-facing detector that bridges it once."""
import copy
from typing import Dict, List, Optional, Tuple

from jt_mm_plugins.bridge import JITTOR_MODELS, build_jittor_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .base import JittorDetector, JittorDetectorCore


@JITTOR_MODELS.register_module()
class JittorTwoStageCore(JittorDetectorCore):
    """The Jittor side of a two-stage detector: backbone, neck, RPN head and RoI head, all Jittor.

    It speaks the Jittor-native interface (lists of dicts of Vars instead of ``DetDataSample``) and is
    driven by :class:`JittorTwoStageDetector`, which owns its state in torch. Config handling mirrors
    mmdet's ``TwoStageDetector``: the RPN head gets ``train_cfg.rpn`` / ``test_cfg.rpn`` and
    ``num_classes=1``; the RoI head gets ``train_cfg.rcnn`` / ``test_cfg.rcnn``.
    """

    def __init__(self, backbone: dict, rpn_head: dict, roi_head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        if test_cfg is None or 'rpn' not in test_cfg or 'rcnn' not in test_cfg:
            raise KeyError('a two-stage detector needs test_cfg with "rpn" and "rcnn" entries')
        super().__init__(backbone, neck, train_cfg, test_cfg)
        rpn_head = copy.deepcopy(rpn_head)
        rpn_head.update(train_cfg=train_cfg['rpn'] if train_cfg is not None else None,
                        test_cfg=test_cfg['rpn'])
        if rpn_head.get('num_classes', 1) != 1:
            raise InputError('the RPN head is class-agnostic: its num_classes must be 1, got '
                             f'{rpn_head["num_classes"]}')
        rpn_head['num_classes'] = 1
        self.rpn_head = build_jittor_module(rpn_head)
        roi_head = copy.deepcopy(roi_head)
        roi_head.update(train_cfg=train_cfg['rcnn'] if train_cfg is not None else None,
                        test_cfg=test_cfg['rcnn'])
        self.roi_head = build_jittor_module(roi_head)

    def execute(self, inputs: jt.Var) -> Tuple:
        """Features and the RPN head's raw outputs (mmdet's ``mode='tensor'``)."""
        x = self.extract_feat(inputs)
        return tuple(x), self.rpn_head(x)

    def loss(self, inputs: jt.Var, batch_gt_instances: List[Dict],
             batch_img_metas: List[Dict]) -> Dict:
        x = self.extract_feat(inputs)
        proposal_cfg = self.train_cfg.get('rpn_proposal', self.test_cfg['rpn']) \
            if self.train_cfg is not None else self.test_cfg['rpn']
        # The RPN is class-agnostic: every ground truth is label 0 for it.
        rpn_gts = [dict(gt, labels=jt.zeros_like(gt['labels'])) for gt in batch_gt_instances]
        rpn_losses, proposals = self.rpn_head.loss_and_predict(
            x, rpn_gts, batch_img_metas, proposal_cfg=proposal_cfg)
        losses = {(f'rpn_{k}' if 'loss' in k and 'rpn' not in k else k): v
                  for k, v in rpn_losses.items()}
        losses.update(self.roi_head.loss(x, proposals, batch_gt_instances, batch_img_metas))
        return losses

    def predict(self, inputs: jt.Var, batch_img_metas: List[Dict],
                rescale: bool = True) -> List[Dict]:
        x = self.extract_feat(inputs)
        proposals = self.rpn_head.predict(x, batch_img_metas, rescale=False)
        return self.roi_head.predict(x, proposals, batch_img_metas, rescale=rescale)


class JittorTwoStageDetector(JittorDetector):
    """A two-stage mmdet detector computed in Jittor, bridged once (see :class:`JittorDetector`).

    Args:
        backbone, neck, rpn_head, roi_head (dict): Configs of the Jittor parts (``JittorResNet``,
            ``JittorFPN``, ``JittorRPNHead``, ``JittorStandardRoIHead``, ...).
        train_cfg, test_cfg (dict): As for mmdet's ``TwoStageDetector``.
        data_preprocessor (dict, optional): mmdet's data preprocessor config (runs in torch).
        init_cfg (dict, optional): mmengine initialisation config (e.g. ``Pretrained``).
    """
    jittor_class = JittorTwoStageCore

    def __init__(self, backbone: dict, rpn_head: dict, roi_head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(dict(backbone=backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head),
                         train_cfg, test_cfg, data_preprocessor, init_cfg)
