"""Non-maximum suppression for Jittor with the semantics of ``mmcv.ops.nms`` / ``batched_nms``.

Jittor's own ``jt.nms`` adds ``+1`` to widths and heights, packs the scores into the boxes, has no
class-aware version and sorts with an unstable sort. The functions here follow mmcv's CPU kernel
instead:

* boxes are visited in descending score order; equal scores keep their input order (a stable sort;
  mmcv uses torch's unstable sort, so its order among equal scores depends on the machine and is
  matched only where scores are distinct);
* a box is suppressed by an earlier kept box when ``inter / (area_i + area_j - inter)`` is strictly
  greater than ``iou_threshold`` (computed in the boxes' precision, with ``offset`` added to widths
  and heights, 0 by default); a zero union (two zero-area boxes) suppresses nothing;
* ``score_threshold`` drops boxes with ``score <= score_threshold`` first and ``max_num`` keeps the
  best ``max_num`` of the survivors.

``soft_nms`` follows mmcv's CPU kernel (``softnms_cpu``) step for step: the same selection of the
best remaining box, the same swaps and the same float arithmetic, so its kept indices, their order
and the rescored scores are mmcv's. As mmcv's, it runs on the CPU only (on CUDA the boxes are
processed on the host).

The sort and the suppression are ``jt.code`` kernels with CPU and CUDA sources. On CUDA the sort is
a rank count, the pairwise IoU test is computed as a bit mask in 64x64 tiles (N x N/64 words of
scratch memory, as in mmcv) and the greedy pass runs in one thread block.
"""
import math
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from jt_mm_plugins.runtime import jt

# Jittor compiles kernels with -Ofast / --use_fast_math. IoU tests decide which box survives, so the
# CPU kernels here are compiled with IEEE arithmetic (no reciprocal tricks, no fused multiply-add),
# exactly like mmcv's CPU kernel; the CUDA sources use the correctly rounded intrinsics instead.
EXACT_CPU_FLAGS = {'FLAGS: -fno-fast-math -ffp-contract=off ': 1}

# Bits of one word of the CUDA suppression mask: boxes are compared in tiles of this many.
_CUDA_TILE = 64

_ORDER_CPU_HEADER = r'''
#ifdef __FAST_MATH__
#error "compile this kernel with EXACT_CPU_FLAGS (no -ffast-math): IEEE arithmetic is required"
#endif
#include <algorithm>
#include <cmath>
'''

# Descending, NaN first (as torch sorts them), equal scores in input order.
_ORDER_CPU_SRC = r'''
@alias(scores, in0)
@alias(order, out0)
@alias(sorted_scores, out1)
const index_t n = scores_shape0;
for (index_t i = 0; i < n; i++) order_p[i] = (order_type)i;
std::stable_sort(order_p, order_p + n, [&](order_type a, order_type b) {
    const scores_type x = scores_p[a], y = scores_p[b];
    return (std::isnan(x) && !std::isnan(y)) || x > y;
});
for (index_t i = 0; i < n; i++) sorted_scores_p[i] = scores_p[order_p[i]];
'''

# The CUDA order is a rank count: box i goes to position #{j : j sorts before i}. It is O(N^2) like
# the suppression mask itself, needs no library (Jittor builds with -std=c++14, which recent thrust
# rejects) and gives exactly the CPU order.
_ORDER_CUDA_HEADER = r'''
namespace jt_mm_order {

constexpr int kTile = 256;

template <typename T>
__device__ __forceinline__ bool greater(const T x, const T y) {
    return (isnan(x) && !isnan(y)) || x > y;
}

template <typename T>
__global__ void descending_rank_kernel(const T* scores, const int n, int* order) {
    __shared__ T tile[kTile];
    const int i = blockIdx.x * kTile + threadIdx.x;
    const T si = i < n ? scores[i] : (T)0;
    int rank = 0;
    for (int start = 0; start < n; start += kTile) {
        if (start + threadIdx.x < n) tile[threadIdx.x] = scores[start + threadIdx.x];
        __syncthreads();
        const int len = min(kTile, n - start);
        if (i < n) {
            for (int k = 0; k < len; k++) {
                const T sj = tile[k];
                const int j = start + k;
                rank += greater(sj, si) || (j < i && !greater(si, sj));
            }
        }
        __syncthreads();
    }
    if (i < n) order[rank] = i;
}

template <typename T>
__global__ void gather_kernel(const T* scores, const int* order, const int n, T* sorted) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) sorted[k] = scores[order[k]];
}

}  // namespace jt_mm_order
'''

