"""jt_mm_plugins.ops.nms / batched_nms against mmcv.ops (CPU kernels).

Kept indices must be identical (same order) and dets exactly equal (they are gathered input values).

Equal scores: mmcv orders them with torch's *unstable* sort (x86-simd-sort on AVX2/AVX-512 CPUs, a
bitonic sort on CUDA), so its tie order is an accident of the machine. Jittor's ops break ties by
input order (a stable sort); with tied scores they are compared with a NumPy transcription of mmcv's
CPU algorithm using that stable order, and with mmcv itself on distinct scores. The CUDA kernels are
compared with the CPU kernels when Jittor runs on a GPU; without one, the CUDA sources still run
here through a CPU emulation of CUDA (``emulate_cuda_op``, also used by test_ops_roi_align.py).
"""
import ctypes
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import torch
from mmcv.ops import batched_nms as mmcv_batched_nms
from mmcv.ops import nms as mmcv_nms

from jt_mm_plugins.ops import batched_nms, nms
from jt_mm_plugins.ops.nms import _keep_flags, descending_order
from jt_mm_plugins.runtime import jt

# The package exports the function nms, which hides the submodule of the same name.
nms_module = importlib.import_module('jt_mm_plugins.ops.nms')

needs_cuda = pytest.mark.skipif(
    not (jt.has_cuda and jt.flags.use_cuda),
    reason='Jittor is not running on CUDA here (no GPU): CUDA kernels are compared with CPU on a '
    'GPU machine only')


# --- CUDA emulation --------------------------------------------------------------------------
# Runs the cuda_header / cuda_src of a jt.code op on the CPU, expanded the way Jittor expands it
# (@alias -> #defines, inN_p / inN_shapeK / data[...]), with every CUDA thread of a block a
# std::thread, __syncthreads a barrier and __shared__ a block-wide static; blocks run one after
# another. It checks indexing, tiling, synchronisation and atomics, not nvcc's fast-math rounding.

_EMULATION_PRELUDE = r'''
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
using std::ceil; using std::isnan; using std::max; using std::min;
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
std::barrier<>* block_barrier = nullptr;
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
std::mutex atomic_mutex;
template <typename T> T atomicAdd(T* p, T v) {
    std::lock_guard<std::mutex> lock(atomic_mutex);
    T old = *p; *p += v; return old;
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline int cudaMemsetAsync(void* p, int v, size_t n) { std::memset(p, v, n); return 0; }
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
template <typename F> void launch(dim3 grid, dim3 block, F&& body) {
    gridDim = grid; blockDim = block;
    const unsigned threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
    for (unsigned bx = 0; bx < grid.x; bx++) {
        std::barrier<> barrier(threads);
        block_barrier = &barrier;
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; t++) pool.emplace_back([&, t] {
            blockIdx = dim3(bx, by, bz);
            threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
            body();
            barrier.arrive_and_drop();
        });
        for (auto& th : pool) th.join();
    }
}
typedef float float32; typedef double float64; typedef int int32; typedef long long int64;
#define index_t int32
struct Var { long long size; };
'''

_emulation_dir = None


def _replace_launches(src: str) -> str:
    """kernel<<<grid, block>>>(args) -> launch(dim3(grid), dim3(block), [&] { kernel(args); })"""
    out, pos = '', 0
    pattern = re.compile(r'([\w:]+(?:<\w+>)?)<<<(.*?)>>>\(', re.S)
    while (m := pattern.search(src, pos)):
        depth, end = 1, m.end()
        while depth:
            depth += {'(': 1, ')': -1}.get(src[end], 0)
            end += 1
        grid, block = m.group(2).rsplit(',', 1)
        out += (src[pos:m.start()] + f'launch(dim3({grid}), dim3({block}), [&] {{ '
                f'{m.group(1)}({src[m.end():end - 1]}); }})')
        pos = end
    return out + src[pos:]


