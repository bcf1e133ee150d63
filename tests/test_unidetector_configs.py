"""configs/unidetector: every config parses and builds its model, with stand-in files (random
embeddings of the right shape, a cat_info.json, a raw result .pkl) for the data files they name,
which are not shipped; the built parts are the Jittor components, with the original's sizes."""
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
    assert len(CONFIGS) == 5


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds(path, tmp_path):
    cfg = Config.fromfile(path)
    head = cfg.model.roi_head.bbox_head
    for key in ('zeroshot_path', 'cat_freq_path', 'resultfile'):
        value = head.get(key)
        if isinstance(value, str):
            head[key] = stand_in(value, tmp_path)
        elif isinstance(value, list):
            head[key] = [v if v is None else stand_in(v, tmp_path) for v in value]
    model = MODELS.build(cfg.model)
    if 'oln' in os.path.basename(path):  # 1st stage
        assert type(model).__name__ == 'FasterRCNN'
        assert type(model.rpn_head).__name__ == 'OlnRPNHead'  # bridged
        assert type(model.roi_head).__name__ == 'OlnRoIHead'
        assert isinstance(model.roi_head.bbox_head, BridgedBBoxHead)
        assert model.rpn_head.train_cfg['objectness_sampler']['pos_fraction'] == 1.0
        return
    if 'jittor' in os.path.basename(path):  # pure-Jittor 2nd stage
        assert type(model).__name__ == 'JittorFasterRCNN'
        roi_head = model.jittor_module.roi_head
        assert type(roi_head).__name__ == 'JittorStandardRoIHead'
        assert type(roi_head.shared_head).__name__ == 'CLIPResLayer'
        assert type(roi_head.bbox_head).__name__ == 'BBoxHeadCLIPPartitioned'
        assert roi_head.bbox_head.dataset_num_classes == [80, 365, 500]
        assert tuple(roi_head.bbox_head.attnpool.positional_embedding.shape) == (50, 2048)
        assert type(model.jittor_module.backbone).__name__ == 'CLIPResNet'
        # the mixed config's parameters and buffers, same names and shapes (its checkpoint loads)
        mixed_cfg = Config.fromfile(path.replace('faster_rcnn', 'fast_rcnn').replace('jittor',
                                                                                    'mixed'))
        mixed_cfg.model.roi_head.bbox_head = head
        mixed = MODELS.build(mixed_cfg.model).state_dict()
        pure = {k: v for k, v in model.state_dict().items() if not k.startswith('rpn_head.')}
        assert 'roi_head.shared_head.layer4.0.conv1.weight' in pure
        assert {k: tuple(v.shape) for k, v in pure.items()} == \
            {k: tuple(v.shape) for k, v in mixed.items()}
        return
    assert type(model).__name__ == 'FastRCNN'
    assert type(model.roi_head).__name__ == 'MetaStandardRoIHead'
    assert type(model.roi_head.shared_head).__name__ == 'CLIPResLayer'
    assert isinstance(model.roi_head.bbox_head, BridgedBBoxHead)
    assert model.roi_head.bbox_head.num_classes == head.num_classes
    assert tuple(model.roi_head.bbox_head.attnpool.positional_embedding.shape) == (50, 2048)
