"""Group normalisation as two fused CPU kernels (forward, backward), in Jittor.

Group normalisation (`Wu & He, 2018 <https://arxiv.org/abs/1803.08494>`_) written with Jittor's
element-wise and reduction ops and differentiated by Jittor's autograd costs several chains of
broadcasts and reductions per layer: the 20 GroupNorm calls of a GFL head step took about 3x
torch's fused GroupNorm. These kernels compute the same result one ``(sample, group)`` at a time:

* forward: the group mean (sum in float64), then the biased variance of the centred values (a
  second pass, float64), ``rstd = 1 / sqrt(var + eps)`` and, per channel ``c`` of the group,
  ``y = (x - mean) * (rstd * weight[c]) + bias[c]`` evaluated in float64 and rounded once. Centring
  before scaling keeps a group whose mean is large against its spread exact (torch's CPU kernel
  folds the mean into a shift, ``x * a + b``, and loses digits there);
* backward, the closed form with ``xhat = (x - mean) * rstd`` and ``M`` values per group: per
  channel ``sum(dy)`` and ``sum(dy * xhat)`` (float64, one pass), then
  ``dx = rstd * (dy * weight[c] - sum(dy * weight) / M - xhat * sum(dy * weight * xhat) / M)``;
  ``dweight[c]`` / ``dbias[c]`` are those per-channel sums added over the samples.

``(sample, group)`` pairs are spread over OpenMP threads (the thread count of
``torch.set_num_threads`` / ``OMP_NUM_THREADS``). CPU and float32 only: :func:`group_norm_supported`
says whether a call can use the kernels; the GroupNorm layer keeps a Jittor-op formulation for CUDA
and other dtypes.
"""
from typing import Optional

from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32, per_channel_affine
from jt_mm_plugins.runtime import jt

# x: (N, C, S) float32 viewed as (N, G, C / G, S); mean / rstd: (N, G) float64.
_FORWARD_CPU_SRC = f'''
    const int N = in0_shape0, C = in0_shape1, S = in0_shape2;
    const int G = out1_shape1, CG = C / G;
    const float* x = in0_p;
    const float* weight = in1_p;
    const float* bias = in2_p;
    float* y = out0_p;
    float64* mean_out = out1_p;
    float64* rstd_out = out2_p;
    const double eps = data["eps"];
    const size_t M = (size_t)CG * S;
    #pragma omp parallel for schedule(static) if ((size_t)N * C * S >= {PARALLEL_MIN_NUMEL})
    for (int ng = 0; ng < N * G; ng++) {{
        const int g = ng % G;
        const float* xg = x + (size_t)ng * M;
        float* yg = y + (size_t)ng * M;
        // Four partial sums: a shorter dependency chain, same float64 accuracy.
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        size_t i = 0;
        for (; i + 4 <= M; i += 4) {{
            s0 += xg[i]; s1 += xg[i + 1]; s2 += xg[i + 2]; s3 += xg[i + 3];
        }}
        for (; i < M; i++) s0 += xg[i];
        const double mean = ((s0 + s1) + (s2 + s3)) / (double)M;
        s0 = s1 = s2 = s3 = 0;
        i = 0;
        for (; i + 4 <= M; i += 4) {{
            const double d0 = xg[i] - mean, d1 = xg[i + 1] - mean;
            const double d2 = xg[i + 2] - mean, d3 = xg[i + 3] - mean;
            s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
        }}
        for (; i < M; i++) {{
            const double d = xg[i] - mean;
            s0 += d * d;
        }}
        const double var = ((s0 + s1) + (s2 + s3)) / (double)M;
        const double rstd = 1.0 / sqrt(var + eps);
        for (int k = 0; k < CG; k++) {{
            const int c = g * CG + k;
            const double scale = rstd * weight[c];
            const double shift = bias[c];
            const float* xc = xg + (size_t)k * S;
            float* yc = yg + (size_t)k * S;
            for (int s = 0; s < S; s++) yc[s] = (float)((xc[s] - mean) * scale + shift);
        }}
        mean_out[ng] = mean;
        rstd_out[ng] = rstd;
    }}
'''

