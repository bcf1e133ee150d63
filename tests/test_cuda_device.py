"""GPU checks: Jittor on CUDA, the ops' CUDA kernels and the bridge's device-to-device copies.

Every test is skipped unless torch sees a GPU and Jittor runs on CUDA (``runtime.cuda_active``: a
local nvcc). ``tools/device_check.sh`` runs this file on a GPU machine from a copy of the repo and sets
``JTMM_REQUIRE_CUDA=1``, which turns "Jittor is not on CUDA" into an error instead of a skip.

The GPU machine has no mmcv, mmdet or mmengine. Where mmdet is missing, the package's ``__init__``
(which registers the models into mmdet) is bypassed and only what these checks need is loaded:
``jt_mm_plugins.runtime``, ``.ops`` and ``.bridge.tensors`` / ``.bridge.function``. References are
Jittor's CPU path of the same op (``jt.flag_scope(use_cuda=0)``), torchvision's CUDA ops and torch.

Tolerances are the project's: outputs 1e-4 max abs, gradients 1e-3 relative
(``max|a - b| / max|ref|``); NMS results are compared exactly, on inputs whose float64 IoUs are
asserted to lie at least ``IOU_MARGIN`` from the threshold (so float32 decides every suppression).
"""
import os
import sys
import types

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bypass_package_init_without_mmdet() -> None:
    try:
        import mmdet.registry  # noqa: F401
        return
    except ImportError:
        pass
    for name in ('jt_mm_plugins', 'jt_mm_plugins.bridge'):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(REPO, *name.split('.'))]
            sys.modules[name] = package


_bypass_package_init_without_mmdet()

from jt_mm_plugins import runtime  # noqa: E402
from jt_mm_plugins.bridge.function import call_jittor  # noqa: E402
from jt_mm_plugins.bridge import tensors  # noqa: E402
from jt_mm_plugins.ops import batched_nms, bbox_overlaps, nms, roi_align  # noqa: E402
from jt_mm_plugins.runtime import jt  # noqa: E402

CUDA = torch.cuda.is_available() and runtime.cuda_active
if os.environ.get('JTMM_REQUIRE_CUDA') == '1' and not CUDA:
    raise RuntimeError(f'JTMM_REQUIRE_CUDA=1 but Jittor is not on CUDA: torch.cuda.is_available()='
                       f'{torch.cuda.is_available()}, jt.has_cuda={jt.has_cuda}, '
                       f'nvcc_path={os.environ.get("nvcc_path")!r}; {runtime.describe()}')
pytestmark = pytest.mark.skipif(not CUDA, reason='needs an NVIDIA GPU and Jittor on CUDA (nvcc); '
                                'see tools/device_check.sh')

OUTPUT_ATOL = 1e-4
GRAD_RTOL = 1e-3
IOU_MARGIN = 1e-5  # float32 IoU rounding is ~1e-7


def on_cpu(fn):
    """``fn()`` with Jittor on the CPU (its CPU kernels), results as numpy."""
    with jt.flag_scope(use_cuda=0):
        return fn()


def assert_close_grad(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    rel = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6) if ref.size else 0.0
    assert rel <= GRAD_RTOL, f'{what}: relative difference {rel:.2e} > {GRAD_RTOL}'


# --- (a) Jittor itself on CUDA ---------------------------------------------------------------------

def test_jittor_matmul_and_conv_on_cuda_match_cpu_and_torch():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 96), np.float32), rng.standard_normal((96, 48), np.float32)
    x = rng.standard_normal((2, 8, 16, 16), np.float32)
    w = (rng.standard_normal((12, 8, 3, 3)) * 0.2).astype(np.float32)
    g = rng.standard_normal((2, 12, 16, 16), np.float32)

    def run():
        xa, wa = jt.array(x), jt.array(w)
        y = jt.tanh(jt.nn.conv2d(xa, wa, padding=1))  # smooth: no decision float32 could flip
        gx, gw = jt.grad((y * jt.array(g)).sum(), [xa, wa])
        return [v.numpy() for v in (jt.matmul(jt.array(a), jt.array(b)), y, gx, gw)]

    assert jt.flags.use_cuda == 1
    cuda, cpu = run(), on_cpu(run)
    xt = torch.tensor(x, device='cuda', requires_grad=True)
    wt = torch.tensor(w, device='cuda', requires_grad=True)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yt = torch.tanh(torch.nn.functional.conv2d(xt, wt, padding=1))
        (yt * torch.tensor(g, device='cuda')).sum().backward()
    mm = (torch.tensor(a, device='cuda') @ torch.tensor(b, device='cuda')).cpu().numpy()
    torch_ref = [mm, yt.detach().cpu().numpy(), xt.grad.cpu().numpy(), wt.grad.cpu().numpy()]
    for ref_name, ref in (('Jittor CPU', cpu), ('torch CUDA', torch_ref)):
        for name, got, want in zip(('matmul', 'conv'), cuda[:2], ref[:2]):
            err = np.abs(got - want).max()
            assert err <= OUTPUT_ATOL, f'{name} on CUDA vs {ref_name}: max abs {err:.2e}'
        assert_close_grad(cuda[2], ref[2], f'conv input grad vs {ref_name}')
        assert_close_grad(cuda[3], ref[3], f'conv weight grad vs {ref_name}')


