"""Jittor ``ConvModule`` / ``build_norm_layer`` / ``build_activation_layer`` against mmcv's.

Each case builds mmcv's ``ConvModule`` and the Jittor twin with the same arguments, randomises the
torch weights (and BatchNorm running statistics), copies them into Jittor by name, and compares
outputs (max abs <= 1e-4, float32) and the gradients of a random linear loss w.r.t. the input and
every parameter (max|a - b| / max|b| <= 1e-3), in training and evaluation mode.

Kinks: a piecewise activation (ReLU, LeakyReLU, ReLU6, PReLU, ELU, HSigmoid, HSwish, Clamp) whose
input lies within float32 error of a kink takes either branch depending on the rounding of the
machine, and moves the gradients upstream of it. Every comparison here first asserts, on a float64
run of the mmcv module, that each activation input is farther from every kink than 10x the float32
error bound there (jt_mm_plugins/alignment/margins.py): the inputs are built so that it holds (small
tensors, ~1000 values of scale ~1: the nearest lies ~1e-3 away, the bound is ~1e-5), so the float32
gradients compared are well-defined on any machine.
"""
import copy

import numpy as np
import pytest
import torch

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
from jt_mm_plugins.alignment.margins import float32_bound
from jt_mm_plugins.models.layers.activation import build_activation_layer
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.norm import GroupNorm, build_norm_layer

mmcv_cnn = pytest.importorskip('mmcv.cnn')

OUT_ATOL = 1e-4
GRAD_RTOL = 1e-3


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|b|, 1e-6)."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    """Random parameters, and random BN statistics, so that no identity/zero init hides a bug."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 1.0 - 0.5)
            if name.endswith('activate.weight'):  # PReLU slope
                p.abs_()
        for name, b in module.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.5)
            elif name.endswith('running_var'):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith('num_batches_tracked'):
                b.fill_(7)


def copy_torch_to_jittor(jt_module: 'jt.nn.Module', torch_module: torch.nn.Module) -> None:
    """Copy a torch state dict into a Jittor module by name through numpy; keys and shapes must match
    (0-d torch buffers such as ``num_batches_tracked`` are (1,) in Jittor)."""
    own = dict(jt_module.named_parameters())
    state = torch_module.state_dict()
    assert set(own) == set(state), sorted(set(own) ^ set(state))
    for name, value in state.items():
        var = own[name]
        array = value.detach().cpu().numpy()
        assert array.size == var.numel(), (name, array.shape, tuple(var.shape))
        var.assign(jt.array(array.reshape(tuple(var.shape))).cast(var.dtype))


def set_mode(jt_module: 'jt.nn.Module', torch_module: torch.nn.Module, train: bool) -> None:
    torch_module.train(train)
    # Only the flags: Jittor's Module.eval() would also stop the parameters' gradients.
    for m in jt_module.modules():
        m.is_train = train


def kinks(act: torch.nn.Module) -> list:
    """Where the activation's derivative jumps (none for smooth ones)."""
    name = type(act).__name__
    if name in ('ReLU', 'LeakyReLU', 'PReLU', 'ELU'):
        return [0.0]
    if name == 'ReLU6':
        return [0.0, 6.0]
    if name == 'HSigmoid':  # clamp((x + bias) / divisor, min_value, max_value)
        return [act.min_value * act.divisor - act.bias, act.max_value * act.divisor - act.bias]
    if name in ('HSwish', 'Hardswish'):  # x * relu6(x + 3) / 6
        return [-3.0, 3.0]
    if name == 'Clamp':
        return [act.min, act.max]
    return []


