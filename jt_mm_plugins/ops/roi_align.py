"""RoIAlign for Jittor, with the semantics of ``mmcv.ops.roi_align`` (average pooling).

Jittor has no RoIAlign, and JDet's is CUDA-only with its parameters compiled into the source.
This one is made of ``jt.code`` ops with CPU and CUDA sources for the forward pass and for the
gradient with respect to the feature map; ``spatial_scale``, ``sampling_ratio`` and ``aligned``
travel in ``data={...}``, so one compiled kernel serves every pyramid level.

The sampling follows mmcv's kernels (`Mask R-CNN <https://arxiv.org/abs/1703.06870>`_, with
Detectron2's ``aligned`` half-pixel shift):

* RoI corners are scaled by ``spatial_scale`` and shifted by -0.5 when ``aligned``; with
  ``aligned=False`` the RoI width and height are clamped to at least 1.
* Each of the ``out_h x out_w`` bins averages ``grid_h x grid_w`` bilinear samples; the grid is
  ``sampling_ratio`` per side when positive, else ``ceil(roi_size / out_size)`` (adaptive).
* A sample with ``y < -1 or y > H or x < -1 or x > W`` contributes 0; otherwise coordinates below 0
  are clamped to 0 and coordinates at or past the last row/column use that row/column.
* An empty sampling grid (a zero-size aligned RoI with adaptive sampling) gives 0.

Differences from mmcv, both deliberate: an aligned RoI with a negative size gives zeros on every
device (mmcv's CPU kernel raises, its CUDA kernel gives zeros), and a RoI whose batch index does not
name an image of the batch raises a ``ValueError`` (mmcv reads out of bounds).
"""
from typing import Tuple, Union

from jt_mm_plugins.runtime import jt

# Jittor compiles CPU kernels with -Ofast: a reciprocal multiply in place of a division can turn
# ceil(14 / 7) into 3 samples. These flags restore IEEE arithmetic for the CPU sources. The CUDA
# sources use correctly rounded divisions (__fdiv_rn) for the same reason.
EXACT_CPU_FLAGS = {'FLAGS: -fno-fast-math -ffp-contract=off ': 1}

# Geometry and bilinear taps shared by the CPU and CUDA sources. JT_HD marks functions compiled for
# both host and device; div_rn is an IEEE division even under nvcc's --use_fast_math.
_COMMON = r'''
template <typename T>
struct RoiGeometry {
    int batch;            // image index in the batch (the RoI's first column, truncated)
    T start_h, start_w;   // top-left corner on the feature map
    T bin_h, bin_w;       // size of one output bin
    int grid_h, grid_w;   // samples per bin along each side
};

template <typename T>
JT_HD inline RoiGeometry<T> roi_geometry(const T* roi, const T spatial_scale,
                                         const int sampling_ratio, const bool aligned,
                                         const int pooled_h, const int pooled_w) {
    RoiGeometry<T> g;
    g.batch = (int)roi[0];
    const T shift = aligned ? (T)0.5 : (T)0.0;
    g.start_w = roi[1] * spatial_scale - shift;
    g.start_h = roi[2] * spatial_scale - shift;
    const T end_w = roi[3] * spatial_scale - shift;
    const T end_h = roi[4] * spatial_scale - shift;
    T roi_w = end_w - g.start_w;
    T roi_h = end_h - g.start_h;
    if (!aligned) {  // legacy mode: RoIs are at least one pixel wide
        roi_w = roi_w > (T)1 ? roi_w : (T)1;
        roi_h = roi_h > (T)1 ? roi_h : (T)1;
    }
    g.bin_h = div_rn(roi_h, (T)pooled_h);
    g.bin_w = div_rn(roi_w, (T)pooled_w);
    g.grid_h = sampling_ratio > 0 ? sampling_ratio : (int)ceil(g.bin_h);
    g.grid_w = sampling_ratio > 0 ? sampling_ratio : (int)ceil(g.bin_w);
    return g;
}

// Coordinate of sample `i` (of `grid`) inside bin `p` that starts at `start`.
template <typename T>
JT_HD inline T sample_coord(const T start, const int p, const T bin, const int i, const int grid) {
    return start + p * bin + div_rn(static_cast<T>(i + .5f) * bin, static_cast<T>(grid));
}

// Bilinear taps of the point (y, x) on a height x width map: four offsets and weights.
// Returns false when the point lies outside [-1, height] x [-1, width] (it contributes 0).
template <typename T>
JT_HD inline bool bilinear_taps(const int height, const int width, T y, T x,
                                int* pos, T* weight) {
    if (y < -1.0 || y > height || x < -1.0 || x > width) return false;
    if (y <= 0) y = 0;
    if (x <= 0) x = 0;
    int y_low = (int)y, x_low = (int)x, y_high, x_high;
    if (y_low >= height - 1) {
        y_high = y_low = height - 1;
        y = (T)y_low;
    } else {
        y_high = y_low + 1;
    }
    if (x_low >= width - 1) {
        x_high = x_low = width - 1;
        x = (T)x_low;
    } else {
        x_high = x_low + 1;
    }
    const T ly = y - y_low, lx = x - x_low;
    const T hy = 1. - ly, hx = 1. - lx;
    pos[0] = y_low * width + x_low;
    pos[1] = y_low * width + x_high;
    pos[2] = y_high * width + x_low;
    pos[3] = y_high * width + x_high;
    weight[0] = hy * hx;
    weight[1] = hy * lx;
    weight[2] = ly * hx;
    weight[3] = ly * lx;
    return true;
}
'''