_ORDER_CUDA_SRC = r'''
@alias(scores, in0)
@alias(order, out0)
@alias(sorted_scores, out1)
const int n = scores_shape0;
if (n > 0) {
    const int blocks = (n + jt_mm_order::kTile - 1) / jt_mm_order::kTile;
    jt_mm_order::descending_rank_kernel<scores_type><<<blocks, jt_mm_order::kTile>>>(
        scores_p, n, order_p);
    jt_mm_order::gather_kernel<scores_type><<<blocks, jt_mm_order::kTile>>>(
        scores_p, order_p, n, sorted_scores_p);
}
'''

_SUPPRESS_CPU_HEADER = r'''
#ifdef __FAST_MATH__
#error "compile this kernel with EXACT_CPU_FLAGS (no -ffast-math): IEEE arithmetic is required"
#endif
#include <algorithm>
#include <vector>
'''

# in0: boxes [n, 4] already sorted by descending score. out0: keep flags [n].
# out1 / out2 are the CUDA kernel's scratch buffers and stay unused on the CPU.
_SUPPRESS_CPU_SRC = r'''
@alias(boxes, in0)
@alias(keep, out0)
typedef boxes_type scalar_t;
const index_t n = boxes_shape0;
const scalar_t offset = (scalar_t)data["offset"];
const float iou_threshold = (float)data["iou_threshold"];
const scalar_t zero = 0;
std::vector<scalar_t> areas(n);
for (index_t i = 0; i < n; i++) {
    areas[i] = (@boxes(i, 2) - @boxes(i, 0) + offset) * (@boxes(i, 3) - @boxes(i, 1) + offset);
    @keep(i) = true;
}
for (index_t i = 0; i < n; i++) {
    if (!@keep(i)) continue;
    const scalar_t ix1 = @boxes(i, 0), iy1 = @boxes(i, 1);
    const scalar_t ix2 = @boxes(i, 2), iy2 = @boxes(i, 3);
    for (index_t j = i + 1; j < n; j++) {
        if (!@keep(j)) continue;
        const scalar_t w = std::max(zero, std::min(ix2, @boxes(j, 2)) -
                                          std::max(ix1, @boxes(j, 0)) + offset);
        const scalar_t h = std::max(zero, std::min(iy2, @boxes(j, 3)) -
                                          std::max(iy1, @boxes(j, 1)) + offset);
        const scalar_t inter = w * h;
        const scalar_t uni = areas[i] + areas[j] - inter;
        // A zero or negative union gives NaN or <= 0 in mmcv's division: never a suppression.
        if (uni > zero && inter / uni > iou_threshold) @keep(j) = false;
    }
}
'''

