"""The Jittor registries are one place with one build path and one error style
(``jt_mm_plugins/registry.py``): models, losses, norm and activation layers and predictors in
``JITTOR_MODELS``, task modules in ``JITTOR_TASK_UTILS``, all built by mmengine's ``Registry.build``."""
import pytest

import jt_mm_plugins  # noqa: F401  (registers everything)
from jt_mm_plugins.bridge import build_jittor_module
from jt_mm_plugins.models.layers import build_activation_layer, build_norm_layer
from jt_mm_plugins.models.roi_heads.bbox_head import build_predictor
from jt_mm_plugins.models.task_modules import build_jittor_loss, build_jittor_task_module
from jt_mm_plugins.registry import (JITTOR_MODELS, JITTOR_TASK_UTILS, build_jittor_from_cfg)
from jt_mm_plugins.runtime import jt

# Every builder of the package, with a valid config of its kind: (builder, cfg).
BUILDERS = {
    'module': (build_jittor_module, dict(type='FPN', in_channels=[4, 8], out_channels=4, num_outs=2)),
    'loss': (build_jittor_loss, dict(type='GIoULoss', loss_weight=2.0)),
    'task module': (build_jittor_task_module, dict(type='MaxIoUAssigner', pos_iou_thr=0.7,
                                                   neg_iou_thr=0.3)),
    'norm': (lambda cfg: build_norm_layer(cfg, 8)[1], dict(type='GN', num_groups=2)),
    'activation': (build_activation_layer, dict(type='LeakyReLU', negative_slope=0.2)),
    'predictor': (lambda cfg: build_predictor(cfg, 8, 3, 'Head', 'cls_predictor_cfg'),
                  dict(type='Linear')),
}


def test_two_registries_built_by_mmengine_registry_build():
    for registry in (JITTOR_MODELS, JITTOR_TASK_UTILS):
        assert registry.build_func is build_jittor_from_cfg
    # Losses, norm and activation layers and Linear share the models' registry, as in mmdet/mmcv.
    for name in ('JittorFPN', 'GIoULoss', 'QualityFocalLoss', 'GN', 'BN', 'SyncBN', 'ReLU', 'Linear'):
        assert JITTOR_MODELS.get(name) is not None, name
    assert JITTOR_TASK_UTILS.get('ATSSAssigner') is not None
    assert JITTOR_MODELS.get('ATSSAssigner') is None


@pytest.mark.parametrize('kind', sorted(BUILDERS))
def test_every_builder_builds_a_valid_config(kind):
    builder, cfg = BUILDERS[kind]
    built = builder(dict(cfg))
    assert type(built).__name__ in (cfg['type'], 'Jittor' + cfg['type'], 'GroupNorm')
    if kind != 'task module':
        assert isinstance(built, jt.nn.Module)


@pytest.mark.parametrize('kind', sorted(BUILDERS))
def test_every_builder_names_a_misspelt_key_and_what_is_accepted(kind):
    builder, cfg = BUILDERS[kind]
    with pytest.raises(TypeError, match=r"got unexpected config key\(s\) \['no_such_key'\]; it accepts"):
        builder(dict(cfg, no_such_key=1))


@pytest.mark.parametrize('kind', sorted(set(BUILDERS) - {'predictor'}))
def test_every_builder_names_an_unknown_type_and_lists_the_registered(kind):
    builder, _ = BUILDERS[kind]
    with pytest.raises(KeyError, match=r'"NoSuchType" is not a registered Jittor .*Available: '):
        builder(dict(type='NoSuchType'))


@pytest.mark.parametrize('kind', sorted(set(BUILDERS) - {'predictor'}))
def test_every_builder_refuses_configs_without_type_or_not_dicts(kind):
    builder, _ = BUILDERS[kind]
    with pytest.raises(KeyError, match='has no "type" key'):
        builder(dict(num=3))
    with pytest.raises(TypeError, match='the config must be a dict'):
        builder(['not', 'a', 'dict'])


def test_mmdet_names_build_the_jittor_twins_and_classes_pass_through():
    fpn = JITTOR_MODELS.build(dict(type='FPN', in_channels=[4], out_channels=4, num_outs=1))
    assert type(fpn) is JITTOR_MODELS.get('JittorFPN')
    relu = JITTOR_MODELS.build(dict(type=JITTOR_MODELS.get('ReLU')))
    assert type(relu).__name__ == 'ReLU'


def test_a_torch_class_as_type_is_refused_by_name():
    import torch
    with pytest.raises(TypeError, match='not a jittor.*Module subclass'):
        JITTOR_MODELS.build(dict(type=torch.nn.ReLU))