def emulate_cuda_op(header: str, src: str, inputs, outputs, data=None) -> None:
    """Run a jt.code CUDA source on NumPy arrays (outputs are filled in place)."""
    global _emulation_dir
    if shutil.which('g++') is None:
        pytest.skip('g++ is needed to emulate the CUDA sources')
    data = dict(data or {})
    arrays = ([('in', i, a) for i, a in enumerate(inputs)] +
              [('out', i, a) for i, a in enumerate(outputs)])
    ctype = {'float32': 'float32', 'float64': 'float64', 'int32': 'int32', 'int64': 'int64',
             'bool': 'bool'}
    lines, params, body = [_EMULATION_PRELUDE], [], []
    for kind, i, a in arrays:
        name, dt = f'{kind}{i}', ctype[str(a.dtype)]
        lines += [f'#define {name}_type {dt}', f'#define {name}_dim {a.ndim}']
        params.append(f'void* {name}_raw, const long long* {name}_shapes, long long {name}_bytes')
        body.append(f'Var {name}_var{{{name}_bytes}}; Var* {name} = &{name}_var; '
                    f'{dt}* {name}_p = ({dt}*){name}_raw;')
        body += [f'index_t {name}_shape{d} = (index_t){name}_shapes[{d}];' for d in range(a.ndim)]
    ndims = {f'{kind}{i}': a.ndim for kind, i, a in arrays}

    def alias(m):
        alias_name, target = m.group(1).strip(), m.group(2).strip()
        defs = [f'#define {alias_name}{suffix} {target}{suffix}' for suffix in ('', '_p', '_type')]
        defs += [f'#define {alias_name}_shape{d} {target}_shape{d}' for d in range(ndims[target])]
        return '\n' + '\n'.join(defs) + '\n'

    lines.append(header)
    lines.append('extern "C" void run(const double* data_values, ' + ', '.join(params) + ') {')
    lines.append('std::unordered_map<std::string, double> data;')
    lines += [f'data["{k}"] = data_values[{j}];' for j, k in enumerate(sorted(data))]
    lines += body
    lines.append(_replace_launches(re.sub(r'@alias\(([^,]+),([^)]+)\)', alias, src)))
    lines.append('}')
    code = '\n'.join(lines)
    if _emulation_dir is None:
        _emulation_dir = tempfile.mkdtemp(prefix='jt_mm_cuda_emulation_')
    stem = os.path.join(_emulation_dir, hashlib.sha1(code.encode()).hexdigest()[:16])
    if not os.path.exists(stem + '.so'):
        with open(stem + '.cc', 'w') as f:
            f.write(code)
        result = subprocess.run(['g++', '-std=c++20', '-O1', '-shared', '-fPIC', '-pthread',
                                 stem + '.cc', '-o', stem + '.so'], capture_output=True, text=True)
        assert result.returncode == 0, ('emulated CUDA source does not compile:\n' +
                                        result.stderr[-4000:])
    lib = ctypes.CDLL(stem + '.so')
    values = np.array([data[k] for k in sorted(data)] or [0.0], np.float64)
    args, shapes = [values.ctypes.data_as(ctypes.c_void_p)], []
    for _, _, a in arrays:
        assert a.flags.c_contiguous
        shapes.append(np.array(a.shape or (1, ), np.int64))
        args += [ctypes.c_void_p(a.ctypes.data), shapes[-1].ctypes.data_as(ctypes.c_void_p),
                 ctypes.c_longlong(a.nbytes)]
    lib.run(*args)


def random_boxes(rng: np.random.Generator, num: int, size: float = 200.0,
                 tied_scores: bool = False):
    """Clustered boxes (so that NMS suppresses a lot), some degenerate / outside the image."""
    centers = rng.uniform(0, size, size=(max(num // 8, 1), 2))
    ctr = centers[rng.integers(0, len(centers), num)] + rng.normal(0, 4, size=(num, 2))
    wh = rng.uniform(2, 40, size=(num, 2))
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1)
    boxes[::17, 2] = boxes[::17, 0]  # zero width
    boxes[::23, :2] -= size  # partly out of the image (negative coordinates)
    boxes[::29, 2:] = boxes[::29, :2]  # a point
    if tied_scores:
        scores = rng.integers(0, 10, num) / 10.0  # many exact ties
    else:
        scores = rng.uniform(0, 1, num)
    return boxes.astype(np.float32), scores.astype(np.float32)


def reference_nms(boxes, scores, iou_threshold, offset=0, score_threshold=0, max_num=-1):
    """mmcv's CPU NMS in NumPy float32, with equal scores kept in input order."""
    candidates = np.nonzero(scores > score_threshold)[0] if score_threshold > 0 else np.arange(
        len(scores))
    b, order = boxes[candidates], np.argsort(-scores[candidates], kind='stable')
    offset = np.float32(offset)
    areas = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    alive = np.ones(len(order), bool)
    for pos, i in enumerate(order):
        if not alive[pos]:
            continue
        rest = order[pos + 1:]
        w = np.maximum(np.float32(0),
                       np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]) + offset)
        h = np.maximum(np.float32(0),
                       np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]) + offset)
        inter = w * h
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = inter / (areas[i] + areas[rest] - inter)
        alive[pos + 1:] &= ~(iou > np.float32(iou_threshold))
    keep = candidates[order[alive]]
    return keep[:max_num] if max_num > 0 else keep


