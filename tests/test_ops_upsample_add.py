"""jt_mm_plugins.ops.upsample_x2_add (multi-threaded CPU kernels) against
``fine + F.interpolate(coarse, scale_factor=2, mode='nearest')`` in PyTorch: equal bit for bit,
forward and both gradients (the coarse gradient sums each 2x2 block in PyTorch's order), below and
above the parallel threshold; shapes it does not take raise an error naming both.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jt_mm_plugins.ops import upsample_x2_add, upsample_x2_add_supported
from jt_mm_plugins.runtime import jt


@pytest.mark.parametrize('shape', [(1, 1, 1, 1), (2, 3, 5, 7), (2, 64, 50, 50)])
def test_matches_torch_bit_for_bit(shape):
    n, c, h, w = shape
    rng = np.random.RandomState(0)
    coarse = rng.randn(n, c, h, w).astype(np.float32)
    fine = rng.randn(n, c, 2 * h, 2 * w).astype(np.float32)
    grad_out = (rng.randn(n, c, 2 * h, 2 * w) * 10).astype(np.float32)

    cv, fv = jt.array(coarse), jt.array(fine)
    out = upsample_x2_add(cv, fv)
    gc, gf = jt.grad((out * jt.array(grad_out)).sum(), [cv, fv])

    ct = torch.from_numpy(coarse).requires_grad_(True)
    ft = torch.from_numpy(fine).requires_grad_(True)
    outt = ft + F.interpolate(ct, size=(2 * h, 2 * w), mode='nearest')
    outt.backward(torch.from_numpy(grad_out))
    np.testing.assert_array_equal(out.numpy(), outt.detach().numpy())
    np.testing.assert_array_equal(gc.numpy(), ct.grad.numpy())
    np.testing.assert_array_equal(gf.numpy(), ft.grad.numpy())


def test_supported_only_for_exact_factor_two_float32():
    coarse = jt.zeros((1, 2, 3, 4))
    assert upsample_x2_add_supported(coarse, jt.zeros((1, 2, 6, 8)))
    assert not upsample_x2_add_supported(coarse, jt.zeros((1, 2, 7, 8)))
    assert not upsample_x2_add_supported(coarse, jt.zeros((1, 3, 6, 8)))
    with jt.flag_scope(auto_convert_64_to_32=0):
        assert not upsample_x2_add_supported(coarse.float64(), jt.zeros((1, 2, 6, 8)).float64())


def test_unsupported_shapes_raise_naming_both():
    with pytest.raises(ValueError, match=r'\(1, 2, 3, 4\).*\(1, 2, 7, 8\)'):
        upsample_x2_add(jt.zeros((1, 2, 3, 4)), jt.zeros((1, 2, 7, 8)))
