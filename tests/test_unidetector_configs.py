"""configs/unidetector: every config parses and builds its model, with stand-in files (random
embeddings of the right shape, a cat_info.json, a raw result .pkl) for the data files they name,
which are not shipped; the built parts are the Jittor components, with the original's sizes; each
mixed config has a pure-Jittor twin with the same parameters."""
import glob
import json
import os
import pickle

import numpy as np
import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead

register_all_modules()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', 'unidetector', '*.py')))
MIXED = [p for p in CONFIGS if p.endswith('_mixed.py')]
CLASS_COUNTS = {'coco': 80, 'obj365': 365, 'object365': 365, 'oid': 500, 'lvis': 1230}


def stand_in(path: str, tmp_path) -> str:
    name = os.path.basename(path)
    count = next(n for k, n in CLASS_COUNTS.items() if name.startswith(k)) \
        if not name.startswith('raw') else 1230
    out = str(tmp_path / name)
    if not os.path.exists(out):
        if name.endswith('.npy'):
            np.save(out, np.random.RandomState(0).randn(count, 1024).astype(np.float16))
        elif name.endswith('.json'):
            with open(out, 'w') as f:
                json.dump([dict(id=i + 1, image_count=1) for i in range(count)], f)
        else:
            with open(out, 'wb') as f:
                pickle.dump([[np.zeros((1, 5))] * count], f)
    return out


def test_there_are_configs():
    assert len(CONFIGS) == 8  # four models (1st stage, 2nd stage, LVIS raw / calibrated) x 2 modes
    assert sorted(p.replace('_jittor.py', '_mixed.py') for p in CONFIGS
                  if p.endswith('_jittor.py')) == MIXED


def build(path, tmp_path):
    cfg = Config.fromfile(path)
    head = cfg.model.roi_head.bbox_head
    for key in ('zeroshot_path', 'cat_freq_path', 'resultfile'):
        value = head.get(key)
        if isinstance(value, str):
            head[key] = stand_in(value, tmp_path)
        elif isinstance(value, list):
            head[key] = [v if v is None else stand_in(v, tmp_path) for v in value]
    return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('path', MIXED, ids=os.path.basename)
def test_config_builds_in_both_modes(path, tmp_path):
    """The mixed config and its pure-Jittor twin (``*_jittor.py``): the Jittor components where the
    original has them, and the same parameter and buffer names and shapes in both modes (a
    checkpoint of one loads strictly into the other)."""
    cfg, mixed = build(path, tmp_path)
    pure_cfg, pure = build(path.replace('_mixed.py', '_jittor.py'), tmp_path)
    head = cfg.model.roi_head.bbox_head
    core = pure.jittor_module
    if 'oln' in os.path.basename(path):  # 1st stage
        assert type(mixed).__name__ == 'FasterRCNN'
        assert type(mixed.rpn_head).__name__ == 'OlnRPNHead'  # bridged
        assert type(mixed.roi_head).__name__ == 'OlnRoIHead'
        assert isinstance(mixed.roi_head.bbox_head, BridgedBBoxHead)
        assert mixed.rpn_head.train_cfg['objectness_sampler']['pos_fraction'] == 1.0
        assert type(pure).__name__ == 'JittorFasterRCNN'
        assert [type(m).__name__ for m in (core.backbone, core.neck, core.rpn_head, core.roi_head,
                                           core.roi_head.bbox_head)] == [
            'JittorResNet', 'JittorFPN', 'OlnRPNHead', 'JittorStandardRoIHead',
            'Shared2FCBBoxScoreHead']
    else:  # 2nd stage and LVIS inference: FastRCNN on proposal files, soft-NMS as the original
        assert type(mixed).__name__ == 'FastRCNN'
        assert type(mixed.roi_head).__name__ == 'MetaStandardRoIHead'
        assert type(mixed.roi_head.shared_head).__name__ == 'CLIPResLayer'
        assert isinstance(mixed.roi_head.bbox_head, BridgedBBoxHead)
        assert mixed.roi_head.bbox_head.num_classes == head.num_classes
        assert tuple(mixed.roi_head.bbox_head.attnpool.positional_embedding.shape) == (50, 2048)
        assert dict(cfg.model.test_cfg.rcnn.nms) == dict(type='soft_nms', iou_threshold=0.5,
                                                         method='gaussian')
        assert type(pure).__name__ == 'JittorFastRCNN' and not pure.with_rpn
        assert pure_cfg.model.test_cfg == cfg.model.test_cfg
        assert type(core.backbone).__name__ == 'CLIPResNet'
        assert type(core.roi_head).__name__ == 'JittorStandardRoIHead'
        assert type(core.roi_head.shared_head).__name__ == 'CLIPResLayer'
        assert type(core.roi_head.bbox_head).__name__ == head.type
        if head.type == 'BBoxHeadCLIPPartitioned':
            assert core.roi_head.bbox_head.dataset_num_classes == [80, 365, 500]
        if head.get('withcalibration'):
            assert core.roi_head.bbox_head.withcalibration
    assert {k: tuple(v.shape) for k, v in pure.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in mixed.state_dict().items()}