_SUPPRESS_CUDA_HEADER = r'''
namespace jt_mm_nms {

constexpr int kTile = 64;
constexpr int kGatherThreads = 256;

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

template <typename T>
__device__ __forceinline__ T box_area(const T* b, const T offset) {
    return mul_rn(b[2] - b[0] + offset, b[3] - b[1] + offset);
}

// Same arithmetic as the CPU source, with correctly rounded multiply and divide.
template <typename T>
__device__ __forceinline__ bool suppresses(const T* a, const T area_a, const T* b, const T area_b,
                                           const T offset, const float iou_threshold) {
    const T zero = 0;
    const T w = max(zero, min(a[2], b[2]) - max(a[0], b[0]) + offset);
    const T h = max(zero, min(a[3], b[3]) - max(a[1], b[1]) + offset);
    const T inter = mul_rn(w, h);
    const T uni = area_a + area_b - inter;
    return uni > zero && div_rn(inter, uni) > iou_threshold;
}

// Block (x=column tile, y=row tile) of kTile threads: bit k of mask[i][column tile] says whether
// box i suppresses box (column tile * kTile + k), for later boxes only (upper triangle).
template <typename T>
__global__ void suppression_mask_kernel(const T* boxes, const int n, const int col_tiles,
                                        const T offset, const float iou_threshold,
                                        unsigned long long* mask) {
    const int row_tile = blockIdx.y, col_tile = blockIdx.x;
    if (row_tile > col_tile) return;
    const int row_size = min(n - row_tile * kTile, kTile);
    const int col_size = min(n - col_tile * kTile, kTile);
    __shared__ T tile_boxes[kTile * 4];
    __shared__ T tile_areas[kTile];
    if (threadIdx.x < col_size) {
        const T* b = boxes + (size_t)(col_tile * kTile + threadIdx.x) * 4;
        for (int k = 0; k < 4; k++) tile_boxes[threadIdx.x * 4 + k] = b[k];
        tile_areas[threadIdx.x] = box_area(b, offset);
    }
    __syncthreads();
    if (threadIdx.x < row_size) {
        const int i = row_tile * kTile + threadIdx.x;
        const T* a = boxes + (size_t)i * 4;
        const T area_a = box_area(a, offset);
        unsigned long long bits = 0;
        const int start = (row_tile == col_tile) ? threadIdx.x + 1 : 0;
        for (int k = start; k < col_size; k++) {
            if (suppresses(a, area_a, tile_boxes + k * 4, tile_areas[k], offset, iou_threshold))
                bits |= 1ULL << k;
        }
        mask[(size_t)i * col_tiles + col_tile] = bits;
    }
}

// One block walks the boxes in score order; a kept box ORs its mask row into `removed`.
__global__ void gather_keep_kernel(const unsigned long long* mask, const int n,
                                   const int col_tiles, unsigned long long* removed, bool* keep) {
    for (int t = threadIdx.x; t < col_tiles; t += blockDim.x) removed[t] = 0ULL;
    for (int t = threadIdx.x; t < n; t += blockDim.x) keep[t] = false;
    __syncthreads();
    for (int i = 0; i < n; i++) {
        const int tile = i / kTile, bit = i % kTile;
        const bool alive = !((removed[tile] >> bit) & 1ULL);
        __syncthreads();  // every thread has read `removed` before anyone updates it
        if (alive) {
            if (threadIdx.x == 0) keep[i] = true;
            const unsigned long long* row = mask + (size_t)i * col_tiles;
            for (int t = tile + threadIdx.x; t < col_tiles; t += blockDim.x) removed[t] |= row[t];
            __syncthreads();
        }
    }
}

}  // namespace jt_mm_nms
'''

_SUPPRESS_CUDA_SRC = r'''
@alias(boxes, in0)
@alias(keep, out0)
@alias(mask, out1)
@alias(removed, out2)
const int n = boxes_shape0;
const int col_tiles = (n + jt_mm_nms::kTile - 1) / jt_mm_nms::kTile;
if (n > 0) {
    dim3 grid(col_tiles, col_tiles);
    jt_mm_nms::suppression_mask_kernel<boxes_type><<<grid, jt_mm_nms::kTile>>>(
        boxes_p, n, col_tiles, (boxes_type)data["offset"], (float)data["iou_threshold"],
        (unsigned long long*)mask_p);
    jt_mm_nms::gather_keep_kernel<<<1, jt_mm_nms::kGatherThreads>>>(
        (const unsigned long long*)mask_p, n, col_tiles, (unsigned long long*)removed_p, keep_p);
}
'''


def _check_boxes_scores(boxes: jt.Var, scores: jt.Var, fn: str) -> None:
    if not isinstance(boxes, jt.Var) or not isinstance(scores, jt.Var):
        raise TypeError(f'{fn}: boxes and scores must be jittor Vars, got {type(boxes)} and '
                        f'{type(scores)}')
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'{fn}: boxes must have shape (N, 4), got {tuple(boxes.shape)}')
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f'{fn}: scores must have shape (N,) with N = {boxes.shape[0]} boxes, got '
                         f'{tuple(scores.shape)}')


def _empty_result(boxes: jt.Var) -> Tuple[jt.Var, jt.Var]:
    return jt.zeros((0, 5), dtype=boxes.dtype), jt.zeros((0, ), dtype='int64')


