"""jt_mm_plugins.ops.group_norm (fused CPU kernels) and the GroupNorm layer against torch.

Two references on the same float32 inputs, weights and output gradients:
* ``torch.nn.GroupNorm`` in float32 (what mmdet runs): outputs within 1e-4 absolute, input /
  weight / bias gradients within 1e-3 relative (max |a - b| / max |b|), the project's alignment
  tolerances;
* the same module in float64 (the exact answer up to float64 rounding): the kernels' error must be
  no worse than torch float32's error, or within one float32 ulp of the largest reference value (a
  float32 result cannot do better than its own rounding).
Measured (2026-11-29): outputs <= 3.1e-7 from float64 (torch float32 <= 6.4e-7; 1e-3 at mean 100,
spread 0.01), gradients <= 5.2e-8 relative (torch float32 <= 7.6e-7; 1.3e-3 at mean 100).
The layer must use the kernels for float32 on CPU and its Jittor-op formulation otherwise (float64
here; CUDA runs the same code path), with the same semantics.
"""
import numpy as np
import pytest
import torch
from test_ops_batch_norm import random_case, relative

from jt_mm_plugins.models.layers import norm as norm_layer
from jt_mm_plugins.models.layers.norm import GroupNorm, build_norm_layer
from jt_mm_plugins.ops.group_norm import group_norm, group_norm_supported
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

OUT_ATOL = 1e-4
GRAD_RTOL = 1e-3
FLOAT32_EPS = float(np.finfo(np.float32).eps)

# (shape, num_groups)
CASES = [((2, 8, 5, 7), 4),        # small: one thread
         ((2, 64, 32, 32), 32),    # the GFL head's layout, above the parallel threshold
         ((3, 6), 2),              # (N, C): no spatial dims
         ((2, 4, 9), 4),           # one channel per group, (N, C, L)
         ((1, 6, 3, 1, 5), 3),     # 5-d input, odd sizes
         ((2, 6, 1, 1), 2),        # three values per group (two: dx ~0, ill-posed in float32)
         ((1, 12, 7, 3), 1)]       # one group


def layer_with(num_groups, num_channels, weight, bias):
    """A GroupNorm layer holding ``weight`` / ``bias`` (``affine=False`` when they are None)."""
    layer = GroupNorm(num_groups, num_channels, affine=weight is not None)
    if weight is not None:
        layer.weight.update(jt.array(weight))
        layer.bias.update(jt.array(bias))
    return layer


def torch_reference(x, weight, bias, grad_y, num_groups, dtype, eps=1e-5):
    """torch.nn.GroupNorm in ``dtype``: output and gradients of x, weight, bias (None if absent)."""
    module = torch.nn.GroupNorm(num_groups, x.shape[1], eps=eps, affine=weight is not None)
    module = module.to(dtype)
    if weight is not None:
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(weight))
            module.bias.copy_(torch.from_numpy(bias))
    xt = torch.from_numpy(x).to(dtype).requires_grad_(True)
    y = module(xt)
    y.backward(torch.from_numpy(grad_y).to(dtype))
    grads = [xt.grad] + ([module.weight.grad, module.bias.grad] if weight is not None else [])
    return [t.detach().double().numpy() for t in [y] + grads]


def jittor_result(x, weight, bias, grad_y, num_groups, eps=1e-5, call=None):
    """Output and gradients of x (weight, bias) through ``call`` (default: ops.group_norm)."""
    xj = jt.array(x)
    wj = None if weight is None else jt.array(weight)
    bj = None if bias is None else jt.array(bias)
    if call is None:
        y = group_norm(xj, num_groups, wj, bj, eps)
    else:
        y = call(xj)
        wj, bj = getattr(call, 'weight', None), getattr(call, 'bias', None)
    targets = [xj] + ([wj, bj] if wj is not None else [])
    grads = jt.grad((y * jt.array(grad_y)).sum(), targets)
    return [v.numpy().astype(np.float64) for v in [y] + list(grads)]