_CPU_HEADER = r'''
#ifdef __FAST_MATH__
#error "compile this kernel with EXACT_CPU_FLAGS (no -ffast-math): IEEE arithmetic is required"
#endif
#include <cmath>
#include <cstring>
#include <vector>
#define JT_HD
template <typename T> inline T div_rn(const T a, const T b) { return a / b; }
''' + _COMMON + r'''
// The taps of every sample of one RoI, in (ph, pw, iy, ix) order; shared by all channels.
template <typename T>
struct RoiTaps {
    std::vector<int> pos;
    std::vector<T> weight;
    std::vector<char> valid;
};

template <typename T>
inline void roi_taps(const RoiGeometry<T>& g, const int height, const int width,
                     const int pooled_h, const int pooled_w, RoiTaps<T>& taps) {
    const int grid_h = g.grid_h > 0 ? g.grid_h : 0, grid_w = g.grid_w > 0 ? g.grid_w : 0;
    const size_t num = (size_t)pooled_h * pooled_w * grid_h * grid_w;
    taps.pos.assign(num * 4, 0);
    taps.weight.assign(num * 4, (T)0);
    taps.valid.assign(num, 0);
    size_t k = 0;
    for (int ph = 0; ph < pooled_h; ph++)
    for (int pw = 0; pw < pooled_w; pw++)
    for (int iy = 0; iy < grid_h; iy++) {
        const T y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
        for (int ix = 0; ix < grid_w; ix++, k++) {
            const T x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
            taps.valid[k] = bilinear_taps(height, width, y, x, &taps.pos[k * 4],
                                          &taps.weight[k * 4]);
        }
    }
}
'''

