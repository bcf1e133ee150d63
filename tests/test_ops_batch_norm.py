"""jt_mm_plugins.ops.batch_norm_train (fused CPU kernels) against torch's batch norm in float64.

The reference is ``torch.nn.functional.batch_norm`` (training mode) evaluated in float64 on the same
float32 inputs, i.e. the exact answer up to float64 rounding. Tolerances (float32 kernels):
* output: 2e-6 absolute for standardised inputs (|x| ~ 1-10), 5e-5 for a mean of 1000 and std of 10;
* input gradient: 1e-5 relative (max |a - b| / max |b|); weight / bias gradients: 1e-5 relative;
* batch mean / biased variance: 1e-5 relative.
Measured: outputs <= 9e-7 (<= 3e-5 at mean 1000), gradients <= 1e-6 relative.
The BatchNorm2d layer must give the same numbers through the kernels as through its Jittor-op path.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.models.layers import batch_norm as batch_norm_layer
from jt_mm_plugins.ops import batch_norm_train
from jt_mm_plugins.ops.batch_norm import batch_norm_train_supported
from jt_mm_plugins.runtime import jt

OUT_ATOL = 2e-6
GRAD_RTOL = 1e-5
STAT_RTOL = 1e-5

SHAPES = [(2, 8, 5, 7),        # small: one thread
          (2, 16, 64, 64),     # above the parallel threshold
          (4, 6, 10),          # BatchNorm1d-like (N, C, L)
          (5, 3),              # (N, C)
          (1, 4, 1, 3)]        # three values per channel


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def reference(x: np.ndarray, weight, bias, grad_y: np.ndarray, eps: float = 1e-5):
    """torch float64: output, grads (x, weight, bias), batch mean and biased batch variance."""
    xt = torch.from_numpy(x).double().requires_grad_(True)
    wt = None if weight is None else torch.from_numpy(weight).double().requires_grad_(True)
    bt = None if bias is None else torch.from_numpy(bias).double().requires_grad_(True)
    y = torch.nn.functional.batch_norm(xt, None, None, wt, bt, training=True, eps=eps)
    (y * torch.from_numpy(grad_y).double()).sum().backward()
    dims = [0] + list(range(2, x.ndim))
    xd = x.astype(np.float64)
    return (y.detach().numpy(), xt.grad.numpy(), None if wt is None else wt.grad.numpy(),
            None if bt is None else bt.grad.numpy(), xd.mean(axis=tuple(dims)),
            xd.var(axis=tuple(dims)))


def random_case(shape, seed=0, mean=2.0, std=3.0):
    rng = np.random.RandomState(seed)
    x = (rng.randn(*shape) * std + mean).astype(np.float32)
    weight = (rng.rand(shape[1]) + 0.5).astype(np.float32)
    bias = rng.randn(shape[1]).astype(np.float32)
    grad_y = rng.randn(*shape).astype(np.float32)
    return x, weight, bias, grad_y


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('affine', [True, False])
def test_matches_torch_float64(shape, affine):
    x, weight, bias, grad_y = random_case(shape)
    if not affine:
        weight = bias = None
    xj = jt.array(x)
    wj = None if weight is None else jt.array(weight)
    bj = None if bias is None else jt.array(bias)
    y, mean, var = batch_norm_train(xj, wj, bj, 1e-5)
    targets = [xj] + ([wj, bj] if affine else [])
    grads = jt.grad((y * jt.array(grad_y)).sum(), targets)
    y_ref, gx_ref, gw_ref, gb_ref, mean_ref, var_ref = reference(x, weight, bias, grad_y)

    assert y.shape == list(shape)
    assert float(np.abs(y.numpy() - y_ref).max()) <= OUT_ATOL
    assert relative(grads[0].numpy(), gx_ref) <= GRAD_RTOL
    if affine:
        assert relative(grads[1].numpy(), gw_ref) <= GRAD_RTOL
        assert relative(grads[2].numpy(), gb_ref) <= GRAD_RTOL
    assert relative(mean.numpy(), mean_ref) <= STAT_RTOL
    assert relative(var.numpy(), var_ref) <= STAT_RTOL


def test_large_mean_input():
    """Activations far from zero (mean 1000, std 10): still within 5e-5 of the exact output."""
    x, weight, bias, grad_y = random_case((2, 4, 64, 64), mean=1000.0, std=10.0)
    xj = jt.array(x)
    y, _, _ = batch_norm_train(xj, jt.array(weight), jt.array(bias))
    grad_x = jt.grad((y * jt.array(grad_y)).sum(), xj)
    y_ref, gx_ref, *_ = reference(x, weight, bias, grad_y)
    assert float(np.abs(y.numpy() - y_ref).max()) <= 5e-5
    assert relative(grad_x.numpy(), gx_ref) <= 1e-4


def test_frozen_affine_and_no_grad():
    x, weight, bias, grad_y = random_case((2, 8, 6, 6))
    xj = jt.array(x)
    wj, bj = jt.array(weight).stop_grad(), jt.array(bias).stop_grad()
    y, _, _ = batch_norm_train(xj, wj, bj)
    grad_x = jt.grad((y * jt.array(grad_y)).sum(), xj)
    y_ref, gx_ref, *_ = reference(x, weight, bias, grad_y)
    assert relative(grad_x.numpy(), gx_ref) <= GRAD_RTOL
    with jt.no_grad():
        y2, _, _ = batch_norm_train(xj, wj, bj)
    np.testing.assert_array_equal(y2.numpy(), y.numpy())


def test_statistics_are_not_differentiable():
    x, weight, bias, _ = random_case((2, 3, 4, 4))
    xj = jt.array(x)
    _, mean, _ = batch_norm_train(xj, jt.array(weight), jt.array(bias))
    with pytest.raises(NotImplementedError, match='detach'):
        jt.grad(mean.sum(), xj).sync()


def test_bad_inputs_are_named():
    x = jt.array(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match='weight must be float32 of shape \\(3,\\)'):
        batch_norm_train(x, jt.ones((4, )), None)
    with pytest.raises(ValueError, match='bias must be float32'):
        batch_norm_train(x, None, jt.zeros((3, ), dtype='int32'))
    with pytest.raises(ValueError, match=r'\(N, C, ...\)'):
        batch_norm_train(jt.array(np.zeros((3, ), np.float32)), None, None)
    with pytest.raises(ValueError, match='float32 on CPU only'):
        batch_norm_train(jt.zeros((2, 3, 4), dtype='int32'), None, None)
    assert batch_norm_train_supported(x) != bool(jt.flags.use_cuda)


@pytest.mark.parametrize('momentum', [0.1, None])
@pytest.mark.parametrize('shape', [(2, 16, 9, 9), (4, 16, 64, 32)])
def test_layer_same_through_kernels_and_jittor_ops(monkeypatch, momentum, shape):
    """BatchNorm2d gives the same output, gradients and running statistics through the kernels
    as through its Jittor-op formulation (the path CUDA and non-float32 inputs take)."""
    x, weight, bias, grad_y = random_case(shape, seed=3)

    def run(use_kernels: bool):
        monkeypatch.setattr(batch_norm_layer, 'batch_norm_train_supported',
                            lambda v: use_kernels and batch_norm_train_supported(v))
        calls = []
        monkeypatch.setattr(batch_norm_layer, 'batch_norm_train',
                            lambda *a: calls.append(1) or batch_norm_train(*a))
        bn = batch_norm_layer.BatchNorm2d(shape[1], momentum=momentum)
        bn.weight.assign(jt.array(weight))
        bn.bias.assign(jt.array(bias))
        bn.train()
        xj = jt.array(x)
        outs = []
        for _ in range(2):  # two steps: the running averages compound
            y = bn(xj)
            outs.append(y.numpy())
        grads = jt.grad((y * jt.array(grad_y)).sum(), [xj, bn.weight, bn.bias])
        assert len(calls) == (2 if use_kernels else 0)
        bn.eval()  # eval: running statistics, no kernel
        y_eval = bn(xj).numpy()
        assert len(calls) == (2 if use_kernels else 0)
        return (outs, [g.numpy() for g in grads], bn.running_mean.numpy(), bn.running_var.numpy(),
                int(bn.num_batches_tracked.numpy()[0]), y_eval)

    fast, ops = run(True), run(False)
    for a, b in zip(fast[0], ops[0]):  # float32 rounding of two formulas: ~1e-6 relative
        assert relative(a, b) <= 1e-5
    for a, b in zip(fast[1], ops[1]):
        assert relative(a, b) <= 1e-4
    np.testing.assert_allclose(fast[2], ops[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast[3], ops[3], rtol=1e-5, atol=1e-6)
    assert fast[4] == ops[4] == 2
    assert relative(fast[5], ops[5]) <= 1e-5