def run_both(boxes, scores, **kwargs):
    ref_dets, ref_keep = mmcv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), **kwargs)
    dets, keep = nms(jt.array(boxes), jt.array(scores), **kwargs)
    return (dets.numpy(), keep.numpy()), (ref_dets.numpy(), ref_keep.numpy())


def assert_same(got, ref):
    (dets, keep), (ref_dets, ref_keep) = got, ref
    np.testing.assert_array_equal(keep, ref_keep)
    np.testing.assert_array_equal(dets, ref_dets)


@pytest.mark.parametrize('num', [1, 2, 50, 3000])
@pytest.mark.parametrize('iou_threshold', [0.3, 0.7])
def test_nms_matches_mmcv(num, iou_threshold):
    boxes, scores = random_boxes(np.random.default_rng(num), num)
    got, ref = run_both(boxes, scores, iou_threshold=iou_threshold)
    assert_same(got, ref)
    if num >= 50:
        assert 0 < len(ref[1]) < num  # the case actually suppresses something


@pytest.mark.parametrize('kwargs', [
    dict(iou_threshold=0.5),
    dict(iou_threshold=0.3, score_threshold=0.25, max_num=30),
    dict(iou_threshold=0.5, offset=1),
])
def test_nms_ties_keep_input_order(kwargs):
    boxes, scores = random_boxes(np.random.default_rng(7), 400, tied_scores=True)
    dets, keep = nms(jt.array(boxes), jt.array(scores), **kwargs)
    expected = reference_nms(boxes, scores, **kwargs)
    np.testing.assert_array_equal(keep.numpy(), expected)
    np.testing.assert_array_equal(dets.numpy()[:, :4], boxes[expected])
    # Identical boxes with identical scores: the first one wins.
    same = np.tile(np.array([[0, 0, 10, 10]], np.float32), (4, 1))
    _, keep = nms(jt.array(same), jt.array(np.full(4, 0.5, np.float32)), 0.5)
    assert keep.numpy().tolist() == [0]


def test_reference_nms_is_mmcv_on_distinct_scores():
    """The NumPy reference used for ties is itself checked against mmcv."""
    boxes, scores = random_boxes(np.random.default_rng(8), 500)
    for kwargs in (dict(iou_threshold=0.5), dict(iou_threshold=0.4, offset=1, max_num=20)):
        _, ref_keep = mmcv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), **kwargs)
        np.testing.assert_array_equal(reference_nms(boxes, scores, **kwargs), ref_keep.numpy())


def test_nms_degenerate_boxes():
    # Zero-area boxes have a zero union with each other: they never suppress anything.
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0], [0, 0, 10, 10], [1, 1, 9, 9],
                      [-30, -30, -10, -10], [-29, -29, -10, -10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], np.float32)
    for thr in (0.0, 0.5):
        got, ref = run_both(boxes, scores, iou_threshold=thr)
        assert_same(got, ref)


@pytest.mark.parametrize('kwargs', [
    dict(iou_threshold=0.5, score_threshold=0.3),
    dict(iou_threshold=0.5, max_num=10),
    dict(iou_threshold=0.5, score_threshold=0.4, max_num=7),
    dict(iou_threshold=0.5, offset=1),
    dict(iou_threshold=0.5, score_threshold=2.0),  # nothing survives the score threshold
])
def test_nms_options_match_mmcv(kwargs):
    boxes, scores = random_boxes(np.random.default_rng(3), 300)
    got, ref = run_both(boxes, scores, **kwargs)
    assert_same(got, ref)


