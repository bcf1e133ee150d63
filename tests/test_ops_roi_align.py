"""jt_mm_plugins.ops.roi_align against mmcv.ops.roi_align (CPU kernel), forward and backward.

Tolerances (float32): forward 1e-5 absolute, gradient of the feature map 1e-4 absolute. The
backward of mmcv comes from torch autograd on the same upstream gradient. The CUDA kernels are
compared with the CPU kernels when Jittor runs on a GPU (skipped otherwise) and, everywhere, run
through test_ops_nms.emulate_cuda_op (a CPU emulation of CUDA) and compared with the CPU kernels.
"""
import importlib
import os

import numpy as np
import pytest
import torch
from mmcv.ops import roi_align as mmcv_roi_align

from jt_mm_plugins.ops import RoIAlign, roi_align
from jt_mm_plugins.runtime import jt
from test_ops_nms import emulate_cuda_op

# The package exports the function roi_align, which hides the submodule of the same name.
roi_align_module = importlib.import_module('jt_mm_plugins.ops.roi_align')

FORWARD_ATOL = 1e-5
GRAD_ATOL = 1e-4

# A 2-image batch of 128x96 images and an FPN-like pyramid: (stride, feature height, width).
IMAGE_H, IMAGE_W = 96, 128
PYRAMID = [(4, 24, 32), (8, 12, 16), (16, 6, 8), (32, 3, 4)]

needs_cuda = pytest.mark.skipif(
    not (jt.has_cuda and jt.flags.use_cuda),
    reason='Jittor is not running on CUDA here (no GPU): CUDA kernels are compared with CPU on a '
    'GPU machine only')