# --- (b) the ops' CUDA kernels ---------------------------------------------------------------------

def random_boxes(rng: np.random.Generator, num: int, tied: bool = False):
    """``num`` boxes in a 200 x 200 image and their scores (tied: ten score values)."""
    xy = rng.uniform(0, 200, (num, 2))
    wh = rng.uniform(4, 60, (num, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = (rng.integers(0, 10, num) / 10 if tied else rng.random(num)).astype(np.float32)
    return boxes, scores


def iou_margin(boxes: np.ndarray, threshold: float) -> float:
    """Smallest float64 ``|IoU - threshold|`` over all pairs of distinct boxes."""
    b = boxes.astype(np.float64)
    w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]),
                0, None)
    h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]),
                0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = w * h
    iou = inter / (area[:, None] + area[None, :] - inter)
    np.fill_diagonal(iou, -1.0)
    return float(np.abs(iou - threshold).min())


@pytest.mark.parametrize('num, tied', [(1, False), (63, False), (64, False), (65, True),
                                       (700, True)])
def test_nms_cuda_matches_cpu_exactly(num, tied):
    boxes, scores = random_boxes(np.random.default_rng(num), num, tied)

    def run():
        dets, keep = nms(jt.array(boxes), jt.array(scores), 0.5)
        return dets.numpy(), keep.numpy()

    (dets_cuda, keep_cuda), (dets_cpu, keep_cpu) = run(), on_cpu(run)
    np.testing.assert_array_equal(keep_cuda, keep_cpu)
    np.testing.assert_array_equal(dets_cuda, dets_cpu)
    if num > 100:  # dense enough that some boxes are suppressed
        assert 0 < len(keep_cuda) < num


def test_nms_cuda_matches_torchvision():
    import torchvision
    boxes, scores = random_boxes(np.random.default_rng(3), 300)
    assert len(np.unique(scores)) == len(scores)  # torchvision's order among ties is unstable
    assert iou_margin(boxes, 0.5) >= IOU_MARGIN
    _, keep = nms(jt.array(boxes), jt.array(scores), 0.5)
    ref = torchvision.ops.nms(torch.tensor(boxes, device='cuda'), torch.tensor(scores, device='cuda'),
                              0.5)
    np.testing.assert_array_equal(keep.numpy(), ref.cpu().numpy())
    assert 0 < len(ref) < len(boxes)


def test_batched_nms_cuda_matches_cpu_and_torchvision():
    import torchvision
    rng = np.random.default_rng(4)
    boxes, scores = random_boxes(rng, 400)
    idxs = rng.integers(0, 5, 400).astype(np.int64)
    # The class-offset boxes both implementations suppress on, in float32 as both compute them.
    offset_boxes = boxes + (idxs.astype(np.float32) * (boxes.max() + 1))[:, None]
    assert len(np.unique(scores)) == len(scores) and iou_margin(offset_boxes, 0.5) >= IOU_MARGIN
    ref = torchvision.ops.batched_nms(torch.tensor(boxes, device='cuda'),
                                      torch.tensor(scores, device='cuda'),
                                      torch.tensor(idxs, device='cuda'), 0.5).cpu().numpy()
    # split_thr=100 takes the per-class path (jt.argsort, a where per class).
    for cfg in (dict(iou_threshold=0.5), dict(iou_threshold=0.5, split_thr=100)):

        def run():
            dets, keep = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs), cfg)
            return dets.numpy(), keep.numpy()

        (dets_cuda, keep_cuda), (dets_cpu, keep_cpu) = run(), on_cpu(run)
        np.testing.assert_array_equal(keep_cuda, keep_cpu, err_msg=str(cfg))
        np.testing.assert_array_equal(dets_cuda, dets_cpu, err_msg=str(cfg))
        np.testing.assert_array_equal(keep_cuda, ref, err_msg=str(cfg))