_FORWARD_CPU_SRC = r'''
@alias(feat, in0)
@alias(rois, in1)
@alias(pooled, out0)
typedef feat_type scalar_t;
const int batch = feat_shape0, channels = feat_shape1, height = feat_shape2, width = feat_shape3;
const int pooled_h = pooled_shape2, pooled_w = pooled_shape3;
const scalar_t spatial_scale = (scalar_t)data["spatial_scale"];
const int sampling_ratio = (int)data["sampling_ratio"];
const bool aligned = data["aligned"] != 0;
RoiTaps<scalar_t> taps;
for (index_t n = 0; n < rois_shape0; n++) {
    const RoiGeometry<scalar_t> g = roi_geometry(&@rois(n, 0), spatial_scale, sampling_ratio,
                                                 aligned, pooled_h, pooled_w);
    const bool in_batch = g.batch >= 0 && g.batch < batch;
    const int grid_h = g.grid_h > 0 ? g.grid_h : 0, grid_w = g.grid_w > 0 ? g.grid_w : 0;
    const int samples = grid_h * grid_w;
    // When the grid is empty the bin is 0 / 1 rather than NaN.
    const scalar_t count = g.grid_h * g.grid_w > 1 ? (scalar_t)(g.grid_h * g.grid_w) : (scalar_t)1;
    if (in_batch) roi_taps(g, height, width, pooled_h, pooled_w, taps);
    for (int c = 0; c < channels; c++) {
        const scalar_t* plane = in_batch ? &@feat(g.batch, c, 0, 0) : nullptr;
        size_t k = 0;
        for (int ph = 0; ph < pooled_h; ph++)
        for (int pw = 0; pw < pooled_w; pw++) {
            scalar_t acc = 0;
            if (in_batch) {
                for (int s = 0; s < samples; s++, k++) {
                    if (!taps.valid[k]) continue;
                    const int* p = &taps.pos[k * 4];
                    const scalar_t* w = &taps.weight[k * 4];
                    acc += w[0] * plane[p[0]] + w[1] * plane[p[1]] + w[2] * plane[p[2]] +
                           w[3] * plane[p[3]];
                }
            }
            @pooled(n, c, ph, pw) = acc / count;
        }
    }
}
'''

# Gradient with respect to the feature map: in0 = rois, in1 = gradient of the pooled output.
_BACKWARD_CPU_SRC = r'''
@alias(rois, in0)
@alias(dout, in1)
@alias(grad_feat, out0)
typedef grad_feat_type scalar_t;
const int batch = grad_feat_shape0, channels = grad_feat_shape1;
const int height = grad_feat_shape2, width = grad_feat_shape3;
const int pooled_h = dout_shape2, pooled_w = dout_shape3;
const scalar_t spatial_scale = (scalar_t)data["spatial_scale"];
const int sampling_ratio = (int)data["sampling_ratio"];
const bool aligned = data["aligned"] != 0;
std::memset(grad_feat_p, 0, grad_feat->size);
RoiTaps<scalar_t> taps;
for (index_t n = 0; n < rois_shape0; n++) {
    const RoiGeometry<scalar_t> g = roi_geometry(&@rois(n, 0), spatial_scale, sampling_ratio,
                                                 aligned, pooled_h, pooled_w);
    if (g.batch < 0 || g.batch >= batch) continue;
    const int grid_h = g.grid_h > 0 ? g.grid_h : 0, grid_w = g.grid_w > 0 ? g.grid_w : 0;
    const int samples = grid_h * grid_w;
    const scalar_t count = (scalar_t)(g.grid_h * g.grid_w);
    roi_taps(g, height, width, pooled_h, pooled_w, taps);
    for (int c = 0; c < channels; c++) {
        scalar_t* plane = &@grad_feat(g.batch, c, 0, 0);
        size_t k = 0;
        for (int ph = 0; ph < pooled_h; ph++)
        for (int pw = 0; pw < pooled_w; pw++) {
            const scalar_t grad_bin = @dout(n, c, ph, pw);
            for (int s = 0; s < samples; s++, k++) {
                if (!taps.valid[k]) continue;
                const int* p = &taps.pos[k * 4];
                const scalar_t* w = &taps.weight[k * 4];
                for (int t = 0; t < 4; t++) plane[p[t]] += grad_bin * w[t] / count;
            }
        }
    }
}
'''

