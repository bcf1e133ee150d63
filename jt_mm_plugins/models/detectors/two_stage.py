"""Two-stage detection in Jittor: the Jittor core, and the mmdet-facing detector that bridges it once."""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.structures import SampleList
from mmengine.config import ConfigDict
from mmengine.model import initialize

from jt_mm_plugins.bridge import JITTOR_MODELS, JittorModuleWrapper, build_jittor_module
from jt_mm_plugins.bridge.data_samples import (instances_from_results, losses_for_mmdet,
                                               unpack_data_samples)
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@JITTOR_MODELS.register_module()
class JittorTwoStageCore(jt.nn.Module):
    """The Jittor side of a two-stage detector: backbone, neck, RPN head and RoI head, all Jittor.

    It speaks the Jittor-native interface (lists of dicts of Vars instead of ``DetDataSample``) and is
    driven by :class:`JittorTwoStageDetector`, which owns its state in torch. Config handling mirrors
    mmdet's ``TwoStageDetector``: the RPN head gets ``train_cfg.rpn`` / ``test_cfg.rpn`` and
    ``num_classes=1``; the RoI head gets ``train_cfg.rcnn`` / ``test_cfg.rcnn``.
    """

    def __init__(self, backbone: dict, rpn_head: dict, roi_head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if test_cfg is None or 'rpn' not in test_cfg or 'rcnn' not in test_cfg:
            raise KeyError('a two-stage detector needs test_cfg with "rpn" and "rcnn" entries')
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.backbone = build_jittor_module(backbone)
        self.neck = build_jittor_module(neck) if neck is not None else None
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

    def extract_feat(self, inputs: jt.Var) -> Tuple[jt.Var, ...]:
        x = self.backbone(inputs)
        return self.neck(x) if self.neck is not None else x

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


class JittorTwoStageDetector(JittorModuleWrapper, BaseDetector):
    """An mmdet detector whose every part runs in Jittor, with one bridge at the detector boundary.

    Images arrive from mmdet's data preprocessor (torch); ground truths and image metas are unpacked
    from ``DetDataSample`` into the Jittor-native form; the Jittor core computes losses or predictions;
    losses come back as torch scalars whose gradients reach the torch-owned parameters (named exactly
    as in the mmdet detector, so mmdet checkpoints load strictly), and predictions come back as
    ``DetDataSample.pred_instances`` so mmdet's metrics and visualizer work unchanged.

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
        BaseDetector.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        parts = dict(backbone=_plain(backbone), neck=_plain(neck), rpn_head=_plain(rpn_head),
                     roi_head=_plain(roi_head))
        # The parts' init_cfg belong to the torch side (Jittor modules initialise themselves).
        self._part_init_cfgs = {name: cfg.pop('init_cfg', None)
                                for name, cfg in parts.items() if cfg is not None}
        self._attach(self.jittor_class(**parts, train_cfg=_plain(train_cfg),
                                       test_cfg=_plain(test_cfg)))

    def init_weights(self) -> None:
        """mmengine's init, plus the parts' ``Pretrained`` init_cfg applied to their torch-owned
        parameters (other init types are the Jittor modules' own business and were already applied
        when they were built)."""
        super().init_weights()
        for name, init_cfg in self._part_init_cfgs.items():
            for cfg in (init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []):
                if cfg.get('type') != 'Pretrained':
                    continue
                checkpoint = str(cfg.get('checkpoint', ''))
                if '://' in checkpoint:
                    raise InputError(
                        f'{type(self).__name__}: {name}.init_cfg.checkpoint={checkpoint!r} would be '
                        'downloaded; jt_mm_plugins never downloads. Fetch the file yourself and set '
                        f'{name}.init_cfg.checkpoint to its local path (or init_cfg=None).')
                initialize(getattr(self, name), cfg)

    # BaseDetector.forward dispatches on ``mode`` to loss / predict / _forward.
    forward = BaseDetector.forward

    def loss(self, inputs: torch.Tensor, data_samples: SampleList) -> Dict:
        gts, metas = unpack_data_samples(data_samples, type(self).__name__)
        losses = self.run_jittor(self.jittor_module.loss, inputs, gts, metas)
        return losses_for_mmdet(losses, type(self).__name__)

    def predict(self, inputs: torch.Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        _, metas = unpack_data_samples(data_samples, type(self).__name__, with_gt=False)
        with torch.no_grad():
            results = self.run_jittor(self.jittor_module.predict, inputs, metas, rescale)
        return self.add_pred_to_datasample(data_samples, instances_from_results(results))

    def _forward(self, inputs: torch.Tensor, data_samples: SampleList = None) -> Tuple:
        return self.run_jittor(self.jittor_module, inputs)

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.run_jittor(self.jittor_module.extract_feat, inputs)


def _plain(cfg):
    """ConfigDict -> dict recursively (Jittor modules take plain configs)."""
    if isinstance(cfg, ConfigDict):
        return cfg.to_dict()
    return copy.deepcopy(cfg)