def activation_inputs(torch_module: torch.nn.Module, x: torch.Tensor) -> list:
    """(activation, its input) for every activation call of a forward of ``torch_module``."""
    acts = [m for m in torch_module.modules() if kinks(m)]
    seen = []
    handles = [m.register_forward_pre_hook(
        lambda m, args: seen.append((m, args[0].detach().double().clone()))) for m in acts]
    try:
        torch_module(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def assert_kink_margins(torch_module: torch.nn.Module, x: np.ndarray, train: bool) -> None:
    """Every activation input farther from every kink, in a float64 run, than 10x the float32
    error bound (the float32 run's distance from the float64 one)."""
    module64 = copy.deepcopy(torch_module).double().train(train)
    module32 = copy.deepcopy(torch_module).train(train)
    pairs = list(zip(activation_inputs(module64, torch.tensor(x).double()),
                     activation_inputs(module32, torch.tensor(x))))
    for (act, v64), (_, v32) in pairs:
        points = kinks(act)
        margin = min(float((v64 - k).abs().min()) for k in points)
        bound = float32_bound(float((v32 - v64).abs().max()), float(v64.abs().max()))
        assert margin >= bound, (f'{type(act).__name__}: an input lies {margin:.2e} from a kink '
                                 f'in {points}, within the float32 bound {bound:.2e}')
    return len(pairs)


def compare(jt_module, torch_module, x: np.ndarray, train: bool, seed: int = 1) -> dict:
    """Run both modules on ``x``; return the errors of output, input grad and each param grad
    (after asserting that no activation input lies near a kink: module docstring)."""
    set_mode(jt_module, torch_module, train)
    assert_kink_margins(torch_module, x, train)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch_module(x_t * 1.0)  # not the leaf itself: mmcv's activations may run in place
    g = np.random.default_rng(seed).standard_normal(out_t.shape).astype(np.float32)
    (out_t * torch.tensor(g)).sum().backward()

    params = dict(jt_module.named_parameters())
    trainable = {k: v for k, v in params.items() if v.requires_grad}
    x_j = jt.array(x)
    out_j = jt_module(x_j)
    grads = jt.grad((out_j * jt.array(g)).sum(), [x_j] + list(trainable.values()))

    errors = {'out': float(np.abs(out_j.numpy() - out_t.detach().numpy()).max()),
              'grad:input': rel_err(grads[0].numpy(), x_t.grad.numpy())}
    torch_params = dict(torch_module.named_parameters())
    for (name, _), grad in zip(trainable.items(), grads[1:]):
        errors[f'grad:{name}'] = rel_err(grad.numpy(), torch_params[name].grad.numpy())
    if train:
        torch_buffers = dict(torch_module.named_buffers())
        for name, var in params.items():
            if name.endswith(('running_mean', 'running_var')):
                errors[f'buffer:{name}'] = float(
                    np.abs(var.numpy() - torch_buffers[name].numpy()).max())
    return errors


def check(errors: dict) -> None:
    grads = {k: v for k, v in errors.items() if k.startswith('grad:')}
    worst = max(grads, key=grads.get)
    print(f'\n[conv-align] max|out diff|={errors["out"]:.2e} worst grad rel={grads[worst]:.2e} '
          f'({worst})')  # shown with pytest -s
    assert errors['out'] <= OUT_ATOL, errors
    for key, err in errors.items():
        if key.startswith('grad:'):
            assert err <= GRAD_RTOL, (key, errors)
        elif key.startswith('buffer:'):
            assert err <= OUT_ATOL, (key, errors)


def build_pair(*args, **kwargs):
    torch_module = mmcv_cnn.ConvModule(*args, **kwargs)
    randomise_(torch_module)
    jt_module = ConvModule(*args, **kwargs)
    copy_torch_to_jittor(jt_module, torch_module)
    return jt_module, torch_module


def test_state_dict_names_and_shapes_match_mmcv():
    for norm_cfg in (None, dict(type='BN'), dict(type='GN', num_groups=4)):
        torch_module = mmcv_cnn.ConvModule(8, 16, 3, padding=1, norm_cfg=norm_cfg,
                                           act_cfg=dict(type='PReLU'))
        jt_module = ConvModule(8, 16, 3, padding=1, norm_cfg=norm_cfg, act_cfg=dict(type='PReLU'))
        jt_shapes = {k: tuple(v.shape) for k, v in jt_module.named_parameters()}
        torch_shapes = {k: tuple(v.shape) for k, v in torch_module.state_dict().items()}
        torch_shapes = {k: (1, ) if s == () else s for k, s in torch_shapes.items()}  # 0-d buffers
        assert jt_shapes == torch_shapes
        assert jt_module.norm_name == torch_module.norm_name
        assert jt_module.with_bias == torch_module.with_bias == (norm_cfg is None)


@pytest.mark.parametrize('norm_cfg', [None, dict(type='BN'), dict(type='BN', momentum=0.3, eps=1e-3),
                                      dict(type='GN', num_groups=4)],
                         ids=['none', 'bn', 'bn-momentum', 'gn'])
@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_norms_match_mmcv(norm_cfg, train):
    jt_module, torch_module = build_pair(8, 16, 3, stride=2, padding=1, norm_cfg=norm_cfg)
    x = np.random.default_rng(0).standard_normal((2, 8, 12, 10)).astype(np.float32)
    check(compare(jt_module, torch_module, x, train))


@pytest.mark.parametrize('order', [('conv', 'norm', 'act'), ('act', 'conv', 'norm'),
                                   ('norm', 'act', 'conv'), ('conv', 'act', 'norm')])
@pytest.mark.parametrize('norm_cfg', [dict(type='BN'), dict(type='GN', num_groups=2)],
                         ids=['bn', 'gn'])
def test_orders_match_mmcv(order, norm_cfg):
    jt_module, torch_module = build_pair(8, 12, 3, padding=1, norm_cfg=norm_cfg, order=order)
    x = np.random.default_rng(1).standard_normal((2, 8, 9, 9)).astype(np.float32)
    check(compare(jt_module, torch_module, x, train=True))


@pytest.mark.parametrize('act_cfg', [
    None,
    dict(type='ReLU'),
    dict(type='LeakyReLU', negative_slope=0.1),
    dict(type='ReLU6'),
    dict(type='ELU', alpha=0.7),
    dict(type='PReLU'),
    dict(type='Sigmoid'),
    dict(type='Tanh'),
    dict(type='SiLU'),
    dict(type='Swish'),
    dict(type='GELU'),
    dict(type='GELU', approximate='tanh'),
    dict(type='HSigmoid'),
    dict(type='HSwish'),
], ids=lambda c: 'none' if c is None else '-'.join(str(v) for v in c.values()))
def test_activations_match_mmcv(act_cfg):
    # Inputs scaled so that the clamps / kinks of hard activations are all exercised.
    jt_module, torch_module = build_pair(8, 8, 1, norm_cfg=dict(type='BN'), act_cfg=act_cfg)
    x = (np.random.default_rng(2).standard_normal((2, 8, 6, 6)) * 3).astype(np.float32)
    check(compare(jt_module, torch_module, x, train=True))


@pytest.mark.parametrize('kwargs', [
    dict(kernel_size=3, padding=2, dilation=2),
    dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=3, padding=1, groups=4),
    dict(kernel_size=3, padding=1, groups=8, norm_cfg=dict(type='BN')),  # depthwise
    dict(kernel_size=1, bias=True, norm_cfg=dict(type='GN', num_groups=4)),
    dict(kernel_size=1, bias=False, act_cfg=None),
], ids=['dilation', 'asym-stride', 'groups', 'depthwise', 'bias+gn', 'nobias'])
def test_conv_options_match_mmcv(kwargs):
    kernel_size = kwargs.pop('kernel_size')
    jt_module, torch_module = build_pair(8, 16 if kwargs.get('groups', 1) != 8 else 8, kernel_size,
                                         **kwargs)
    x = np.random.default_rng(3).standard_normal((2, 8, 11, 9)).astype(np.float32)
    check(compare(jt_module, torch_module, x, train=True))