# in: x (N, C, S), dy (N, C, S), mean / rstd (N, G) float64, weight (C,);
# out: dx (N, C, S), dweight (C,), dbias (C,), per-sample channel sums (N, C) float64 x2.
_BACKWARD_CPU_SRC = f'''
    const int N = in0_shape0, C = in0_shape1, S = in0_shape2;
    const int G = in2_shape1, CG = C / G;
    const float* x = in0_p;
    const float* dy = in1_p;
    const float64* mean = in2_p;
    const float64* rstd = in3_p;
    const float* weight = in4_p;
    float* dx = out0_p;
    float* dweight = out1_p;
    float* dbias = out2_p;
    float64* sum_dy = out3_p;       // (N, C): sum over S of dy
    float64* sum_dy_xhat = out4_p;  // (N, C): sum over S of dy * xhat
    const size_t M = (size_t)CG * S;
    #pragma omp parallel for schedule(static) if ((size_t)N * C * S >= {PARALLEL_MIN_NUMEL})
    for (int ng = 0; ng < N * G; ng++) {{
        const int n = ng / G, g = ng % G;
        const double mean_g = mean[ng], rstd_g = rstd[ng];
        double group_dyw = 0, group_dyw_xhat = 0;
        for (int k = 0; k < CG; k++) {{
            const int c = g * CG + k;
            const size_t o = (size_t)ng * M + (size_t)k * S;
            double a0 = 0, a1 = 0, b0 = 0, b1 = 0;
            int s = 0;
            for (; s + 2 <= S; s += 2) {{
                const double g0 = dy[o + s], g1 = dy[o + s + 1];
                a0 += g0; a1 += g1;
                b0 += g0 * (x[o + s] - mean_g); b1 += g1 * (x[o + s + 1] - mean_g);
            }}
            for (; s < S; s++) {{
                const double g0 = dy[o + s];
                a0 += g0;
                b0 += g0 * (x[o + s] - mean_g);
            }}
            const double channel_dy = a0 + a1, channel_dy_xhat = (b0 + b1) * rstd_g;
            sum_dy[(size_t)n * C + c] = channel_dy;
            sum_dy_xhat[(size_t)n * C + c] = channel_dy_xhat;
            group_dyw += channel_dy * weight[c];
            group_dyw_xhat += channel_dy_xhat * weight[c];
        }}
        const double mean_dyw = group_dyw / (double)M;
        const double mean_dyw_xhat = group_dyw_xhat / (double)M;
        for (int k = 0; k < CG; k++) {{
            const int c = g * CG + k;
            const size_t o = (size_t)ng * M + (size_t)k * S;
            const double w = weight[c];
            for (int s = 0; s < S; s++) {{
                const double xhat = (x[o + s] - mean_g) * rstd_g;
                dx[o + s] = (float)(rstd_g * (dy[o + s] * w - mean_dyw - xhat * mean_dyw_xhat));
            }}
        }}
    }}
    for (int c = 0; c < C; c++) {{
        double db = 0, dw = 0;
        for (int n = 0; n < N; n++) {{
            db += sum_dy[(size_t)n * C + c];
            dw += sum_dy_xhat[(size_t)n * C + c];
        }}
        dweight[c] = (float)dw;
        dbias[c] = (float)db;
    }}
'''


def group_norm_supported(x: jt.Var) -> bool:
    """Whether :func:`group_norm` can normalise ``x`` (a non-empty float32 on CPU)."""
    return cpu_float32(x)


class _GroupNorm(jt.Function):
    """Normalise each (sample, group); gradients flow to the input, the weight and the bias."""

    def __init__(self, num_groups: int, eps: float) -> None:
        self.num_groups = int(num_groups)
        self.eps = float(eps)

    def execute(self, x: jt.Var, weight: jt.Var, bias: jt.Var) -> jt.Var:
        batch, channels = x.shape[0], x.shape[1]
        x3 = x.reshape(batch, channels, -1)
        stats_shape = (batch, self.num_groups)
        y, mean, rstd = jt.code(
            [x3.shape, stats_shape, stats_shape], ['float32', 'float64', 'float64'],
            [x3, weight, bias], cpu_src=_FORWARD_CPU_SRC, data={'eps': self.eps})
        self.saved = (x3, weight, mean, rstd, x.shape)
        return y.reshape(x.shape)

    def grad(self, grad_y: Optional[jt.Var]):
        if grad_y is None:
            return None, None, None
        x3, weight, mean, rstd, shape = self.saved
        batch, channels = x3.shape[0], x3.shape[1]
        grad_x, grad_weight, grad_bias, _, _ = jt.code(
            [x3.shape, weight.shape, weight.shape, (batch, channels), (batch, channels)],
            ['float32', 'float32', 'float32', 'float64', 'float64'],
            [x3, grad_y.reshape(x3.shape), mean, rstd, weight], cpu_src=_BACKWARD_CPU_SRC)
        return grad_x.reshape(shape), grad_weight, grad_bias


def group_norm(x: jt.Var,
               num_groups: int,
               weight: Optional[jt.Var] = None,
               bias: Optional[jt.Var] = None,
               eps: float = 1e-5) -> jt.Var:
    """Group-normalise ``x`` as ``torch.nn.functional.group_norm`` does.

    Args:
        x (jt.Var): Input of shape ``(N, C, ...)``, float32, on CPU, not empty.
        num_groups (int): Number of groups; ``C`` must be a multiple of it.
        weight (jt.Var, optional): Per-channel scale ``(C, )``; ``None`` for 1.
        bias (jt.Var, optional): Per-channel shift ``(C, )``; ``None`` for 0.
        eps (float): Added to the variance. Defaults to 1e-5.

    Returns:
        jt.Var: The normalised output, shape of ``x``.
    """
    if x.ndim < 2:
        raise ValueError(f'group_norm expects an (N, C, ...) input, got shape {tuple(x.shape)}')
    channels = x.shape[1]
    if num_groups <= 0 or channels % num_groups != 0:
        raise ValueError(f'group_norm: the input\'s {channels} channels (shape {tuple(x.shape)}) '
                         f'are not a multiple of num_groups={num_groups}')
    if not group_norm_supported(x):
        raise ValueError('group_norm runs on non-empty float32 on CPU only, got '
                         f'dtype={x.dtype}, shape={tuple(x.shape)}, use_cuda={jt.flags.use_cuda}')
    weight, bias = per_channel_affine('group_norm', x, weight, bias)
    return _GroupNorm(num_groups, eps)(x, weight, bias)