def random_rois(rng: np.random.Generator, num: int, batch: int) -> np.ndarray:
    """RoIs (batch_idx, x1, y1, x2, y2) on an 80 x 64 image, some reaching past its border."""
    xy = rng.uniform(-6, 76, (num, 2))
    wh = rng.uniform(0.5, 40, (num, 2))
    return np.concatenate([rng.integers(0, batch, (num, 1)), xy, xy + wh], axis=1)


@pytest.mark.parametrize('dtype, aligned, sampling_ratio', [('float32', True, 2),
                                                            ('float32', False, 2),
                                                            ('float32', True, 0),
                                                            ('float64', True, 0)])
def test_roi_align_cuda_matches_cpu_and_torchvision(dtype, aligned, sampling_ratio):
    import torchvision
    rng = np.random.default_rng(5)
    feat = rng.standard_normal((2, 4, 16, 20)).astype(dtype)
    rois = random_rois(rng, 24, 2).astype(dtype)
    grad_out = rng.standard_normal((24, 4, 7, 7)).astype(dtype)
    args = dict(output_size=(7, 7), spatial_scale=0.25, sampling_ratio=sampling_ratio,
                aligned=aligned)

    def run():
        feat_v = jt.array(feat)
        out = roi_align(feat_v, jt.array(rois), **args)
        grad = jt.grad((out * jt.array(grad_out)).sum(), feat_v)
        return out.numpy(), grad.numpy()

    with jt.flag_scope(auto_convert_64_to_32=0):
        (out_cuda, grad_cuda), (out_cpu, grad_cpu) = run(), on_cpu(run)
    assert out_cuda.dtype == np.dtype(dtype) and np.abs(out_cuda).max() > 0
    refs = [('Jittor CPU', out_cpu, grad_cpu)]
    if sampling_ratio > 0:  # the adaptive grid is ceil(roi_size / 7): a float32 decision
        feat_t = torch.tensor(feat, device='cuda', requires_grad=True)
        out_t = torchvision.ops.roi_align(feat_t, torch.tensor(rois, device='cuda'), **args)
        (out_t * torch.tensor(grad_out, device='cuda')).sum().backward()
        refs.append(('torchvision CUDA', out_t.detach().cpu().numpy(), feat_t.grad.cpu().numpy()))
    for name, out_ref, grad_ref in refs:
        err = np.abs(out_cuda - out_ref).max()
        assert err <= OUTPUT_ATOL, f'roi_align on CUDA vs {name}: max abs {err:.2e}'
        assert_close_grad(grad_cuda, grad_ref, f'roi_align feature grad vs {name}')


@pytest.mark.parametrize('mode', ['iou', 'iof', 'giou'])
def test_bbox_overlaps_cuda_matches_cpu_and_torchvision(mode):
    import torchvision
    rng = np.random.default_rng(6)
    boxes1, _ = random_boxes(rng, 30)
    boxes2, _ = random_boxes(rng, 40)

    def run():
        return [bbox_overlaps(jt.array(boxes1), jt.array(b2), mode, is_aligned=aligned).numpy()
                for b2, aligned in ((boxes2, False), (boxes2[:30], True))]

    cuda, cpu = run(), on_cpu(run)
    refs = [('Jittor CPU', cpu)]
    torch_fn = {'iou': torchvision.ops.box_iou, 'giou': torchvision.ops.generalized_box_iou}
    if mode in torch_fn:
        b1, b2 = torch.tensor(boxes1, device='cuda'), torch.tensor(boxes2, device='cuda')
        full = torch_fn[mode](b1, b2).cpu().numpy()
        refs.append((f'torchvision {torch_fn[mode].__name__}', [full, np.diag(full[:, :30])]))
    for name, ref in refs:
        for got, want in zip(cuda, ref):
            err = np.abs(got - want).max()
            assert err <= OUTPUT_ATOL, f'bbox_overlaps {mode} on CUDA vs {name}: max abs {err:.2e}'


# --- (c) the bridge's device path ------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16, torch.int64,
                                   torch.int32, torch.uint8, torch.bool])
def test_bridge_round_trip_on_device_is_exact(dtype):
    source = torch.arange(105, device='cuda').reshape(3, 5, 7).to(dtype)
    source = source.transpose(0, 2)  # not contiguous
    var = tensors.torch_to_jittor(source)
    assert str(var.dtype) == tensors.TORCH_TO_JITTOR_DTYPE[dtype]
    np.testing.assert_array_equal(var.numpy(), source.cpu().numpy())
    back = tensors.jittor_to_torch(var, source.device)
    assert back.is_cuda and back.dtype == dtype and back.is_contiguous()
    assert torch.equal(back, source)


