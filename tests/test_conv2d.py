"""layers.Conv2d (Jittor's nn.Conv2d with the 1x1 matrix-product path and the bias kernels) and
ops.conv1x1 against torch's convolution.

Tolerances: outputs 1e-5 and gradients 1e-4 (relative to the largest value, float32): oneDNN's
convolution and its sgemm sum in different orders than PyTorch's kernels, never more than that here.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.ops import conv1x1, conv1x1_supported
from jt_mm_plugins.runtime import jt


def _assert_close(got, want, rtol):
    want = want.detach().numpy()
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize('kernel_size, stride, padding, groups, bias', [
    (1, 1, 0, 1, True),    # the matrix-product path, with bias
    (1, 1, 0, 1, False),   # the matrix-product path alone
    (1, 2, 0, 1, False),   # strided 1x1: oneDNN
    (1, 1, 1, 1, True),    # padded 1x1: oneDNN
    (3, 2, 1, 1, True),    # oneDNN + bias kernels
    (3, 1, 1, 2, True),    # grouped
])
def test_matches_torch_conv(kernel_size, stride, padding, groups, bias):
    rng = np.random.RandomState(1)
    conv = Conv2d(4, 6, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias)
    assert isinstance(conv, jt.nn.Conv2d)
    ref = torch.nn.Conv2d(4, 6, kernel_size, stride=stride, padding=padding, groups=groups,
                          bias=bias)
    if bias:
        conv.bias.assign(jt.array(rng.randn(6).astype(np.float32)))
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
    _assert_close(y, yt, 1e-5)
    for got, want in zip(grads, [xt.grad, ref.weight.grad] + ([ref.bias.grad] if bias else [])):
        _assert_close(got, want, 1e-4)
    assert sorted(conv.state_dict()) == sorted(ref.state_dict())


@pytest.mark.parametrize('shape', [(1, 3, 1, 1), (2, 64, 20, 30), (3, 5, 7, 2)])
def test_conv1x1_matches_torch_and_accumulates_the_batch(shape):
    rng = np.random.RandomState(0)
    x = rng.randn(*shape).astype(np.float32)
    w = rng.randn(8, shape[1], 1, 1).astype(np.float32)
    grad_y = rng.randn(shape[0], 8, *shape[2:]).astype(np.float32)
    xv, wv = jt.array(x), jt.array(w)
    y = conv1x1(xv, wv)
    gx, gw = jt.grad((y * jt.array(grad_y)).sum(), [xv, wv])
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt)
    yt.backward(torch.from_numpy(grad_y))
    assert tuple(y.shape) == tuple(yt.shape)
    _assert_close(y, yt, 1e-5)
    _assert_close(gx, xt.grad, 1e-5)
    _assert_close(gw, wt.grad, 1e-5)  # summed over every image of the batch


def test_conv1x1_supported_and_error():
    x, w = jt.zeros((1, 3, 4, 4)), jt.zeros((2, 3, 1, 1))
    assert conv1x1_supported(x, w)
    assert not conv1x1_supported(x, w, stride=2)
    assert not conv1x1_supported(x, w, padding=(0, 1))
    assert not conv1x1_supported(x, jt.zeros((2, 3, 3, 3)))
    assert not conv1x1_supported(x, jt.zeros((2, 4, 1, 1)))
    with pytest.raises(ValueError, match=r'\(1, 3, 4, 4\).*\(2, 4, 1, 1\)'):
        conv1x1(x, jt.zeros((2, 4, 1, 1)))


def test_float64_takes_jittors_convolution():
    with jt.flag_scope(auto_convert_64_to_32=0):
        conv = Conv2d(2, 3, 1)
        conv.weight.assign(conv.weight.float64())
        conv.bias.assign(conv.bias.float64())
        x = jt.array(np.ones((1, 2, 3, 3)))
        y = conv(x)
    assert str(y.dtype) == 'float64'
    expected = conv.weight.numpy()[:, :, 0, 0].sum(1) + conv.bias.numpy()
    np.testing.assert_allclose(y.numpy()[0, :, 1, 1], expected, rtol=1e-12)