def random_rois(rng: np.random.Generator, num: int, batch: int = 2) -> np.ndarray:
    """RoIs in image coordinates: normal ones, zero-size ones, tiny ones and out-of-image ones."""
    x1 = rng.uniform(-10, IMAGE_W, num)
    y1 = rng.uniform(-10, IMAGE_H, num)
    w = rng.uniform(0, 80, num)
    h = rng.uniform(0, 60, num)
    w[::6] = 0  # zero width
    h[1::6] = 0  # zero height
    w[2::6], h[2::6] = 0.3, 0.2  # smaller than a feature pixel
    x1[3::6], y1[3::6] = IMAGE_W + 5, IMAGE_H - 3  # starts outside the image
    x1[4::6], y1[4::6] = -60, -50  # mostly outside, on the other side
    batch_idx = rng.integers(0, batch, num)
    return np.stack([batch_idx, x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def mmcv_forward_backward(feat, rois, grad_out, output_size, spatial_scale, sampling_ratio,
                          aligned):
    t_feat = torch.from_numpy(feat).requires_grad_()
    # mmcv's autograd Function takes positional arguments only.
    out = mmcv_roi_align(t_feat, torch.from_numpy(rois), output_size, spatial_scale,
                         sampling_ratio, 'avg', aligned)
    out.backward(torch.from_numpy(grad_out))
    return out.detach().numpy(), t_feat.grad.numpy()


def jittor_forward_backward(feat, rois, grad_out, **kwargs):
    j_feat = jt.array(feat)
    out = roi_align(j_feat, jt.array(rois), **kwargs)
    grad = jt.grad((out * jt.array(grad_out)).sum(), j_feat)
    return out.numpy(), grad.numpy()


@pytest.mark.parametrize('level', range(len(PYRAMID)))
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_matches_mmcv_on_every_level(level, aligned, sampling_ratio):
    stride, height, width = PYRAMID[level]
    rng = np.random.default_rng(level * 10 + sampling_ratio + int(aligned))
    feat = rng.normal(size=(2, 3, height, width)).astype(np.float32)
    rois = random_rois(rng, 24)
    kwargs = dict(output_size=(7, 7), spatial_scale=1.0 / stride, sampling_ratio=sampling_ratio,
                  aligned=aligned)
    grad_out = rng.normal(size=(24, 3, 7, 7)).astype(np.float32)
    ref_out, ref_grad = mmcv_forward_backward(feat, rois, grad_out, **kwargs)
    out, grad = jittor_forward_backward(feat, rois, grad_out, **kwargs)
    assert out.shape == ref_out.shape == (24, 3, 7, 7)
    np.testing.assert_allclose(out, ref_out, atol=FORWARD_ATOL, rtol=0)
    np.testing.assert_allclose(grad, ref_grad, atol=GRAD_ATOL, rtol=0)
    assert np.abs(ref_grad).sum() > 0  # the comparison is not vacuous


@pytest.mark.parametrize('output_size', [1, (3, 5), 14])
def test_output_sizes_match_mmcv(output_size):
    rng = np.random.default_rng(3)
    feat = rng.normal(size=(2, 4, 24, 32)).astype(np.float32)
    rois = random_rois(rng, 10)
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    grad_out = rng.normal(size=(10, 4) + size).astype(np.float32)
    kwargs = dict(output_size=output_size, spatial_scale=0.25, sampling_ratio=0, aligned=True)
    ref_out, ref_grad = mmcv_forward_backward(feat, rois, grad_out, **kwargs)
    out, grad = jittor_forward_backward(feat, rois, grad_out, **kwargs)
    np.testing.assert_allclose(out, ref_out, atol=FORWARD_ATOL, rtol=0)
    np.testing.assert_allclose(grad, ref_grad, atol=GRAD_ATOL, rtol=0)


def test_integer_bin_sizes_take_exact_sample_counts():
    """A 28-pixel RoI into 7 bins has exactly 4 samples per side (ceil(28/7) must not become 5)."""
    rng = np.random.default_rng(4)
    feat = rng.normal(size=(1, 2, 40, 40)).astype(np.float32)
    rois = np.array([[0, 2, 3, 30, 31], [0, 0, 0, 14, 21], [0, 5, 5, 12, 12]], np.float32)
    grad_out = rng.normal(size=(3, 2, 7, 7)).astype(np.float32)
    for aligned in (True, False):
        kwargs = dict(output_size=7, spatial_scale=1.0, sampling_ratio=0, aligned=aligned)
        ref_out, ref_grad = mmcv_forward_backward(feat, rois, grad_out, **kwargs)
        out, grad = jittor_forward_backward(feat, rois, grad_out, **kwargs)
        np.testing.assert_allclose(out, ref_out, atol=FORWARD_ATOL, rtol=0)
        np.testing.assert_allclose(grad, ref_grad, atol=GRAD_ATOL, rtol=0)


def test_float64_matches_mmcv():
    rng = np.random.default_rng(5)
    feat = rng.normal(size=(2, 3, 24, 32))
    # Jittor turns float64 arrays into float32 on entry: build the Vars with .float64() from values
    # that float32 holds exactly, so both frameworks see the same numbers.
    feat = feat.astype(np.float32).astype(np.float64)
    rois = random_rois(rng, 10).astype(np.float64)
    grad_out = rng.normal(size=(10, 3, 7, 7)).astype(np.float32).astype(np.float64)
    ref_out, ref_grad = mmcv_forward_backward(feat, rois, grad_out, 7, 0.25, 0, True)
    j_feat = jt.array(feat).float64()
    out = roi_align(j_feat, jt.array(rois).float64(), 7, 0.25, 0)
    grad = jt.grad((out * jt.array(grad_out).float64()).sum(), j_feat)
    assert str(out.dtype) == 'float64'
    np.testing.assert_allclose(out.numpy(), ref_out, atol=1e-12, rtol=0)
    np.testing.assert_allclose(grad.numpy(), ref_grad, atol=1e-12, rtol=0)


def test_one_roi_covering_the_map_is_average_pooling():
    feat = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    rois = np.array([[0, 0, 0, 4, 4]], np.float32)
    out = roi_align(jt.array(feat), jt.array(rois), 2, aligned=True).numpy()
    # aligned, 2x2 bins of 2x2 pixels, sampling_ratio 0 -> 2x2 samples at pixel centres.
    expected = feat.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4).mean(1).reshape(2, 2)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)


def test_no_rois():
    feat = jt.array(np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32))
    out = roi_align(feat, jt.zeros((0, 5)), (7, 7), 0.25)
    assert tuple(out.shape) == (0, 3, 7, 7)
    grad = jt.grad(out.sum() + feat.sum() * 0, feat)
    assert tuple(grad.shape) == (2, 3, 8, 8) and float(np.abs(grad.numpy()).max()) == 0


def _compiled_roi_align_kernels() -> set:
    """Names of the compiled RoIAlign kernel sources in Jittor's cache."""
    jit_dir = os.path.join(jt.flags.cache_path, 'jit')
    names = set()
    for name in os.listdir(jit_dir):
        if name.startswith('code__') and name.endswith('_op.cc'):
            with open(os.path.join(jit_dir, name), errors='replace') as f:
                if 'RoiGeometry' in f.read():
                    names.add(name)
    return names


