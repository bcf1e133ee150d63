"""jt_mm_plugins.ops.relu (multi-threaded CPU kernels) against torch.relu: exact equality.

ReLU is exact in float32 (a copy or a zero), so output and gradient must equal torch's bit for bit,
including inputs that are exactly 0 (gradient 0, as in PyTorch), -0.0, infinities and large arrays
that take the parallel path. Non-float32 inputs and empty ones take ``jt.nn.relu``.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.ops import relu
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL
from jt_mm_plugins.runtime import jt


def _check_against_torch(x: np.ndarray, grad_y: np.ndarray):
    xv = jt.array(x)
    y = relu(xv)
    (gx, ) = jt.grad((y * jt.array(grad_y)).sum(), [xv])
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.relu(xt)
    (yt * torch.from_numpy(grad_y)).sum().backward()
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(gx.numpy(), xt.grad.numpy())
    assert str(y.dtype) == 'float32' and tuple(y.shape) == x.shape


@pytest.mark.parametrize('shape', [(7, ), (2, 3, 5, 5), (2, 64, 56, 56),
                                   (PARALLEL_MIN_NUMEL + 3, )])
def test_matches_torch_small_and_parallel(shape):
    rng = np.random.RandomState(0)
    x = rng.randn(*shape).astype(np.float32)
    x.flat[::11] = 0.0  # exact zeros: gradient 0 on both sides
    _check_against_torch(x, rng.randn(*shape).astype(np.float32))


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, 1e-38, -1e-38, 3.0, -3.0, 1e-45, -1e-45, np.nan,
                  -np.nan], dtype=np.float32)
    _check_against_torch(x, np.arange(1, len(x) + 1, dtype=np.float32))


def test_nan_propagates_as_in_torch_not_as_in_jittor():
    x = np.full(PARALLEL_MIN_NUMEL + 5, -1.0, dtype=np.float32)
    x[::7] = np.nan
    y = relu(jt.array(x)).numpy()
    assert np.isnan(y[::7]).all() and np.isnan(y).sum() == len(x[::7])
    assert np.isnan(torch.relu(torch.from_numpy(x)).numpy()[::7]).all()
    assert not np.isnan(jt.nn.relu(jt.array(x)).numpy()).any()  # why the kernel checks bits


def test_gradient_flows_through_a_chain():
    # relu inside a larger graph: d/dx sum(relu(2x - 1) * 3) = 6 where 2x - 1 > 0
    x = jt.array(np.array([-1.0, 0.25, 0.5, 0.75, 2.0], dtype=np.float32))
    (g, ) = jt.grad((relu(x * 2 - 1) * 3).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0, 0, 0, 6, 6])


@pytest.mark.parametrize('dtype', ['float64'])
def test_other_dtypes_use_jittors_relu(dtype):
    with jt.flag_scope(auto_convert_64_to_32=0):
        x = jt.array(np.array([-2, 0, 3], dtype=dtype))
    assert str(x.dtype) == dtype
    y, expected = relu(x), jt.nn.relu(x)
    assert str(y.dtype) == str(expected.dtype)
    np.testing.assert_array_equal(y.numpy(), expected.numpy())
    np.testing.assert_array_equal(y.numpy(), [0, 0, 3])


def test_empty_input():
    y = relu(jt.zeros((0, 4), dtype='float32'))
    assert tuple(y.shape) == (0, 4)