_CUDA_HEADER = r'''
#include <cmath>
#define JT_HD __host__ __device__
__host__ __device__ __forceinline__ float div_rn(const float a, const float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
__host__ __device__ __forceinline__ double div_rn(const double a, const double b) { return a / b; }
''' + _COMMON + r'''
namespace jt_mm_roi_align {

constexpr int kThreads = 512;
constexpr int kMaxBlocks = 4096;

inline int num_blocks(const long long total) {
    const long long blocks = (total + kThreads - 1) / kThreads;
    return (int)(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// One thread per output element (n, c, ph, pw).
template <typename T>
__global__ void forward_kernel(const long long total, const T* feat, const T* rois, T* pooled,
                               const int batch, const int channels, const int height,
                               const int width, const int pooled_h, const int pooled_w,
                               const T spatial_scale, const int sampling_ratio,
                               const bool aligned) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        const int pw = index % pooled_w;
        const int ph = (index / pooled_w) % pooled_h;
        const int c = (index / pooled_w / pooled_h) % channels;
        const long long n = index / pooled_w / pooled_h / channels;
        const RoiGeometry<T> g = roi_geometry(rois + n * 5, spatial_scale, sampling_ratio,
                                              aligned, pooled_h, pooled_w);
        T acc = 0;
        if (g.batch >= 0 && g.batch < batch) {
            const T* plane = feat + ((long long)g.batch * channels + c) * height * width;
            int pos[4];
            T w[4];
            for (int iy = 0; iy < g.grid_h; iy++) {
                const T y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
                for (int ix = 0; ix < g.grid_w; ix++) {
                    const T x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
                    if (bilinear_taps(height, width, y, x, pos, w))
                        acc += w[0] * plane[pos[0]] + w[1] * plane[pos[1]] +
                               w[2] * plane[pos[2]] + w[3] * plane[pos[3]];
                }
            }
        }
        const int samples = g.grid_h * g.grid_w;
        pooled[index] = acc / (T)(samples > 1 ? samples : 1);
    }
}

// One thread per output element, scattering its gradient with atomicAdd.
template <typename T>
__global__ void backward_kernel(const long long total, const T* grad_pooled, const T* rois,
                                T* grad_feat, const int batch, const int channels,
                                const int height, const int width, const int pooled_h,
                                const int pooled_w, const T spatial_scale,
                                const int sampling_ratio, const bool aligned) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        const int pw = index % pooled_w;
        const int ph = (index / pooled_w) % pooled_h;
        const int c = (index / pooled_w / pooled_h) % channels;
        const long long n = index / pooled_w / pooled_h / channels;
        const RoiGeometry<T> g = roi_geometry(rois + n * 5, spatial_scale, sampling_ratio,
                                              aligned, pooled_h, pooled_w);
        if (g.batch < 0 || g.batch >= batch) continue;
        T* plane = grad_feat + ((long long)g.batch * channels + c) * height * width;
        const T grad_bin = grad_pooled[index];
        const T count = (T)(g.grid_h * g.grid_w);
        int pos[4];
        T w[4];
        for (int iy = 0; iy < g.grid_h; iy++) {
            const T y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
            for (int ix = 0; ix < g.grid_w; ix++) {
                const T x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
                if (!bilinear_taps(height, width, y, x, pos, w)) continue;
                for (int t = 0; t < 4; t++)
                    atomicAdd(plane + pos[t], div_rn(grad_bin * w[t], count));
            }
        }
    }
}

}  // namespace jt_mm_roi_align
'''

_FORWARD_CUDA_SRC = r'''
@alias(feat, in0)
@alias(rois, in1)
@alias(pooled, out0)
const long long total = (long long)pooled_shape0 * pooled_shape1 * pooled_shape2 * pooled_shape3;
if (total > 0) {
    const int blocks = jt_mm_roi_align::num_blocks(total);
    jt_mm_roi_align::forward_kernel<feat_type><<<blocks, jt_mm_roi_align::kThreads>>>(
        total, feat_p, rois_p, pooled_p, feat_shape0, feat_shape1, feat_shape2, feat_shape3,
        pooled_shape2, pooled_shape3, (feat_type)data["spatial_scale"],
        (int)data["sampling_ratio"], data["aligned"] != 0);
}
'''

_BACKWARD_CUDA_SRC = r'''
@alias(rois, in0)
@alias(dout, in1)
@alias(grad_feat, out0)
cudaMemsetAsync(grad_feat_p, 0, grad_feat->size);
const long long total = (long long)dout_shape0 * dout_shape1 * dout_shape2 * dout_shape3;
if (total > 0) {
    const int blocks = jt_mm_roi_align::num_blocks(total);
    jt_mm_roi_align::backward_kernel<grad_feat_type><<<blocks, jt_mm_roi_align::kThreads>>>(
        total, dout_p, rois_p, grad_feat_p, grad_feat_shape0, grad_feat_shape1, grad_feat_shape2,
        grad_feat_shape3, dout_shape2, dout_shape3, (grad_feat_type)data["spatial_scale"],
        (int)data["sampling_ratio"], data["aligned"] != 0);
}
'''

