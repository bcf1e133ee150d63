"""NanoDet-Plus (``nanodet/model/arch/nanodet_plus.py``, ../shared/specs/seed-systems.md section
4.1): a single-stage detector with a training-only auxiliary branch, the assign guidance module.

In training, an auxiliary FPN (by default a copy of the neck's config, NanoDet's ``aux_fpn``) runs
on the backbone features; each level's neck output concatenated with the aux FPN's feeds the aux
head, whose detached predictions assign the targets of both heads
(:meth:`NanoDetPlusHead.loss_by_feat` with ``aux_outs``). From ``detach_epoch`` on, the aux FPN
gets detached backbone features and the neck's outputs are detached in that concatenation, so the
aux branch no longer trains the backbone and neck. The epoch comes from
:class:`~jt_mm_plugins.engine.NanoDetPlusEpochHook`. Prediction and ``mode='tensor'`` never run
the aux branch.

Two forms:

* ``NanoDetPlus``: pure Jittor, bridged once at the detector (a
  :class:`JittorSingleStageDetector`);
* ``NanoDetPlusMixed``: an mmdet-side ``SingleStageDetector`` whose parts are any mmdet modules,
  bridged Jittor ones included (``GhostPAN``, ``NanoDetPlusHead``, ``SimpleConvHead`` are bridged
  under those names).

Both hold ``backbone``, ``neck``, ``bbox_head``, ``aux_neck``, ``aux_head`` under the same names,
so one state dict loads into either. (NanoDet's own checkpoints name them ``backbone``, ``fpn``,
``head``, ``aux_fpn``, ``aux_head``; a key rename is needed to load one.)
"""
import copy
from typing import Dict, List, Optional

import torch
from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList

from jt_mm_plugins.bridge import JITTOR_MODELS, build_jittor_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .base import JittorDetector, plain_config
from .single_stage import JittorSingleStageCore, JittorSingleStageDetector


def aux_head_inputs(aux_neck, feats, fpn_feats, detach: bool, concat) -> list:
    """NanoDet-Plus's input of the aux head: per level the neck's output concatenated with the aux
    FPN's; with ``detach`` (from ``detach_epoch`` on) the aux FPN gets detached backbone features
    and the neck's outputs are detached. ``concat``: ``jt.concat`` or ``torch.cat``."""
    if detach:
        feats = [f.detach() for f in feats]
        fpn_feats = [f.detach() for f in fpn_feats]
    return [concat([f, a], 1) for f, a in zip(fpn_feats, aux_neck(feats))]


def _check_detach_epoch(detach_epoch, owner: str) -> int:
    if not isinstance(detach_epoch, int) or detach_epoch < 0:
        raise InputError(f'{owner}: detach_epoch must be an int >= 0, got {detach_epoch!r}')
    return detach_epoch


@JITTOR_MODELS.register_module()
class JittorNanoDetPlusCore(JittorSingleStageCore):
    """The Jittor side of :class:`NanoDetPlus`: backbone, neck, head, aux neck and aux head."""

    def __init__(self, backbone: dict, bbox_head: dict, neck: dict, aux_head: dict,
                 aux_neck: Optional[dict] = None, detach_epoch: int = 10,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, bbox_head, neck, train_cfg, test_cfg)
        self.aux_neck = build_jittor_module(copy.deepcopy(neck if aux_neck is None else aux_neck))
        self.aux_head = build_jittor_module(aux_head)
        self.detach_epoch = _check_detach_epoch(detach_epoch, 'NanoDetPlus')
        self.epoch = 0

    def loss(self, inputs: jt.Var, batch_gt_instances: List[Dict],
             batch_img_metas: List[Dict]) -> Dict:
        feats = self.backbone(inputs)
        fpn_feats = self.neck(feats)
        dual = aux_head_inputs(self.aux_neck, feats, fpn_feats, self.epoch >= self.detach_epoch,
                               jt.concat)
        return self.bbox_head.loss(fpn_feats, batch_gt_instances, batch_img_metas,
                                   aux_outs=self.aux_head(dual))


@MODELS.register_module()
class NanoDetPlus(JittorSingleStageDetector):
    """NanoDet-Plus computed in Jittor, bridged once (see the module docstring).

    Args:
        backbone, neck, bbox_head (dict): Jittor configs (``ShuffleNetV2``, ``GhostPAN``,
            ``NanoDetPlusHead``).
        aux_head (dict): The aux head (``SimpleConvHead``), input channels twice the neck's.
        aux_neck (dict, optional): The aux FPN; None: the neck's config. Defaults to None.
        detach_epoch (int): Epoch from which the aux branch gets detached features. Defaults to
            10 (NanoDet-Plus-m's).
        train_cfg, test_cfg, data_preprocessor, init_cfg: As for
            :class:`JittorSingleStageDetector`.
    """
    jittor_class = JittorNanoDetPlusCore

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict, aux_head: dict,
                 aux_neck: Optional[dict] = None, detach_epoch: int = 10,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        JittorDetector.__init__(
            self, dict(backbone=backbone, neck=neck, bbox_head=bbox_head, aux_head=aux_head,
                       aux_neck=plain_config(neck) if aux_neck is None else aux_neck),
            train_cfg, test_cfg, data_preprocessor, init_cfg)
        self.jittor_module.detach_epoch = _check_detach_epoch(detach_epoch, 'NanoDetPlus')

    @property
    def detach_epoch(self) -> int:
        return self.jittor_module.detach_epoch

    @property
    def epoch(self) -> int:
        return self.jittor_module.epoch

    def set_epoch(self, epoch: int) -> None:
        """The training epoch (:class:`NanoDetPlusEpochHook` calls it)."""
        self.jittor_module.epoch = int(epoch)


@MODELS.register_module()
class NanoDetPlusMixed(SingleStageDetector):
    """NanoDet-Plus as an mmdet ``SingleStageDetector`` of mmdet modules (bridged Jittor ones
    included); same arguments and parameter names as :class:`NanoDetPlus`. The head's ``loss``
    takes the aux head's outputs as ``aux_outs`` (a bridged ``NanoDetPlusHead`` passes them to
    Jittor with their gradients)."""

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict, aux_head: dict,
                 aux_neck: Optional[dict] = None, detach_epoch: int = 10,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.aux_neck = MODELS.build(copy.deepcopy(neck if aux_neck is None else aux_neck))
        self.aux_head = MODELS.build(aux_head)
        self.detach_epoch = _check_detach_epoch(detach_epoch, 'NanoDetPlusMixed')
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The training epoch (:class:`NanoDetPlusEpochHook` calls it)."""
        self.epoch = int(epoch)

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList) -> Dict:
        feats = self.backbone(batch_inputs)
        fpn_feats = self.neck(feats)
        dual = aux_head_inputs(self.aux_neck, feats, fpn_feats, self.epoch >= self.detach_epoch,
                               torch.cat)
        return self.bbox_head.loss(fpn_feats, batch_data_samples, aux_outs=self.aux_head(dual))
