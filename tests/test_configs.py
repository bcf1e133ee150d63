"""Every shipped config parses and builds its model; the pure-Jittor convention holds."""
import glob
import inspect
import os

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.models.dense_heads import GFocalV2Head

register_all_modules()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/unidetector name data files that are not shipped (CLIP text embeddings): built with
# stand-in files by tests/test_unidetector_configs.py
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p and os.sep + 'unidetector' + os.sep not in p)
JITTOR_NAMES = {'FasterRCNN': 'JittorFasterRCNN', 'ResNet': 'JittorResNet', 'FPN': 'JittorFPN',
                'RPNHead': 'JittorRPNHead', 'StandardRoIHead': 'JittorStandardRoIHead',
                'SingleRoIExtractor': 'JittorSingleRoIExtractor',
                'Shared2FCBBoxHead': 'JittorShared2FCBBoxHead', 'GFL': 'JittorGFL',
                'GFLHead': 'JittorGFLHead', 'GFocalV2Head': 'GFocalV2Head', 'DETR': 'JittorDETR',
                'ChannelMapper': 'JittorChannelMapper', 'DETRHead': 'JittorDETRHead'}


def _types(model_cfg):
    """The types of the detector and its parts (two-stage or single-stage)."""
    types = [model_cfg.type, model_cfg.backbone.type, model_cfg.neck.type]
    if 'bbox_head' in model_cfg:
        return types + [model_cfg.bbox_head.type]
    return types + [model_cfg.rpn_head.type, model_cfg.roi_head.type,
                    model_cfg.roi_head.bbox_roi_extractor.type, model_cfg.roi_head.bbox_head.type]


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_builds(path):
    cfg = Config.fromfile(path)
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize('jittor_cfg, mmdet_cfg', [
    ('configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco_jittor.py',
     'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'),
    ('configs/demo/faster_rcnn_r18_fpn_demo_jittor.py', 'configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py'),
    ('configs/gfl/gfl_r50_fpn_1x_coco_jittor.py', 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'),
    ('configs/demo/gfl_r18_fpn_demo_jittor.py', 'configs/demo/gfl_r18_fpn_demo_mmdet.py'),
    ('configs/gfocalv2/gfocalv2_r50_fpn_1x_coco_jittor.py',
     'configs/gfocalv2/gfocalv2_r50_fpn_1x_coco.py'),
    ('configs/demo/gfocalv2_r18_fpn_demo_jittor.py',
     'configs/demo/gfocalv2_r18_fpn_jittor_head_demo.py'),
    ('configs/detr/detr_r50_8xb2-150e_coco_jittor.py', 'mmdet::detr/detr_r50_8xb2-150e_coco.py'),
    ('configs/demo/detr_r18_demo_jittor.py', 'configs/demo/detr_r18_demo_mmdet.py'),
])
def test_pure_jittor_config_changes_only_types(jittor_cfg, mmdet_cfg):
    jit = Config.fromfile(os.path.join(REPO, jittor_cfg))
    if mmdet_cfg.startswith('mmdet::'):  # mmdet's wheel carries its configs under .mim/configs
        import mmdet
        mmdet_cfg = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs',
                                 mmdet_cfg[len('mmdet::'):])
    ref = Config.fromfile(os.path.join(REPO, mmdet_cfg))
    assert _types(jit.model) == [JITTOR_NAMES[t] for t in _types(ref.model)]

    def strip_types(d):
        if isinstance(d, dict):
            return {k: strip_types(v) for k, v in d.items() if k not in ('type', '_scope_')}
        if isinstance(d, (list, tuple)):
            return [strip_types(v) for v in d]
        return d

    assert strip_types(jit.model.to_dict()) == strip_types(ref.model.to_dict())
    # (dataset types are equal too; strip_types only drops mmengine's _scope_ bookkeeping there)
    assert jit.train_dataloader.dataset.type == ref.train_dataloader.dataset.type
    assert strip_types(jit.train_dataloader.to_dict()) == strip_types(ref.train_dataloader.to_dict())


@pytest.mark.parametrize('gfocalv2_cfg, gfl_cfg', [
    ('configs/gfocalv2/gfocalv2_r50_fpn_1x_coco.py', 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'),
    ('configs/demo/gfocalv2_r18_fpn_jittor_head_demo.py',
     'configs/demo/gfl_r18_fpn_demo_mmdet.py'),
])
def test_gfocalv2_config_is_gfl_with_the_dgqp_head(gfocalv2_cfg, gfl_cfg):
    """GFocalV2's configs are their GFL base with only the head's type, DGQP settings and QFL on
    the joint probability changed (the COCO one: the original's use_sigmoid=False, 81 channels)."""
    if gfl_cfg.startswith('mmdet::'):
        import mmdet
        gfl_cfg = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs',
                               gfl_cfg[len('mmdet::'):])
    v2 = Config.fromfile(os.path.join(REPO, gfocalv2_cfg))
    gfl = Config.fromfile(os.path.join(REPO, gfl_cfg))
    v2_head, gfl_head = v2.model.bbox_head.to_dict(), gfl.model.bbox_head.to_dict()
    assert v2_head.pop('type') == 'GFocalV2Head' and gfl_head.pop('type') == 'GFLHead'
    # the original's DGQP settings, explicit or as GFocalV2Head's defaults
    defaults = inspect.signature(GFocalV2Head).parameters
    assert [v2_head.pop(k, defaults[k].default) for k in ('reg_topk', 'reg_channels',
                                                          'add_mean')] == [4, 64, True]
    v2_loss, gfl_loss = v2_head.pop('loss_cls'), gfl_head.pop('loss_cls')
    assert v2_loss.get('use_sigmoid') is False or v2_loss.get('activated') is True
    assert {k: v for k, v in v2_loss.items() if k not in ('use_sigmoid', 'activated')} == \
        {k: v for k, v in gfl_loss.items() if k != 'use_sigmoid'}
    assert v2_head == gfl_head

    def without_scope(d):  # mmengine's _scope_ bookkeeping differs between base and child
        if isinstance(d, dict):
            return {k: without_scope(v) for k, v in d.items() if k != '_scope_'}
        if isinstance(d, (list, tuple)):
            return [without_scope(v) for v in d]
        return d

    rest = [without_scope({k: v for k, v in c.to_dict().items()
                           if k not in ('model', 'custom_imports')}) for c in (v2, gfl)]
    assert rest[0] == rest[1]
    assert without_scope({k: v for k, v in v2.model.to_dict().items() if k != 'bbox_head'}) == \
        without_scope({k: v for k, v in gfl.model.to_dict().items() if k != 'bbox_head'})


def test_nanodet_plus_config_has_nanodets_schedule():
    """NanoDet-Plus-m 320's settings (../shared/specs/seed-systems.md section 4.5)."""
    cfg = Config.fromfile(os.path.join(REPO, 'configs/nanodet_plus/nanodet-plus-m_320_coco.py'))
    resize = [t for t in cfg.train_pipeline if t.type == 'Resize'][0]
    assert resize.scale == (320, 320) and resize.keep_ratio is False
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-3, weight_decay=0.05)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end, warmup.by_epoch) == \
        ('LinearLR', 1e-4, 500, False)
    assert (cosine.type, cosine.T_max, cosine.eta_min, cfg.train_cfg.max_epochs) == \
        ('CosineAnnealingLR', 300, 5e-5, 300)
    hooks = {h.type: h for h in cfg.custom_hooks}
    assert hooks['EMAHook'].momentum == 0.0002 and 'NanoDetPlusEpochHook' in hooks
    assert cfg.model.type == 'NanoDetPlus' and cfg.model.detach_epoch == 10