def test_one_kernel_serves_every_scale():
    """Scalars travel in data={...}: new scales / sampling ratios / modes compile nothing new."""
    rng = np.random.default_rng(8)
    feat = jt.array(rng.normal(size=(2, 3, 12, 16)).astype(np.float32))
    rois = jt.array(random_rois(rng, 6))

    def forward_backward(scale, sampling_ratio, aligned):
        out = roi_align(feat, rois, 7, scale, sampling_ratio, aligned=aligned)
        jt.grad(out.sum(), feat).sync()

    forward_backward(1 / 8, 0, True)
    before = _compiled_roi_align_kernels()
    assert before, 'the RoIAlign kernels were not found in the Jittor cache'
    for args in ((1 / 4, 2, False), (1 / 16, 0, True), (1 / 32, 3, True), (0.3, 0, False)):
        forward_backward(*args)
    assert _compiled_roi_align_kernels() == before


def test_module_and_errors():
    layer = RoIAlign(output_size=7, spatial_scale=0.25, sampling_ratio=0)
    assert 'output_size=(7, 7)' in repr(layer)
    rng = np.random.default_rng(9)
    feat = rng.normal(size=(2, 3, 24, 32)).astype(np.float32)
    rois = random_rois(rng, 5)
    out = layer(jt.array(feat), jt.array(rois)).numpy()
    ref = mmcv_roi_align(torch.from_numpy(feat), torch.from_numpy(rois), 7, 0.25, 0, 'avg', True)
    np.testing.assert_allclose(out, ref.numpy(), atol=FORWARD_ATOL, rtol=0)

    with pytest.raises(ValueError, match='batch indices'):
        roi_align(jt.array(feat), jt.array(np.array([[2, 0, 0, 5, 5]], np.float32)), 7)
    with pytest.raises(ValueError, match=r'\(K, 5\)'):
        roi_align(jt.array(feat), jt.zeros((3, 4)), 7)
    with pytest.raises(ValueError, match='pool_mode'):
        roi_align(jt.array(feat), jt.array(rois), 7, pool_mode='max')
    with pytest.raises(ValueError, match='output_size'):
        roi_align(jt.array(feat), jt.array(rois), 0)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_emulated_cuda_matches_cpu(aligned, sampling_ratio):
    rng = np.random.default_rng(31 + sampling_ratio + int(aligned))
    for stride, height, width in PYRAMID[::3]:
        feat = rng.normal(size=(2, 3, height, width)).astype(np.float32)
        rois = random_rois(rng, 12)
        grad_out = rng.normal(size=(12, 3, 7, 7)).astype(np.float32)
        data = dict(spatial_scale=1.0 / stride, sampling_ratio=float(sampling_ratio),
                    aligned=float(aligned))
        out = np.zeros((12, 3, 7, 7), np.float32)
        emulate_cuda_op(roi_align_module._CUDA_HEADER, roi_align_module._FORWARD_CUDA_SRC,
                        [feat, rois], [out], data)
        grad = np.full(feat.shape, 7.0, np.float32)  # the kernel must zero it first
        emulate_cuda_op(roi_align_module._CUDA_HEADER, roi_align_module._BACKWARD_CUDA_SRC,
                        [rois, grad_out], [grad], data)
        out_cpu, grad_cpu = jittor_forward_backward(feat, rois, grad_out, output_size=7,
                                                    spatial_scale=1.0 / stride,
                                                    sampling_ratio=sampling_ratio, aligned=aligned)
        np.testing.assert_allclose(out, out_cpu, atol=FORWARD_ATOL, rtol=0)
        np.testing.assert_allclose(grad, grad_cpu, atol=GRAD_ATOL, rtol=0)
        assert np.abs(grad_cpu).sum() > 0


@needs_cuda
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_cuda_matches_cpu(aligned, sampling_ratio):
    rng = np.random.default_rng(21)
    for stride, height, width in PYRAMID:
        feat = rng.normal(size=(2, 8, height, width)).astype(np.float32)
        rois = random_rois(rng, 64)
        grad_out = rng.normal(size=(64, 8, 7, 7)).astype(np.float32)
        kwargs = dict(output_size=7, spatial_scale=1.0 / stride, sampling_ratio=sampling_ratio,
                      aligned=aligned)
        out_cuda, grad_cuda = jittor_forward_backward(feat, rois, grad_out, **kwargs)
        with jt.flag_scope(use_cuda=0):
            out_cpu, grad_cpu = jittor_forward_backward(feat, rois, grad_out, **kwargs)
        np.testing.assert_allclose(out_cuda, out_cpu, atol=FORWARD_ATOL, rtol=0)
        np.testing.assert_allclose(grad_cuda, grad_cpu, atol=GRAD_ATOL, rtol=0)