def test_nms_empty_and_dtypes():
    dets, keep = nms(jt.zeros((0, 4)), jt.zeros((0, )), 0.5)
    assert tuple(dets.shape) == (0, 5) and tuple(keep.shape) == (0, )
    assert str(keep.dtype) == 'int64'
    _, keep = nms(jt.array(np.array([[0, 0, 1, 1]], np.float32)), jt.array([0.5]), 0.5)
    assert str(keep.dtype) == 'int64' and keep.numpy().tolist() == [0]


def test_nms_bad_inputs_fail_loudly():
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        nms(jt.zeros((3, 5)), jt.zeros((3, )), 0.5)
    with pytest.raises(ValueError, match='scores'):
        nms(jt.zeros((3, 4)), jt.zeros((2, )), 0.5)
    with pytest.raises(ValueError, match='offset'):
        nms(jt.zeros((3, 4)), jt.zeros((3, )), 0.5, offset=2)


def run_batched_both(boxes, scores, idxs, nms_cfg, class_agnostic=False):
    ref_dets, ref_keep = mmcv_batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs),
        None if nms_cfg is None else dict(nms_cfg), class_agnostic)
    dets, keep = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs),
                             None if nms_cfg is None else dict(nms_cfg), class_agnostic)
    return (dets.numpy(), keep.numpy()), (ref_dets.numpy(), ref_keep.numpy())


@pytest.mark.parametrize('nms_cfg', [
    dict(type='nms', iou_threshold=0.5),
    dict(type='nms', iou_threshold=0.5, max_num=40),
    dict(type='nms', iou_threshold=0.6, split_thr=100),  # per-class loop
    dict(type='nms', iou_threshold=0.6, split_thr=100, max_num=40),
    dict(type='nms', iou_threshold=0.6, class_agnostic=True),
    dict(iou_threshold=0.4, score_threshold=0.2),  # type defaults to 'nms'
    None,  # no NMS: sort by score only
])
def test_batched_nms_matches_mmcv(nms_cfg):
    rng = np.random.default_rng(11)
    boxes, scores = random_boxes(rng, 600)
    idxs = rng.integers(0, 5, 600).astype(np.int64)
    got, ref = run_batched_both(boxes, scores, idxs, nms_cfg)
    assert_same(got, ref)


def reference_batched_nms(boxes, scores, idxs, iou_threshold, split_thr=10000, max_num=-1):
    """mmcv's batched_nms in NumPy float32 with a stable tie order (class-aware only)."""
    shifted = boxes + (idxs.astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    if len(boxes) < split_thr:
        return reference_nms(shifted, scores, iou_threshold, max_num=max_num)
    kept = [np.nonzero(idxs == c)[0][reference_nms(shifted[idxs == c], scores[idxs == c],
                                                     iou_threshold)] for c in np.unique(idxs)]
    keep = np.sort(np.concatenate(kept))
    keep = keep[np.argsort(-scores[keep], kind='stable')]
    return keep[:max_num] if max_num > 0 else keep


@pytest.mark.parametrize('split_thr', [10000, 100])
def test_batched_nms_ties_keep_input_order(split_thr):
    rng = np.random.default_rng(12)
    boxes, scores = random_boxes(rng, 600, tied_scores=True)
    idxs = rng.integers(0, 5, 600).astype(np.int64)
    cfg = dict(type='nms', iou_threshold=0.5, split_thr=split_thr, max_num=100)
    dets, keep = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs), cfg)
    expected = reference_batched_nms(boxes, scores, idxs, 0.5, split_thr, 100)
    np.testing.assert_array_equal(keep.numpy(), expected)
    expected_dets = np.concatenate([boxes, scores[:, None]], 1)[expected]
    np.testing.assert_array_equal(dets.numpy(), expected_dets)
    # No NMS: a stable sort by score.
    _, keep = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs), None)
    np.testing.assert_array_equal(keep.numpy(), np.argsort(-scores, kind='stable'))


def test_batched_nms_class_agnostic_argument():
    rng = np.random.default_rng(5)
    boxes, scores = random_boxes(rng, 200)
    idxs = rng.integers(0, 3, 200).astype(np.int64)
    got, ref = run_batched_both(boxes, scores, idxs, dict(iou_threshold=0.5), class_agnostic=True)
    assert_same(got, ref)