_SUPPORTED_DTYPES = ('float32', 'float64')


def _pair(value: Union[int, Tuple[int, int]], name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f'roi_align: {name} must be a positive int or a pair of them, '
                         f'got {value!r}')
    return pair


def _check_inputs(input: jt.Var, rois: jt.Var, pool_mode: str) -> None:
    if not isinstance(input, jt.Var) or not isinstance(rois, jt.Var):
        raise TypeError(f'roi_align: input and rois must be jittor Vars, got {type(input)} and '
                        f'{type(rois)}')
    if input.ndim != 4:
        raise ValueError(f'roi_align: input must be (N, C, H, W), got {tuple(input.shape)}')
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError('roi_align: rois must be (K, 5) rows of (batch_idx, x1, y1, x2, y2), got '
                         f'{tuple(rois.shape)}')
    if str(input.dtype) not in _SUPPORTED_DTYPES:
        raise TypeError(f'roi_align: input dtype {input.dtype} is not supported; use one of '
                        f'{_SUPPORTED_DTYPES}')
    if pool_mode != 'avg':
        raise ValueError(f"roi_align: pool_mode {pool_mode!r} is not implemented; only 'avg' is")


def _check_batch_indices(rois: jt.Var, batch: int) -> None:
    """Fail loudly on RoIs that point at an image outside the batch (mmcv would read garbage)."""
    batch_idx = rois[:, 0].int32()  # truncated like the kernels' (int) cast
    low, high = jt.concat([batch_idx.min().reshape(1), batch_idx.max().reshape(1)]).numpy().tolist()
    if low < 0 or high >= batch:
        raise ValueError(f'roi_align: RoI batch indices must lie in [0, {batch - 1}] for a feature '
                         f'map of batch size {batch}, got indices in [{low}, {high}]')


class RoIAlignFunction(jt.Function):
    """RoIAlign forward and feature-map gradient as ``jt.code`` kernels.

    A ``jt.Function`` rather than ``jt.code(..., cpu_grad_src=...)`` because Jittor builds the
    gradient op of a code op outside any ``flag_scope``, which would compile it with -Ofast.

    Args:
        output_size (tuple[int, int]): (out_h, out_w).
        data (dict): ``spatial_scale``, ``sampling_ratio`` and ``aligned`` as floats, handed to
            the kernels without recompiling them.
    """

    def __init__(self, output_size: Tuple[int, int], data: dict) -> None:
        self.output_size = output_size
        self.data = data
        self.input_shape = None

    def execute(self, input: jt.Var, rois: jt.Var) -> jt.Var:
        self.input_shape, self.dtype = tuple(input.shape), input.dtype
        self._rois = rois  # leading underscore: not a parameter of this Module
        shape = (rois.shape[0], input.shape[1]) + tuple(self.output_size)
        with jt.flag_scope(compile_options=EXACT_CPU_FLAGS):
            return jt.code(shape, input.dtype, [input, rois],
                           cpu_header=_CPU_HEADER, cpu_src=_FORWARD_CPU_SRC,
                           cuda_header=_CUDA_HEADER, cuda_src=_FORWARD_CUDA_SRC,
                           data=self.data)

    def grad(self, grad_output: jt.Var) -> Tuple[jt.Var, None]:
        with jt.flag_scope(compile_options=EXACT_CPU_FLAGS):
            grad_input = jt.code(self.input_shape, self.dtype, [self._rois, grad_output],
                                 cpu_header=_CPU_HEADER, cpu_src=_BACKWARD_CPU_SRC,
                                 cuda_header=_CUDA_HEADER, cuda_src=_BACKWARD_CUDA_SRC,
                                 data=self.data)
        return grad_input, None