def descending_order(scores: jt.Var) -> Tuple[jt.Var, jt.Var]:
    """Stable sort of a 1-D Var in descending order.

    Equal values keep their input order; NaN sorts first, as in ``torch.sort``. (mmcv orders equal
    scores with torch's unstable sort, whose tie order depends on the machine; Jittor's CPU
    ``argsort`` is unstable too.)

    Args:
        scores (jt.Var): Shape (N,), N > 0.

    Returns:
        tuple[jt.Var, jt.Var]: ``(order, sorted_scores)``: int32 indices of shape (N,) and
        ``scores[order]``.
    """
    with jt.flag_scope(compile_options=EXACT_CPU_FLAGS):
        order, sorted_scores = jt.code([scores.shape, scores.shape], ['int32', scores.dtype],
                                       [scores],
                                       cpu_header=_ORDER_CPU_HEADER,
                                       cpu_src=_ORDER_CPU_SRC,
                                       cuda_header=_ORDER_CUDA_HEADER,
                                       cuda_src=_ORDER_CUDA_SRC)
    return order, sorted_scores


def _keep_flags(sorted_boxes: jt.Var, iou_threshold: float, offset: int) -> jt.Var:
    """Greedy suppression over boxes sorted by descending score; returns bool flags (N,)."""
    num = sorted_boxes.shape[0]
    if jt.flags.use_cuda:
        col_tiles = math.ceil(num / _CUDA_TILE)
        scratch_shapes = [(num, col_tiles), (col_tiles, )]
    else:
        scratch_shapes = [(1, ), (1, )]
    with jt.flag_scope(compile_options=EXACT_CPU_FLAGS):
        keep, _, _ = jt.code([(num, )] + scratch_shapes, ['bool', 'int64', 'int64'],
                             [sorted_boxes],
                             cpu_header=_SUPPRESS_CPU_HEADER,
                             cpu_src=_SUPPRESS_CPU_SRC,
                             cuda_header=_SUPPRESS_CUDA_HEADER,
                             cuda_src=_SUPPRESS_CUDA_SRC,
                             data=dict(iou_threshold=float(iou_threshold), offset=float(offset)))
    return keep


def _nms_indices(boxes: jt.Var, scores: jt.Var, iou_threshold: float, offset: int) -> jt.Var:
    """Indices (int32, descending score) of the boxes NMS keeps; boxes must be non-empty."""
    order, _ = descending_order(scores)
    keep = _keep_flags(boxes[order], iou_threshold, offset)
    return order[jt.where(keep)[0]]


def nms(boxes: jt.Var,
        scores: jt.Var,
        iou_threshold: float,
        offset: int = 0,
        score_threshold: float = 0,
        max_num: int = -1) -> Tuple[jt.Var, jt.Var]:
    """Non-maximum suppression with ``mmcv.ops.nms`` semantics.

    The argument order is mmcv's, so ``nms(**nms_cfg)`` calls written for mmcv work unchanged.

    Args:
        boxes (jt.Var): Boxes of shape (N, 4) in <x1, y1, x2, y2> format.
        scores (jt.Var): Scores of shape (N,).
        iou_threshold (float): A box is suppressed by a higher-scoring kept box when their IoU is
            strictly greater than this.
        offset (int): 0 or 1, added to widths and heights (mmcv's legacy ``+1`` mode is 1).
            Defaults to 0.
        score_threshold (float): When positive, boxes with ``score <= score_threshold`` are
            dropped first. Defaults to 0.
        max_num (int): When positive, keep at most this many boxes. Defaults to -1.

    Returns:
        tuple[jt.Var, jt.Var]: ``dets`` of shape (K, 5), rows (x1, y1, x2, y2, score) in
        descending score order, and ``keep`` (int64, shape (K,)): their indices in ``boxes``.
    """
    _check_boxes_scores(boxes, scores, 'nms')
    if offset not in (0, 1):
        raise ValueError(f'nms: offset must be 0 or 1, got {offset!r}')
    if boxes.shape[0] == 0:
        return _empty_result(boxes)

    candidates = None
    cand_boxes, cand_scores = boxes, scores
    if score_threshold > 0:
        candidates = jt.where(scores > score_threshold)[0]
        if candidates.shape[0] == 0:
            return _empty_result(boxes)
        cand_boxes, cand_scores = boxes[candidates], scores[candidates]

    inds = _nms_indices(cand_boxes, cand_scores, iou_threshold, offset)
    if max_num > 0:
        inds = inds[:max_num]
    if candidates is not None:
        inds = candidates[inds]
    dets = jt.concat([boxes[inds], scores[inds].reshape(-1, 1)], dim=1)
    return dets, inds.int64()


