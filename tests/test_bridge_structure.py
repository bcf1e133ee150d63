"""What mmdet / mmengine code sees when it walks a bridged module: the twin's structure.

Each check runs the same walk on the PyTorch twin and on the bridged Jittor module and asserts the
same answer: module types and names (convolutions with their groups, norm layers as norm layers),
training flags after ``train()`` with ``norm_eval`` / ``frozen_stages``, ``init_cfg`` matching layers
by class name, public attributes. Walks that cannot work on Jittor layers (SyncBN conversion, FLOP
tracing) must fail with a message instead of silently doing something else.
"""
import copy

import pytest
import torch
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment import get_pair
from jt_mm_plugins.bridge import JittorModuleWrapper
from jt_mm_plugins.bridge.mirrors import TorchMirror
from jt_mm_plugins.models.layers.conv_module import ConvModule
from mmdet.registry import MODELS

TWIN_TYPES = (torch.nn.Conv2d, torch.nn.Linear, _BatchNorm, torch.nn.GroupNorm, torch.nn.ReLU)


def typed_modules(model):
    """{name: (twin type name, conv groups or None)} of the modules mmengine's walks care about."""
    found = {}
    for name, m in model.named_modules():
        kind = next((t for t in TWIN_TYPES if isinstance(m, t)), None)
        if kind is not None:
            found[name] = (kind.__name__, getattr(m, 'groups', None) if kind is torch.nn.Conv2d
                           else None)
    return found