def assert_matches_torch(ours, x, weight, bias, grad_y, num_groups, eps=1e-5, against_float32=True):
    """Within the alignment tolerances of torch float32 (unless ``against_float32`` is False: where
    torch float32 is itself further off than them), and no further than it from torch float64."""
    ref32 = torch_reference(x, weight, bias, grad_y, num_groups, torch.float32, eps)
    ref64 = torch_reference(x, weight, bias, grad_y, num_groups, torch.float64, eps)
    assert len(ours) == len(ref32)
    names = ['output', 'grad_x', 'grad_weight', 'grad_bias']
    for name, a, t32, t64 in zip(names, ours, ref32, ref64):
        assert a.shape == t64.shape, (name, a.shape, t64.shape)
        if not against_float32:
            pass
        elif name == 'output':
            assert float(np.abs(a - t32).max()) <= OUT_ATOL, name
        else:
            assert relative(a, t32) <= GRAD_RTOL, name
        our_err = float(np.abs(a - t64).max())
        torch_err = float(np.abs(t32 - t64).max())
        ulp = FLOAT32_EPS * float(np.abs(t64).max())
        assert our_err <= max(torch_err, ulp), (name, our_err, torch_err, ulp)


@pytest.mark.parametrize('shape,num_groups', CASES)
@pytest.mark.parametrize('affine', [True, False])
def test_kernels_match_torch(shape, num_groups, affine):
    x, weight, bias, grad_y = random_case(shape)
    if not affine:
        weight = bias = None
    ours = jittor_result(x, weight, bias, grad_y, num_groups)
    assert_matches_torch(ours, x, weight, bias, grad_y, num_groups)


def test_eps_is_used():
    # A nearly constant group: the output is dominated by eps, so a wrong eps shows.
    x, weight, bias, grad_y = random_case((2, 4, 3, 3), std=1e-3)
    ours = jittor_result(x, weight, bias, grad_y, 2, eps=1e-3)
    assert_matches_torch(ours, x, weight, bias, grad_y, 2, eps=1e-3)


@pytest.mark.parametrize('mean,std,against_float32', [(100.0, 1e-2, False), (1000.0, 10.0, True)])
def test_large_mean(mean, std, against_float32):
    """A group mean far above its spread: E[x^2] - E[x]^2 would cancel; torch's float32 kernel
    folds the mean into a shift and loses digits (at mean 100, spread 0.01 its output is ~1e-3 off
    the exact one, so only float64 is the reference there); ours must be no worse, gradients
    included."""
    x, weight, bias, grad_y = random_case((2, 8, 8, 8), seed=5, mean=mean, std=std)
    ours = jittor_result(x, weight, bias, grad_y, 4)
    assert_matches_torch(ours, x, weight, bias, grad_y, 4, against_float32=against_float32)
    our_out_err = float(np.abs(ours[0] - torch_reference(x, weight, bias, grad_y, 4,
                                                         torch.float64)[0]).max())
    assert our_out_err <= 1e-5, our_out_err


@pytest.mark.parametrize('affine', [True, False])
def test_layer_uses_kernels_on_cpu_float32(monkeypatch, affine):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1])
        return group_norm(*args, **kwargs)

    monkeypatch.setattr(norm_layer, 'group_norm', counting)
    x, weight, bias, grad_y = random_case((2, 6, 5, 4), seed=1)
    if not affine:
        weight = bias = None
    layer = layer_with(3, 6, weight, bias)
    ours = jittor_result(x, weight, bias, grad_y, 3, call=layer)
    assert calls == [3]
    assert_matches_torch(ours, x, weight, bias, grad_y, 3)


