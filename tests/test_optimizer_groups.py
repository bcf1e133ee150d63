"""mmengine's optimizer constructor treats a Jittor part exactly as its PyTorch twin.

``DefaultOptimWrapperConstructor`` decides ``paramwise_cfg`` by module type (``norm_decay_mult`` for
``_BatchNorm``/``GroupNorm``..., ``dwconv_decay_mult`` for ``Conv2d`` with ``in_channels ==
groups``) and by parameter name (``bias_*``, ``custom_keys``). The bridge shows each Jittor submodule
as a torch module of its twin's type (jt_mm_plugins/bridge/mirrors.py), so every option must give
each parameter the same learning rate and weight decay as on the twin, in the same order: for the
bridged components alone, inside mmdet's detector (mixed) and for the whole pure-Jittor detector.
"""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
from jt_mm_plugins.alignment import get_pair
from jt_mm_plugins.bridge import JittorModuleWrapper
from jt_mm_plugins.models.layers.conv_module import ConvModule

PARAMWISE_OPTIONS = {
    'norm_decay_mult': dict(norm_decay_mult=0.),
    'bias_decay_mult': dict(bias_decay_mult=0.),
    'bias_lr_mult': dict(bias_lr_mult=2.),
    'dwconv_decay_mult': dict(dwconv_decay_mult=0.),
    'flat_decay_mult': dict(flat_decay_mult=0.),
    'bypass_duplicate': dict(bypass_duplicate=True),
    'custom_keys': dict(custom_keys={'bn': dict(decay_mult=0.), 'conv': dict(lr_mult=0.5),
                                     'layer1': dict(lr_mult=0.1, decay_mult=0.5)}),
    'all_at_once': dict(norm_decay_mult=0., bias_decay_mult=0., bias_lr_mult=2.,
                        dwconv_decay_mult=0.5, custom_keys={'fpn_convs': dict(lr_mult=3.)}),
}


class DepthwiseTwins:
    """A depthwise ConvModule with BN: Jittor (bridged) and mmcv's, for ``dwconv_decay_mult``."""

    def build(self, size='small', seed=0):
        from mmcv.cnn import ConvModule as TorchConvModule
        args = dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8,
                    norm_cfg=dict(type='BN'))
        reference = torch.nn.Sequential(TorchConvModule(**args), TorchConvModule(8, 4, 1))
        candidate = JittorModuleWrapper.from_jittor_module(
            jt.nn.Sequential(ConvModule(**args), ConvModule(8, 4, 1)))
        return candidate, reference, None


TWINS = ['fpn', 'resnet', 'clip_resnet', 'rpn_head', 'roi_head', 'jittor_heads', 'faster_rcnn',
         'depthwise']


def build_twins(name):
    pair = DepthwiseTwins() if name == 'depthwise' else get_pair(name)
    candidate, reference, _ = pair.build('small', 0)
    # Head and detector pairs wrap the model in a loss probe; the optimizer sees the model.
    return getattr(candidate, 'model', candidate), getattr(reference, 'model', reference)


@pytest.fixture(scope='module', params=TWINS)
def twins(request):
    return request.param, build_twins(request.param)


def param_groups(model, paramwise_cfg):
    """[(parameter name, {group setting: value})] in the optimizer's order."""
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
        paramwise_cfg=paramwise_cfg))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for group in wrapper.optimizer.param_groups:
        (param, ) = group['params']
        groups.append((names[id(param)], {k: v for k, v in group.items() if k != 'params'}))
    return groups


@pytest.mark.parametrize('option', list(PARAMWISE_OPTIONS))
def test_paramwise_cfg_gives_the_twins_the_same_groups(twins, option):
    name, (candidate, reference) = twins
    cfg = PARAMWISE_OPTIONS[option]
    expected, got = param_groups(reference, cfg), param_groups(candidate, cfg)
    assert [n for n, _ in got] == [n for n, _ in expected], 'parameter order differs'
    for (param, settings), (_, expected_settings) in zip(got, expected):
        assert settings == expected_settings, f'{name} {option}: {param}'


def test_the_options_are_exercised():
    """Not vacuous: on these twins each option changes some parameter's group."""
    changed = {option: set() for option in PARAMWISE_OPTIONS}
    for name in ('resnet', 'fpn', 'depthwise', 'faster_rcnn'):
        _, reference = build_twins(name)
        # bias_lr_mult=1 changes nothing but makes the constructor build one group per parameter
        baseline = dict(param_groups(reference, dict(bias_lr_mult=1.)))
        for option, cfg in PARAMWISE_OPTIONS.items():
            if dict(param_groups(reference, cfg)) != baseline:
                changed[option].add(name)
    assert changed.pop('bypass_duplicate') == set()  # no parameter is shared in these models
    assert all(changed.values()), changed
    assert changed['dwconv_decay_mult'] == {'depthwise'}


def test_norm_layers_are_norm_layers_for_mmengine():
    from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm
    candidate, reference = build_twins('faster_rcnn')
    count = {m: sum(isinstance(x, (_BatchNorm, torch.nn.GroupNorm)) for x in m.modules())
             for m in (candidate, reference)}
    assert count[candidate] == count[reference] > 0


def test_a_training_step_with_weight_decay_moves_the_twins_alike():
    """One SGD step with a large weight decay that ``norm_decay_mult=0`` exempts the norms from.

    FPN with BatchNorm and no activation: the loss is smooth (no ReLU kink or argmax a float32
    run could decide differently), so both twins must land on the same weights. The control step
    without ``paramwise_cfg`` shows the decay on the norms is large enough to be seen."""
    from mmdet.registry import MODELS
    cfg = dict(in_channels=[8, 16, 32], out_channels=8, num_outs=3, norm_cfg=dict(type='BN'))
    torch.manual_seed(0)
    reference = MODELS.build(dict(type='FPN', **cfg))
    candidate = MODELS.build(dict(type='JittorFPN', **cfg))
    control = MODELS.build(dict(type='JittorFPN', **cfg))
    for model in (candidate, control):
        model.load_state_dict(reference.state_dict())
    feats = tuple(torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([8, 16, 32]))
    weights = [torch.randn(2, 8, 16 // 2**i, 16 // 2**i) for i in range(3)]
    optimizer = dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.5)
    for model, paramwise_cfg in ((reference, dict(norm_decay_mult=0.)),
                                 (candidate, dict(norm_decay_mult=0.)), (control, {})):
        wrapper = build_optim_wrapper(model, dict(optimizer=optimizer, paramwise_cfg=paramwise_cfg))
        model.train()
        loss = sum((out * w).sum() for out, w in zip(model(feats), weights))
        wrapper.update_params(loss)
    expected = reference.state_dict()
    for name, value in candidate.state_dict().items():
        assert (value.double() - expected[name].double()).abs().max() < 1e-5, name
    norm_weights = [n for n in expected if '.bn.weight' in n]
    assert norm_weights
    moved = max(float((control.state_dict()[n] - expected[n]).abs().max()) for n in norm_weights)
    assert moved > 1e-2  # lr * weight_decay * |weight| = 0.05 for these weights of 1