def fpn_twins(**kwargs):
    cfg = dict(in_channels=[8, 16, 32], out_channels=8, num_outs=4, add_extra_convs='on_input',
               norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'))
    cfg.update(kwargs)
    torch.manual_seed(0)
    reference = MODELS.build(dict(type='FPN', **cfg))
    candidate = MODELS.build(dict(type='JittorFPN', **cfg))
    candidate.load_state_dict(reference.state_dict())
    feats = tuple(torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([8, 16, 32]))
    return candidate, reference, feats


def resnet_twins(**kwargs):
    cfg = dict(depth=18, base_channels=8, **kwargs)
    reference = MODELS.build(dict(type='ResNet', **cfg))
    candidate = MODELS.build(dict(type='JittorResNet', **cfg))
    candidate.load_state_dict(reference.state_dict())
    return candidate, reference


@pytest.mark.parametrize('pair', ['fpn', 'resnet', 'clip_resnet', 'rpn_head', 'roi_head',
                                  'faster_rcnn', 'jittor_heads'])
def test_module_walks_find_the_twins_layers(pair):
    candidate, reference, _ = get_pair(pair).build('small', 0)
    got, expected = typed_modules(candidate), typed_modules(reference)
    # every conv / linear / norm layer of the twin, under its name and with its groups
    for name, (kind, groups) in expected.items():
        if kind == 'ReLU':  # mmdet shares one ReLU module per block; Jittor twins may not
            continue
        assert got.get(name) == (kind, groups), f'{pair}: {name}: {got.get(name)} != {kind}'
    assert {n for n, (k, _) in got.items() if k != 'ReLU'} == \
        {n for n, (k, _) in expected.items() if k != 'ReLU'}


def test_depthwise_convolution_shows_its_groups():
    module = JittorModuleWrapper.from_jittor_module(
        ConvModule(8, 8, 3, padding=1, groups=8, norm_cfg=dict(type='BN')))
    assert isinstance(module.conv, torch.nn.Conv2d) and isinstance(module.bn, _BatchNorm)
    assert module.conv.in_channels == module.conv.groups == 8
    assert module.conv.kernel_size == (3, 3) and module.conv.bias is None
    assert module.bn.num_features == 8
    assert isinstance(module.conv, TorchMirror)


def test_public_attributes_of_the_twin_are_visible():
    candidate, reference, _ = fpn_twins(start_level=1, add_extra_convs=True)
    for name in ('in_channels', 'out_channels', 'num_ins', 'num_outs', 'start_level',
                 'end_level', 'backbone_end_level', 'add_extra_convs', 'relu_before_extra_convs',
                 'no_norm_on_lateral', 'upsample_cfg'):
        assert getattr(candidate, name) == getattr(reference, name), name
    assert candidate.add_extra_convs == 'on_input'  # True means 'on_input', as in mmdet
    assert candidate.lateral_convs[0].with_norm and len(candidate.fpn_convs) == 4
    # methods, Vars and submodules of the Jittor module are not exposed as attributes
    assert not hasattr(candidate, 'execute')
    assert isinstance(candidate.lateral_convs[0].conv.weight, torch.nn.Parameter)
    with pytest.raises(AttributeError, match='no_such_attribute'):
        candidate.no_such_attribute


def test_attribute_writes_reach_the_jittor_module():
    candidate, _, feats = fpn_twins(add_extra_convs='on_output')
    candidate.relu_before_extra_convs = True  # as a hook would set a head's flag
    assert candidate.jittor_module.relu_before_extra_convs is True
    assert 'relu_before_extra_convs' not in candidate.__dict__
    candidate.my_own_flag = 3  # a new attribute stays on the torch side
    assert candidate.my_own_flag == 3 and not hasattr(candidate.jittor_module, 'my_own_flag')


@pytest.mark.parametrize('kwargs', [dict(norm_eval=True), dict(frozen_stages=2, norm_eval=False),
                                    dict(norm_eval=False)])
def test_training_flags_after_train_match_the_twin(kwargs):
    candidate, reference = resnet_twins(**kwargs)
    for mode in (True, False, True):
        candidate.train(mode)
        reference.train(mode)
        flags = {n: m.training for n, m in reference.named_modules()
                 if isinstance(m, (_BatchNorm, torch.nn.Conv2d))}
        assert {n: candidate.get_submodule(n).training for n in flags} == flags, (kwargs, mode)
        assert all(candidate.get_submodule(n).jittor_target().is_training() == flag
                   for n, flag in flags.items())


def test_norm_eval_done_by_a_module_walk_reaches_jittor():
    """mmdet-style ``norm_eval``: ``m.eval()`` on every _BatchNorm found by a walk; the Jittor
    BatchNorms then use and keep their running statistics, as the twin's do."""
    candidate, reference, feats = fpn_twins()
    outputs = []
    for model in (candidate, reference):
        model.train()
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        outputs.append(model(feats))
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for a, b in zip(*outputs):
        assert (a - b).abs().max() < 1e-4


def test_init_cfg_matching_layers_by_class_name_reaches_jittor():
    from mmengine.model import initialize
    candidate, reference, feats = fpn_twins()
    init_cfg = [dict(type='Constant', layer='Conv2d', val=0.01, bias=0.1),
                dict(type='Constant', layer='_BatchNorm', val=2., bias=-0.5)]
    for model in (candidate, reference):
        initialize(model, copy.deepcopy(init_cfg))
        model.eval()
    for name, value in reference.state_dict().items():
        assert torch.equal(candidate.state_dict()[name], value), name
    for a, b in zip(candidate(feats), reference(feats)):
        assert (a - b).abs().max() < 1e-4


def test_sync_batchnorm_conversion_is_refused_with_a_message():
    from mmengine.model import revert_sync_batchnorm
    candidate, _, feats = fpn_twins()
    with pytest.raises(RuntimeError, match=r'JittorFPN\.lateral_convs\.0\.bn is the torch view of '
                                           r'a Jittor BatchNorm2d .* SyncBatchNorm'):
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(candidate)
    assert isinstance(candidate.lateral_convs[0].bn, TorchMirror)  # nothing was replaced
    assert revert_sync_batchnorm(candidate) is candidate  # no SyncBN: a no-op, as on the twin
    candidate(feats)


def test_a_mirror_does_not_compute():
    candidate, _, feats = fpn_twins()
    with pytest.raises(RuntimeError, match=r'JittorFPN\.lateral_convs\.0\.conv is the torch view of '
                                           r'a Jittor Conv2d'):
        candidate.lateral_convs[0].conv(feats[0])


def test_flop_analysis_fails_clearly_and_parameters_are_counted():
    from mmengine.analysis import get_model_complexity_info, parameter_count
    candidate, reference, feats = fpn_twins()
    assert parameter_count(candidate)[''] == parameter_count(reference)['']
    with pytest.raises(RuntimeError, match='runs in Jittor, which torch.jit cannot trace'):
        get_model_complexity_info(candidate, inputs=(feats, ))


def test_deepcopy_gives_an_independent_working_copy():
    """mmengine's EMA keeps a deep copy of the model."""
    candidate, _, feats = fpn_twins()
    candidate.eval()
    twin = copy.deepcopy(candidate)
    for a, b in zip(candidate(feats), twin(feats)):
        assert torch.equal(a, b)
    with torch.no_grad():
        twin.fpn_convs[0].conv.weight.mul_(2)
    assert twin.fpn_convs[0].jittor_target() is not candidate.fpn_convs[0].jittor_target()
    assert not torch.equal(candidate(feats)[0], twin(feats)[0])
