"""jt_mm_plugins.ops.add_channel_bias and layers.Conv2d (bias by the multi-threaded CPU kernels)
against PyTorch.

The forward is one float32 addition: equal to torch's bit for bit. The bias gradient is a float64 sum
rounded to float32: within 1e-6 relative of torch's float32 sum and within one float32 rounding of
the float64 sum. Sizes below and above the parallel threshold; 2-D and 5-D inputs; fallbacks for
float64 and the error for a mismatched bias.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.ops import add_channel_bias
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL
from jt_mm_plugins.runtime import jt


@pytest.mark.parametrize('shape', [(3, 5), (2, 3, 4, 4), (2, 16, 64, 80), (1, 4, 3, 5, 6),
                                   (1, 2, PARALLEL_MIN_NUMEL)])
def test_matches_torch(shape):
    rng = np.random.RandomState(0)
    x = rng.randn(*shape).astype(np.float32)
    bias = rng.randn(shape[1]).astype(np.float32)
    grad_y = rng.randn(*shape).astype(np.float32)
    xv, bv = jt.array(x), jt.array(bias)
    y = add_channel_bias(xv, bv)
    gx, gb = jt.grad((y * jt.array(grad_y)).sum(), [xv, bv])

    xt = torch.from_numpy(x).requires_grad_(True)
    bt = torch.from_numpy(bias).requires_grad_(True)
    yt = xt + bt.view(1, -1, *([1] * (len(shape) - 2)))
    yt.backward(torch.from_numpy(grad_y))
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(gx.numpy(), grad_y)
    np.testing.assert_allclose(gb.numpy(), bt.grad.numpy(), rtol=1e-6, atol=1e-6 * x[0].size)
    exact = grad_y.astype(np.float64).sum(axis=tuple(d for d in range(len(shape)) if d != 1))
    np.testing.assert_array_equal(gb.numpy(), exact.astype(np.float32))


def test_float64_uses_jittors_broadcast():
    with jt.flag_scope(auto_convert_64_to_32=0):
        x = jt.array(np.ones((2, 3, 2), dtype=np.float64))
        b = jt.array(np.array([1.0, 2.0, 3.0]))
        y = add_channel_bias(x, b)
    assert str(y.dtype) == 'float64'
    np.testing.assert_array_equal(y.numpy()[1, :, 0], [2, 3, 4])


def test_mismatched_bias_names_both_shapes():
    with pytest.raises(ValueError, match=r'bias of shape \(4,\).*\(2, 3, 5\)'):
        add_channel_bias(jt.zeros((2, 3, 5)), jt.zeros((4, )))


@pytest.mark.parametrize('groups, bias', [(1, True), (2, True), (1, False)])
def test_conv2d_matches_torch_conv(groups, bias):
    rng = np.random.RandomState(1)
    conv = Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=bias)
    assert isinstance(conv, jt.nn.Conv2d)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=bias)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(conv.weight.numpy()))
        if bias:
            ref.bias.copy_(torch.from_numpy(conv.bias.numpy()))
    x = rng.randn(2, 4, 9, 11).astype(np.float32)
    xv = jt.array(x)
    y = conv(xv)
    params = [conv.weight] + ([conv.bias] if bias else [])
    grads = jt.grad((y * y).sum(), [xv] + params)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = ref(xt)
    (yt * yt).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    expected = [xt.grad, ref.weight.grad] + ([ref.bias.grad] if bias else [])
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    assert sorted(conv.state_dict()) == sorted(ref.state_dict())