@pytest.mark.parametrize('act_cfg', [dict(type='Clamp', min=-0.5, max=0.5), dict(type='Clip'),
                                     dict(type='PReLU', num_parameters=3, init=0.1),
                                     dict(type='LeakyReLU'), dict(type='HSigmoid', bias=1.0,
                                                                  divisor=2.0)],
                         ids=lambda c: '-'.join(str(v) for v in c.values()))
def test_standalone_activations_match_mmcv(act_cfg):
    # Clamp cannot sit in mmcv's ConvModule (it gets an ``inplace`` it does not take), so alone.
    torch_act = mmcv_cnn.build_activation_layer(dict(act_cfg))
    jt_act = build_activation_layer(dict(act_cfg))
    copy_torch_to_jittor(jt_act, torch_act)
    x = (np.random.default_rng(8).standard_normal((2, 3, 4, 4)) * 2).astype(np.float32)
    check(compare(jt_act, torch_act, x, train=True))


def test_efficient_conv_bn_eval_matches_mmcv():
    # mmcv folds BN into the conv weights in eval mode; the Jittor twin runs them unfused.
    jt_module, torch_module = build_pair(8, 8, 3, padding=1, norm_cfg=dict(type='BN'),
                                         efficient_conv_bn_eval=True)
    assert torch_module.efficient_conv_bn_eval_forward is not None
    x = np.random.default_rng(9).standard_normal((2, 8, 7, 7)).astype(np.float32)
    check(compare(jt_module, torch_module, x, train=False))


