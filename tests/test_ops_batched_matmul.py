"""jt_mm_plugins.ops.batched_matmul (oneDNN sgemm per batch entry) against torch.matmul.

Every transpose combination, forward and both gradients (the backward of each combination runs the
kernel in two other combinations), on the shapes attention uses: ``q @ k^T`` and ``attn @ v`` over
``(batch * heads, L, S)``, a batch large enough to be split over the OpenMP threads, a single
entry (oneDNN's own threads), and 4-d operands ``(batch, heads, L, d)``. Tolerance: 1e-5 of the
largest reference value, float32 (sgemm and torch sum in different orders; at these K the
difference stays near 1e-7).
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.ops.batched_matmul import batched_matmul, batched_matmul_supported
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

RTOL = 1e-5

# (batch dims, M, K, N)
SHAPES = [((6, ), 40, 24, 50),   # (batch * heads, L, d) x (.., d, S): split over the threads
          ((1, ), 7, 5, 3),      # one entry: sgemm's own threads
          ((2, 3), 9, 4, 11)]    # (batch, heads, ...) operands


def _operand(rng, batch, rows, cols, transpose):
    x = rng.randn(*batch, rows, cols).astype(np.float32)
    return np.ascontiguousarray(np.swapaxes(x, -1, -2)) if transpose else x


def _assert_close(got, want):
    want = want.detach().numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * np.abs(want).max())


@pytest.mark.parametrize('transpose_a, transpose_b', [(False, False), (False, True), (True, False),
                                                      (True, True)])
@pytest.mark.parametrize('batch, m, k, n', SHAPES)
def test_matches_torch_forward_and_gradients(transpose_a, transpose_b, batch, m, k, n):
    rng = np.random.RandomState(0)
    a = _operand(rng, batch, m, k, transpose_a)
    b = _operand(rng, batch, k, n, transpose_b)
    grad_c = rng.randn(*batch, m, n).astype(np.float32)
    av, bv = jt.array(a), jt.array(b)
    assert batched_matmul_supported(av, bv)
    c = batched_matmul(av, bv, transpose_a, transpose_b)
    ga, gb = jt.grad((c * jt.array(grad_c)).sum(), [av, bv])

    at = torch.from_numpy(a).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    ct = torch.matmul(at.transpose(-1, -2) if transpose_a else at,
                      bt.transpose(-1, -2) if transpose_b else bt)
    ct.backward(torch.from_numpy(grad_c))
    _assert_close(c.numpy(), ct)
    _assert_close(ga.numpy(), at.grad)
    _assert_close(gb.numpy(), bt.grad)


def test_gradient_wrt_one_operand():
    """A gradient wrt one operand only (the other stop_grad, as a constant key would be)."""
    rng = np.random.RandomState(1)
    a, b = rng.randn(2, 3, 4).astype(np.float32), rng.randn(2, 5, 4).astype(np.float32)
    av, bv = jt.array(a), jt.array(b).stop_grad()
    ga = jt.grad(batched_matmul(av, bv, transpose_b=True).sum(), av)
    np.testing.assert_allclose(ga.numpy(), np.broadcast_to(b.sum(1, keepdims=True), a.shape),
                               rtol=1e-5)


def test_float64_falls_back_to_jittor_matmul():
    rng = np.random.RandomState(2)
    a, b = rng.randn(3, 4, 2), rng.randn(3, 5, 2)
    with jt.flag_scope(auto_convert_64_to_32=0):
        av, bv = jt.array(a), jt.array(b)
        assert not batched_matmul_supported(av, bv)
        c = batched_matmul(av, bv, transpose_b=True)
        assert str(c.dtype) == 'float64'
        np.testing.assert_allclose(c.numpy(), a @ np.swapaxes(b, 1, 2), rtol=1e-12)


def test_bad_shapes_name_both_operands():
    with pytest.raises(InputError, match=r'inner dimensions differ: \(2, 3, 4\) @ \(2, 5, 4\)'):
        batched_matmul(jt.zeros((2, 3, 4)), jt.zeros((2, 5, 4)))
    with pytest.raises(InputError, match=r'same batch dimensions.*\(2, 3, 4\) and \(3, 4, 5\)'):
        batched_matmul(jt.zeros((2, 3, 4)), jt.zeros((3, 4, 5)))
