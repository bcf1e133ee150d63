"""jt_mm_plugins.ops.add_channel_bias (multi-threaded CPU kernels) against PyTorch.

The forward is one float32 addition: equal to torch's bit for bit. The bias gradient is a float64 sum
rounded to float32: within 1e-6 relative of torch's float32 sum and within one float32 rounding of
the float64 sum. Sizes below and above the parallel threshold; 2-D and 5-D inputs; fallbacks for
float64 and the error for a mismatched bias.
"""
import numpy as np
import pytest
import torch

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