# mmcv's softnms_cpu, step for step (the same argmax, swaps and float arithmetic).
# in0: boxes [n, 4], in1: scores [n]. out0: dets [n, 5] (the first out2[0] rows are valid),
# out1: their indices, out2: how many boxes were kept.
_SOFT_NMS_CPU_HEADER = r"""
#ifdef __FAST_MATH__
#error "compile this kernel with EXACT_CPU_FLAGS (no -ffast-math): IEEE arithmetic is required"
#endif
#include <algorithm>
#include <cmath>
#include <vector>
"""

_SOFT_NMS_CPU_SRC = r"""
@alias(boxes, in0)
@alias(scores, in1)
@alias(dets, out0)
@alias(inds, out1)
@alias(count, out2)
const int method = (int)data["method"], offset = (int)data["offset"];
const float iou_threshold = (float)data["iou_threshold"], sigma = (float)data["sigma"];
const float min_score = (float)data["min_score"];
typedef boxes_type scalar_t;
const scalar_t zero = 0;
const int64_t n = boxes_shape0;
std::vector<scalar_t> x1(n), y1(n), x2(n), y2(n), sc(n), areas(n);
std::vector<int64_t> idx(n);
for (int64_t i = 0; i < n; i++) {
    x1[i] = @boxes(i, 0); y1[i] = @boxes(i, 1); x2[i] = @boxes(i, 2); y2[i] = @boxes(i, 3);
    sc[i] = @scores(i);
    areas[i] = (x2[i] - x1[i] + offset) * (y2[i] - y1[i] + offset);
    idx[i] = i;
}
int64_t nboxes = n;
for (int64_t i = 0; i < nboxes; i++) {
    // the best remaining box (the first of equal scores) moves to position i
    scalar_t max_score = sc[i];
    int64_t max_pos = i;
    for (int64_t pos = i + 1; pos < nboxes; pos++) {
        if (max_score < sc[pos]) { max_score = sc[pos]; max_pos = pos; }
    }
    const scalar_t ix1 = x1[max_pos], iy1 = y1[max_pos], ix2 = x2[max_pos], iy2 = y2[max_pos];
    const scalar_t iscore = sc[max_pos], iarea = areas[max_pos];
    const int64_t iind = idx[max_pos];
    @dets(i, 0) = ix1; @dets(i, 1) = iy1; @dets(i, 2) = ix2; @dets(i, 3) = iy2;
    @dets(i, 4) = iscore;
    x1[max_pos] = x1[i]; y1[max_pos] = y1[i]; x2[max_pos] = x2[i]; y2[max_pos] = y2[i];
    sc[max_pos] = sc[i]; areas[max_pos] = areas[i]; idx[max_pos] = idx[i];
    x1[i] = ix1; y1[i] = iy1; x2[i] = ix2; y2[i] = iy2;
    sc[i] = iscore; areas[i] = iarea; idx[i] = iind;
    // rescore the others; a box whose score falls below min_score is dropped (swapped with the
    // last)
    for (int64_t pos = i + 1; pos < nboxes; pos++) {
        const scalar_t w = std::max(zero, std::min(ix2, x2[pos]) - std::max(ix1, x1[pos]) + offset);
        const scalar_t h = std::max(zero, std::min(iy2, y2[pos]) - std::max(iy1, y1[pos]) + offset);
        const scalar_t inter = w * h;
        const scalar_t ovr = inter / (iarea + areas[pos] - inter);
        scalar_t weight = 1;
        if (method == 0) {
            if (ovr >= iou_threshold) weight = 0;
        } else if (method == 1) {
            if (ovr >= iou_threshold) weight = 1 - ovr;
        } else {
            weight = std::exp(-(ovr * ovr) / sigma);
        }
        sc[pos] *= weight;
        if (sc[pos] < min_score) {
            x1[pos] = x1[nboxes - 1]; y1[pos] = y1[nboxes - 1];
            x2[pos] = x2[nboxes - 1]; y2[pos] = y2[nboxes - 1];
            sc[pos] = sc[nboxes - 1]; areas[pos] = areas[nboxes - 1]; idx[pos] = idx[nboxes - 1];
            nboxes--;
            pos--;
        }
    }
}
for (int64_t i = 0; i < nboxes; i++) @inds(i) = (inds_type)idx[i];
@count(0) = (count_type)nboxes;
"""