def test_bridge_empty_tensor_on_device():
    var = tensors.torch_to_jittor(torch.zeros((0, 4), device='cuda'))
    assert tuple(var.shape) == (0, 4)
    back = tensors.jittor_to_torch(var, torch.device('cuda'))
    assert back.is_cuda and tuple(back.shape) == (0, 4)


def test_jittor_code_copies_are_lazy():
    """Why ``_cuda_torch_to_jittor`` syncs: an unsynced copy reads the tensor when Jittor runs."""
    source = torch.ones(1000, device='cuda')
    lazy = jt.code([1000], 'float32', [], cuda_src=tensors.COPY_FROM_TORCH_CUDA_SRC,
                   data={'src': source.data_ptr()})
    source.fill_(-7)
    assert (lazy.numpy() == -7).all()


def test_bridge_copies_at_the_call():
    source = torch.ones(1000, device='cuda')
    var = tensors.torch_to_jittor(source)
    source.fill_(-7)  # and a temporary, freed at once, for the allocator to hand out again
    var_of_temporary = tensors.torch_to_jittor(torch.full((50, 20), 3.0, device='cuda').t())
    torch.full((1000, ), 5.0, device='cuda')
    assert (var.numpy() == 1).all() and (var_of_temporary.numpy() == 3).all()


def test_bridge_copies_device_to_device_only(monkeypatch):
    from torch.profiler import ProfilerActivity, profile
    source = torch.randn(256, 64, device='cuda')
    var = tensors.torch_to_jittor(source)  # warm: compile the copy kernels outside the trace
    tensors.jittor_to_torch(var, source.device)

    def no_host_copy(*args, **kwargs):
        raise AssertionError('the CUDA path went through host memory')

    for owner, name in ((torch.Tensor, 'cpu'), (torch.Tensor, 'numpy'), (jt, 'array')):
        monkeypatch.setattr(owner, name, no_host_copy)
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        var = tensors.torch_to_jittor(source * 2)
        back = tensors.jittor_to_torch(var * var, source.device)
        torch.cuda.synchronize()
    monkeypatch.undo()
    assert torch.equal(back, (source * 2) * (source * 2))
    names = [event.name for event in trace.events()]
    assert any('DtoD' in n for n in names), f'no device-to-device copy in the trace: {set(names)}'
    host = [n for n in names if 'HtoD' in n or 'DtoH' in n]
    assert not host, f'host copies: {host}'


def test_call_jittor_on_cuda_matches_torch():
    rng = np.random.default_rng(7)
    conv = jt.nn.Conv2d(4, 6, 3, padding=1)
    conv.weight.assign(jt.array((rng.standard_normal((6, 4, 3, 3)) * 0.2).astype(np.float32)))
    conv.bias.assign(jt.array(rng.standard_normal(6).astype(np.float32)))
    x_np = rng.standard_normal((2, 4, 10, 12)).astype(np.float32)
    g_np = rng.standard_normal((2, 6, 10, 12)).astype(np.float32)

    def leaves():
        return [torch.tensor(v, device='cuda', requires_grad=True)
                for v in (x_np, conv.weight.numpy(), conv.bias.numpy())]

    def fn(t):
        pre = conv(t)
        return jt.tanh(pre), pre

    def loss(y, pre):
        # pre.sum() hands the backward an expanded (stride 0) gradient: converted through a
        # temporary contiguous copy.
        return (y * torch.tensor(g_np, device='cuda')).sum() + pre.sum()

    x, w, b = leaves()
    y, pre = call_jittor(fn, (x, ), params=[(conv.weight, w), (conv.bias, b)])
    loss(y, pre).backward()
    xr, wr, br = leaves()
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        pre_r = torch.nn.functional.conv2d(xr, wr, br, padding=1)
        loss(torch.tanh(pre_r), pre_r).backward()
    assert y.is_cuda and all(t.grad.is_cuda for t in (x, w, b))
    err = max((y - torch.tanh(pre_r)).abs().max().item(), (pre - pre_r).abs().max().item())
    assert err <= OUTPUT_ATOL, f'bridged conv outputs: max abs {err:.2e}'
    for name, got, ref in (('input', x, xr), ('weight', w, wr), ('bias', b, br)):
        assert_close_grad(got.grad.cpu().numpy(), ref.grad.cpu().numpy(), f'{name} grad')
