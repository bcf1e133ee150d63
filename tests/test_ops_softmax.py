"""jt_mm_plugins.ops.softmax (multi-threaded last-dim softmax) against torch.softmax.

Float32 inputs with masked (``-inf``) entries as attention's key padding gives them, rows split over
the threads (above the parallel threshold) and not (a small 4-d input); outputs within 1e-6 absolute
(softmax values are <= 1), input gradients within 1e-5 of the largest reference value. Masked
entries must be exactly 0 in the output and the gradient, as in torch.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.ops.softmax import softmax_last_dim
from jt_mm_plugins.runtime import jt


@pytest.mark.parametrize('shape', [(16, 64, 80), (2, 3, 4, 5)])
def test_matches_torch_with_masked_entries(shape):
    rng = np.random.RandomState(0)
    x = (rng.randn(*shape) * 4).astype(np.float32)
    x[..., -2:] = -np.inf  # masked keys (every row keeps the others)
    grad_y = rng.randn(*shape).astype(np.float32)
    xv = jt.array(x)
    y = softmax_last_dim(xv)
    gx = jt.grad((y * jt.array(grad_y)).sum(), xv)

    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.softmax(xt, dim=-1)
    yt.backward(torch.from_numpy(grad_y))
    want_y, want_g = yt.detach().numpy(), xt.grad.numpy()
    np.testing.assert_allclose(y.numpy(), want_y, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gx.numpy(), want_g, rtol=0, atol=1e-5 * np.abs(want_g).max())
    assert (y.numpy()[..., -2:] == 0).all() and (gx.numpy()[..., -2:] == 0).all()


def test_float64_falls_back_to_jittor_softmax():
    x = np.random.RandomState(1).randn(3, 7)
    with jt.flag_scope(auto_convert_64_to_32=0):
        y = softmax_last_dim(jt.array(x))
        assert str(y.dtype) == 'float64'
        want = np.exp(x - x.max(1, keepdims=True))
        np.testing.assert_allclose(y.numpy(), want / want.sum(1, keepdims=True), rtol=1e-12)