SOFT_NMS_METHODS = {'naive': 0, 'linear': 1, 'gaussian': 2}


def soft_nms(boxes: jt.Var,
             scores: jt.Var,
             iou_threshold: float = 0.3,
             sigma: float = 0.5,
             min_score: float = 1e-3,
             method: str = 'linear',
             offset: int = 0) -> Tuple[jt.Var, jt.Var]:
    """Soft-NMS (`paper <https://arxiv.org/abs/1704.04503>`_) with ``mmcv.ops.soft_nms`` semantics.

    Repeatedly the remaining box with the highest (current) score is kept (the first of equal
    scores in mmcv's working order) and every other remaining box's score is multiplied by a
    weight of their IoU ``o``: ``method='linear'``: ``1 - o`` when ``o >= iou_threshold``, else 1;
    ``'gaussian'``: ``exp(-o^2 / sigma)`` (``iou_threshold`` unused); ``'naive'``: 0 when
    ``o >= iou_threshold`` (hard NMS with ``>=``). A box whose score falls below ``min_score`` is
    dropped. Arguments, their defaults and their order are mmcv's. Runs on the CPU (mmcv's has only
    a CPU kernel).

    Args:
        boxes (jt.Var): Boxes of shape (N, 4) in <x1, y1, x2, y2> format.
        scores (jt.Var): Scores of shape (N,).
        iou_threshold (float): See above. Defaults to 0.3.
        sigma (float): Gaussian parameter. Defaults to 0.5.
        min_score (float): Boxes whose rescored score is below this are dropped. Defaults to 1e-3.
        method (str): ``'linear'``, ``'gaussian'`` or ``'naive'``. Defaults to ``'linear'``.
        offset (int): 0 or 1, added to widths and heights. Defaults to 0.

    Returns:
        tuple[jt.Var, jt.Var]: ``dets`` (K, 5), rows (x1, y1, x2, y2, rescored score) in the order
        kept (non-increasing score), and ``inds`` (int64, (K,)): their indices in ``boxes``.
    """
    _check_boxes_scores(boxes, scores, 'soft_nms')
    if offset not in (0, 1):
        raise ValueError(f'soft_nms: offset must be 0 or 1, got {offset!r}')
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f'soft_nms: method must be one of {sorted(SOFT_NMS_METHODS)}, got '
                         f'{method!r}')
    if boxes.shape[0] == 0:
        return _empty_result(boxes)
    num = boxes.shape[0]
    scores = scores.astype(boxes.dtype)
    with jt.flag_scope(use_cuda=0, compile_options=EXACT_CPU_FLAGS):
        dets, inds, count = jt.code(
            [(num, 5), (num, ), (1, )], [boxes.dtype, 'int64', 'int64'], [boxes, scores],
            cpu_header=_SOFT_NMS_CPU_HEADER, cpu_src=_SOFT_NMS_CPU_SRC,
            data=dict(iou_threshold=float(iou_threshold), sigma=float(sigma),
                      min_score=float(min_score), method=SOFT_NMS_METHODS[method],
                      offset=float(offset)))
        kept = int(count.numpy()[0])
    if kept == 0:  # every box below min_score
        return _empty_result(boxes)
    return dets[:kept], inds[:kept]


def _resolve_nms_type(nms_type: Union[str, Callable]) -> Callable:
    if nms_type == 'nms' or nms_type is nms:
        return nms
    if nms_type == 'soft_nms' or nms_type is soft_nms:
        return soft_nms
    raise ValueError(f'batched_nms: nms_cfg type {nms_type!r} is not implemented in Jittor; only '
                     "type='nms' and type='soft_nms' are (nms_rotated, ... are not ported).")


def _class_offset_boxes(boxes: jt.Var, idxs: jt.Var) -> jt.Var:
    """mmcv's trick: shift each class by a multiple of (max coordinate + 1) so classes never
    overlap, with the same float arithmetic as mmcv."""
    max_coordinate = boxes.max()
    offsets = idxs.astype(boxes.dtype) * (max_coordinate + 1)
    return boxes + offsets.unsqueeze(1)