def test_batched_nms_empty_and_errors():
    dets, keep = batched_nms(jt.zeros((0, 4)), jt.zeros((0, )), jt.zeros((0, ), dtype='int32'),
                             dict(type='nms', iou_threshold=0.5))
    assert tuple(dets.shape) == (0, 5) and tuple(keep.shape) == (0, )
    boxes, scores = jt.zeros((3, 4)), jt.zeros((3, ))
    with pytest.raises(ValueError, match='nms_rotated'):  # soft_nms: test_ops_soft_nms.py
        batched_nms(boxes, scores, jt.zeros((3, )), dict(type='nms_rotated', iou_threshold=0.5))
    with pytest.raises(ValueError, match='idxs'):
        batched_nms(boxes, scores, jt.zeros((2, )), dict(iou_threshold=0.5))
    with pytest.raises(TypeError, match='iou_thresh'):
        batched_nms(boxes, scores, jt.zeros((3, )), dict(iou_thresh=0.5))


@needs_cuda
@pytest.mark.parametrize('num', [1, 63, 64, 65, 3000])
def test_nms_cuda_matches_cpu(num):
    boxes, scores = random_boxes(np.random.default_rng(num), num, tied_scores=num > 100)
    dets_cuda, keep_cuda = nms(jt.array(boxes), jt.array(scores), 0.5)
    keep_cuda, dets_cuda = keep_cuda.numpy(), dets_cuda.numpy()
    with jt.flag_scope(use_cuda=0):
        dets_cpu, keep_cpu = nms(jt.array(boxes), jt.array(scores), 0.5)
        keep_cpu, dets_cpu = keep_cpu.numpy(), dets_cpu.numpy()
    np.testing.assert_array_equal(keep_cuda, keep_cpu)
    np.testing.assert_array_equal(dets_cuda, dets_cpu)
    _, ref_keep = mmcv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)
    np.testing.assert_array_equal(keep_cuda, ref_keep.numpy())


@needs_cuda
def test_batched_nms_cuda_matches_cpu():
    rng = np.random.default_rng(2)
    boxes, scores = random_boxes(rng, 2000, tied_scores=True)
    idxs = rng.integers(0, 8, 2000).astype(np.int64)
    for cfg in (dict(iou_threshold=0.5), dict(iou_threshold=0.5, split_thr=500, max_num=100)):
        dets_cuda, keep_cuda = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs), cfg)
        keep_cuda = keep_cuda.numpy()
        with jt.flag_scope(use_cuda=0):
            _, keep_cpu = batched_nms(jt.array(boxes), jt.array(scores), jt.array(idxs), cfg)
            keep_cpu = keep_cpu.numpy()
        np.testing.assert_array_equal(keep_cuda, keep_cpu)


@pytest.mark.parametrize('num', [1, 5, 255, 256, 257, 700])
def test_emulated_cuda_order_matches_cpu(num):
    scores = (np.random.default_rng(num).integers(0, 7, num) / 7).astype(np.float32)
    scores[::13] = np.nan  # NaN sorts first, as in torch
    order, sorted_scores = np.zeros(num, np.int32), np.zeros(num, np.float32)
    emulate_cuda_op(nms_module._ORDER_CUDA_HEADER, nms_module._ORDER_CUDA_SRC, [scores],
                    [order, sorted_scores])
    cpu_order, cpu_sorted = descending_order(jt.array(scores))
    np.testing.assert_array_equal(order, cpu_order.numpy())
    np.testing.assert_array_equal(sorted_scores, cpu_sorted.numpy())


@pytest.mark.parametrize('num, iou_threshold, offset', [(1, 0.5, 0), (63, 0.5, 0), (64, 0.3, 1),
                                                        (65, 0.7, 0), (300, 0.5, 0)])
def test_emulated_cuda_suppression_matches_cpu(num, iou_threshold, offset):
    boxes, _ = random_boxes(np.random.default_rng(num), num, size=100.0)
    col_tiles = -(-num // 64)
    keep = np.zeros(num, bool)
    mask, removed = np.zeros((num, col_tiles), np.int64), np.zeros(col_tiles, np.int64)
    emulate_cuda_op(nms_module._SUPPRESS_CUDA_HEADER, nms_module._SUPPRESS_CUDA_SRC, [boxes],
                    [keep, mask, removed], dict(iou_threshold=iou_threshold, offset=offset))
    cpu_keep = _keep_flags(jt.array(boxes), iou_threshold, offset).numpy()
    np.testing.assert_array_equal(keep, cpu_keep)
    if num >= 64:
        assert 0 < keep.sum() < num