@pytest.mark.parametrize('affine', [True, False])
def test_jittor_op_fallback_matches_kernels_and_torch(monkeypatch, affine):
    """The fallback (CUDA, float64) is the layer's Jittor-op formulation: on float32 it agrees with
    torch and the kernels, and float64 inputs take it (the kernels are not called)."""
    x, weight, bias, grad_y = random_case((2, 6, 5, 4), seed=2)
    if not affine:
        weight = bias = None
    layer = layer_with(3, 6, weight, bias)

    def fallback(xj):
        return layer._execute_jittor_ops(xj)

    fallback.weight = layer.weight if affine else None
    fallback.bias = layer.bias if affine else None
    via_ops = jittor_result(x, weight, bias, grad_y, 3, call=fallback)
    via_kernels = jittor_result(x, weight, bias, grad_y, 3)
    ref32 = torch_reference(x, weight, bias, grad_y, 3, torch.float32)
    for a, k, t in zip(via_ops, via_kernels, ref32):
        assert float(np.abs(a - k).max()) <= OUT_ATOL * max(1.0, float(np.abs(t).max()))
    assert float(np.abs(via_ops[0] - ref32[0]).max()) <= OUT_ATOL
    for a, t in zip(via_ops[1:], ref32[1:]):
        assert relative(a, t) <= GRAD_RTOL

    def refuse(*args, **kwargs):
        raise AssertionError('float64 must not reach the float32 kernels')

    monkeypatch.setattr(norm_layer, 'group_norm', refuse)
    x64 = jt.array(x).float64()
    assert not group_norm_supported(x64)
    y64 = layer(x64)
    assert y64.dtype == 'float64'
    ref64 = torch_reference(x, weight, bias, grad_y, 3, torch.float64)
    assert float(np.abs(y64.numpy() - ref64[0]).max()) <= 1e-12


def test_frozen_affine_and_no_grad():
    x, weight, bias, grad_y = random_case((2, 8, 6, 6))
    _, layer = build_norm_layer(dict(type='GN', num_groups=4, requires_grad=False), 8)
    layer.weight.update(jt.array(weight))
    layer.bias.update(jt.array(bias))
    xj = jt.array(x)
    y = layer(xj)
    grad_x = jt.grad((y * jt.array(grad_y)).sum(), xj)
    ref = torch_reference(x, weight, bias, grad_y, 4, torch.float64)
    assert relative(grad_x.numpy(), ref[1]) <= 1e-6
    with jt.no_grad():
        y2 = layer(xj)
    np.testing.assert_array_equal(y2.numpy(), y.numpy())


def test_bad_inputs_are_named():
    x = jt.array(np.zeros((2, 6, 4, 4), np.float32))
    with pytest.raises(ValueError, match='6 channels .* not a multiple of num_groups=4'):
        group_norm(x, 4)
    with pytest.raises(ValueError, match=r'weight must be float32 of shape \(6,\)'):
        group_norm(x, 3, jt.ones((4, )), None)
    with pytest.raises(ValueError, match='bias must be float32'):
        group_norm(x, 3, None, jt.zeros((6, ), dtype='int32'))
    with pytest.raises(ValueError, match=r'\(N, C, ...\)'):
        group_norm(jt.zeros((6, )), 3)
    with pytest.raises(ValueError, match='float32 on CPU only.*float64'):
        group_norm(jt.zeros((2, 6), dtype='float64'), 3)
    with pytest.raises(InputError, match=r'GroupNorm expects \(N, 6, ...\) input'):
        GroupNorm(3, 6)(jt.zeros((2, 4, 3)))


def test_jittor_op_fallback_large_mean_is_stable():
    """The fallback's corrected two-pass mean keeps a mean-100, spread-0.01 group at torch float32's
    accuracy (E[x^2] - E[x]^2, Jittor's own nn.GroupNorm, would be ~6 off)."""
    x, weight, bias, _ = random_case((2, 8, 8, 8), seed=5, mean=100.0, std=1e-2)
    layer = layer_with(4, 8, weight, bias)
    truth = torch_reference(x, weight, bias, np.zeros_like(x), 4, torch.float64)[0]
    torch_err = float(np.abs(torch_reference(x, weight, bias, np.zeros_like(x), 4,
                                             torch.float32)[0] - truth).max())
    our_err = float(np.abs(layer._execute_jittor_ops(jt.array(x)).numpy() - truth).max())
    assert our_err <= torch_err, (our_err, torch_err)