def test_activate_and_norm_switches():
    jt_module, torch_module = build_pair(8, 8, 3, padding=1, norm_cfg=dict(type='BN'))
    set_mode(jt_module, torch_module, train=False)
    x = np.random.default_rng(4).standard_normal((1, 8, 5, 5)).astype(np.float32)
    for kwargs in (dict(activate=False), dict(norm=False), dict(activate=False, norm=False)):
        expected = torch_module(torch.tensor(x), **kwargs).detach().numpy()
        assert np.abs(jt_module(jt.array(x), **kwargs).numpy() - expected).max() <= OUT_ATOL


def test_frozen_norm_requires_grad():
    name, layer = build_norm_layer(dict(type='BN', requires_grad=False), 4)
    assert name == 'bn' and isinstance(layer, BatchNorm2d)
    assert not layer.weight.requires_grad and not layer.bias.requires_grad


def test_build_norm_layer_names():
    assert build_norm_layer(dict(type='SyncBN'), 4)[0] == 'bn'
    assert build_norm_layer(dict(type='BN2d'), 4, postfix=1)[0] == 'bn1'
    name, gn = build_norm_layer(dict(type='GN', num_groups=2), 4, postfix='_x')
    assert name == 'gn_x' and isinstance(gn, GroupNorm) and gn.eps == 1e-5


def test_groupnorm_large_mean_is_stable():
    # mean 100, spread 0.01: E[x^2] - E[x]^2 (Jittor's nn.GroupNorm) cancels catastrophically (error
    # ~6.6 here); torch's float32 GroupNorm is ~7e-4 off the float64 result. Ours must be no worse.
    x = (np.random.default_rng(5).standard_normal((2, 4, 8, 8)) * 1e-2 + 100).astype(np.float32)
    truth = torch.nn.functional.group_norm(torch.tensor(x, dtype=torch.float64), 2).numpy()
    torch_err = np.abs(torch.nn.functional.group_norm(torch.tensor(x), 2).numpy() - truth).max()
    our_err = np.abs(GroupNorm(2, 4)(jt.array(x)).numpy() - truth).max()
    assert our_err <= max(torch_err, 1e-4), (our_err, torch_err)


@pytest.mark.parametrize('kwargs, error', [
    (dict(conv_cfg=dict(type='DCNv2')), NotImplementedError),
    (dict(conv_cfg=dict(type='Conv2d')), None),
    (dict(padding_mode='reflect'), NotImplementedError),
    (dict(with_spectral_norm=True), NotImplementedError),
    (dict(order=('conv', 'act')), ValueError),
    (dict(order=('conv', 'norm', 'norm')), ValueError),
    (dict(bias='yes'), ValueError),
    (dict(groups=3), ValueError),
    (dict(norm_cfg=dict(type='IN')), KeyError),
    (dict(norm_cfg=dict(type='GN')), KeyError),
    (dict(norm_cfg='BN'), TypeError),
    (dict(act_cfg=dict(type='Mish')), KeyError),
    (dict(act_cfg=dict(type='ReLU', slope=2)), TypeError),
    (dict(act_cfg=dict(negative_slope=2)), KeyError),
])
def test_invalid_arguments_fail_loudly(kwargs, error):
    if error is None:
        ConvModule(4, 8, 3, **kwargs)
        return
    with pytest.raises(error) as info:
        ConvModule(4, 8, 3, **kwargs)
    assert str(info.value)


def test_wrong_input_channels_fail_loudly():
    with pytest.raises(ValueError, match=r'\(N, 4, H, W\)'):
        ConvModule(4, 8, 3)(jt.zeros((1, 5, 8, 8)))


def test_default_init_is_mmcvs():
    # Kaiming normal, fan_out, relu gain: std = sqrt(2 / (out * k * k)); zero bias; BN 1/0.
    jt.set_global_seed(0)
    module = ConvModule(32, 64, 3, norm_cfg=dict(type='BN'))
    std = float(module.conv.weight.numpy().std())
    assert abs(std - np.sqrt(2.0 / (64 * 9))) < 0.05 * np.sqrt(2.0 / (64 * 9))
    assert np.all(module.bn.weight.numpy() == 1) and np.all(module.bn.bias.numpy() == 0)
    leaky = ConvModule(32, 64, 3, bias=True, act_cfg=dict(type='LeakyReLU', negative_slope=1.0))
    assert abs(float(leaky.conv.weight.numpy().std()) - np.sqrt(1.0 / (64 * 9))) < 0.05 * np.sqrt(
        1.0 / (64 * 9))
    assert np.all(leaky.conv.bias.numpy() == 0)


def test_build_activation_layer_rejects_non_jittor_class():
    with pytest.raises(TypeError):
        build_activation_layer(dict(type=torch.nn.ReLU))