def roi_align(input: jt.Var,
              rois: jt.Var,
              output_size: Union[int, Tuple[int, int]],
              spatial_scale: float = 1.0,
              sampling_ratio: int = 0,
              pool_mode: str = 'avg',
              aligned: bool = True) -> jt.Var:
    """RoIAlign with the semantics of ``mmcv.ops.roi_align`` (average pooling).

    The argument order is mmcv's. Differentiable with respect to ``input`` (not ``rois``, as in
    mmcv).

    Args:
        input (jt.Var): Feature map of shape (N, C, H, W), float32 or float64.
        rois (jt.Var): RoIs of shape (K, 5): (batch_idx, x1, y1, x2, y2) in input-image
            coordinates; cast to ``input``'s dtype.
        output_size (int | tuple[int, int]): (out_h, out_w) of each pooled RoI.
        spatial_scale (float): Scale from image to feature-map coordinates (1/stride).
            Defaults to 1.0.
        sampling_ratio (int): Samples per bin side; 0 chooses ``ceil(roi_size / out_size)``
            per RoI. Defaults to 0.
        pool_mode (str): Only ``'avg'`` is implemented. Defaults to ``'avg'``.
        aligned (bool): Shift RoIs by half a pixel (Detectron2's aligned RoIAlign); False is the
            legacy mode. Defaults to True.

    Returns:
        jt.Var: Pooled features of shape (K, C, out_h, out_w).
    """
    _check_inputs(input, rois, pool_mode)
    out_h, out_w = _pair(output_size, 'output_size')
    if int(sampling_ratio) != sampling_ratio:
        raise ValueError(f'roi_align: sampling_ratio must be an integer, got {sampling_ratio!r}')
    num_rois, channels = rois.shape[0], input.shape[1]
    if rois.dtype != input.dtype:
        rois = rois.astype(input.dtype)
    if num_rois == 0:
        # Keep the graph connected so that the gradient of input is defined (and zero).
        return jt.zeros((0, channels, out_h, out_w), dtype=input.dtype) + input.sum() * 0
    _check_batch_indices(rois, input.shape[0])
    data = dict(spatial_scale=float(spatial_scale), sampling_ratio=float(int(sampling_ratio)),
                aligned=float(bool(aligned)))
    return RoIAlignFunction((out_h, out_w), data)(input, rois)


class RoIAlign(jt.nn.Module):
    """RoIAlign layer (`Mask R-CNN <https://arxiv.org/abs/1703.06870>`_), the Jittor twin of
    ``mmcv.ops.RoIAlign`` for Jittor RoI extractors.

    Args:
        output_size (int | tuple[int, int]): (out_h, out_w).
        spatial_scale (float): Scale from image to feature-map coordinates. Defaults to 1.0.
        sampling_ratio (int): Samples per bin side, 0 for adaptive. Defaults to 0.
        pool_mode (str): Only ``'avg'``. Defaults to ``'avg'``.
        aligned (bool): Half-pixel aligned RoIs. Defaults to True.
        use_torchvision (bool): Accepted for config compatibility; must be False.
    """

    def __init__(self,
                 output_size: Union[int, Tuple[int, int]],
                 spatial_scale: float = 1.0,
                 sampling_ratio: int = 0,
                 pool_mode: str = 'avg',
                 aligned: bool = True,
                 use_torchvision: bool = False) -> None:
        super().__init__()
        if use_torchvision:
            raise ValueError('RoIAlign: use_torchvision=True is a PyTorch option; the Jittor '
                             'RoIAlign has its own kernels, leave it False')
        if pool_mode != 'avg':
            raise ValueError(f"RoIAlign: pool_mode {pool_mode!r} is not implemented; only 'avg' is")
        self.output_size = _pair(output_size, 'output_size')
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = aligned

    def execute(self, input: jt.Var, rois: jt.Var) -> jt.Var:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                         self.pool_mode, self.aligned)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(output_size={self.output_size}, '
                f'spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}, '
                f'pool_mode={self.pool_mode}, aligned={self.aligned})')