def batched_nms(boxes: jt.Var,
                scores: jt.Var,
                idxs: jt.Var,
                nms_cfg: Optional[Dict],
                class_agnostic: bool = False) -> Tuple[jt.Var, jt.Var]:
    """Class-aware NMS with ``mmcv.ops.batched_nms`` semantics.

    Boxes of different ``idxs`` never suppress each other. Below ``split_thr`` boxes this is done in
    one NMS call with mmcv's coordinate-offset trick; at or above it, NMS runs once per class and
    the survivors are merged and sorted by score (ties in input order), then ``max_num`` applies.

    Args:
        boxes (jt.Var): Boxes of shape (N, 4).
        scores (jt.Var): Scores of shape (N,).
        idxs (jt.Var): Class (or group) index of each box, shape (N,).
        nms_cfg (dict | None): ``None`` skips NMS and only sorts by score. Otherwise the keys are
            ``type`` (``'nms'``, the default, or ``'soft_nms'``), ``iou_threshold``,
            ``class_agnostic`` (overrides the argument), ``split_thr`` (default 10000) and the
            other keyword arguments of :func:`nms` (``offset``, ``score_threshold``, ``max_num``)
            or :func:`soft_nms` (``sigma``, ``min_score``, ``method``, ``offset``).
        class_agnostic (bool): Ignore ``idxs``. Defaults to False.

    Returns:
        tuple[jt.Var, jt.Var]: ``dets`` (K, 5) with the original (unshifted) boxes and their
        scores (after soft-NMS's rescoring) in descending score order, and ``keep`` (int64,
        shape (K,)), indices into ``boxes``.
    """
    _check_boxes_scores(boxes, scores, 'batched_nms')
    if not isinstance(idxs, jt.Var) or tuple(idxs.shape) != (boxes.shape[0], ):
        raise ValueError(f'batched_nms: idxs must be a jittor Var of shape ({boxes.shape[0]},), '
                         f'got {getattr(idxs, "shape", type(idxs))}')
    if nms_cfg is not None and not isinstance(nms_cfg, dict):
        raise TypeError(f'batched_nms: nms_cfg must be a dict or None, got {type(nms_cfg)}')
    if boxes.shape[0] == 0:
        return _empty_result(boxes)

    if nms_cfg is None:
        order, sorted_scores = descending_order(scores)
        return jt.concat([boxes[order], sorted_scores.unsqueeze(1)], dim=1), order.int64()

    cfg = dict(nms_cfg)
    class_agnostic = cfg.pop('class_agnostic', class_agnostic)
    nms_op = _resolve_nms_type(cfg.pop('type', 'nms'))
    split_thr = cfg.pop('split_thr', 10000)
    boxes_for_nms = boxes if class_agnostic else _class_offset_boxes(boxes, idxs)

    if boxes_for_nms.shape[0] < split_thr:
        dets, keep = nms_op(boxes_for_nms, scores, **cfg)
        return jt.concat([boxes[keep], dets[:, -1:]], dim=1), keep

    max_num = cfg.pop('max_num', -1)
    kept, kept_scores = [], []
    for class_id in np.unique(idxs.numpy()):
        members = jt.where(idxs == class_id.item())[0]
        class_dets, class_keep = nms_op(boxes_for_nms[members], scores[members], **cfg)
        if class_keep.shape[0] > 0:
            kept.append(members[class_keep])
            kept_scores.append(class_dets[:, -1])  # soft-NMS rescored them
    if not kept:
        return _empty_result(boxes)
    keep, kept_scores = jt.concat(kept).int64(), jt.concat(kept_scores)
    # mmcv collects the survivors (with their scores after NMS) in index order, then sorts them by
    # score (stable).
    index_order = jt.argsort(keep)[0]
    keep, kept_scores = keep[index_order], kept_scores[index_order]
    order, sorted_scores = descending_order(kept_scores)
    keep = keep[order]
    dets = jt.concat([boxes[keep], sorted_scores.unsqueeze(1)], dim=1)
    if max_num > 0:
        keep, dets = keep[:max_num], dets[:max_num]
    return dets, keep
