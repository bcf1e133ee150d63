"""Training-mode batch normalisation as two fused CPU kernels (forward, backward), in Jittor.

Batch normalisation (`Ioffe & Szegedy, 2015 <https://arxiv.org/abs/1502.03167>`_) written with
Jittor's element-wise and reduction ops and differentiated by Jittor's autograd costs several
reductions and broadcasts per layer: on CPU it was 2-5x slower than ``torch.nn.BatchNorm2d`` and
made a Jittor ResNet-50 training step 20-60% slower than PyTorch's. These kernels compute the same
result one channel at a time, the way PyTorch's CPU kernel does:

* forward: the batch mean, then the biased variance of the centred input (two passes), then
  ``y = x * alpha + beta`` with ``alpha = weight * invstd`` and ``beta = bias - mean * alpha``,
  all in float32 as PyTorch rounds them. The two sums accumulate in float32 (vectorised), as the
  Jittor reductions they replace did (a pre-ReLU value within rounding of zero takes whichever sign
  the rounding gives; the alignment tests accept agreement with either precision there, see
  tests/test_resnet.py);
* backward: ``sum(dy)`` and ``sum(dy * (x - mean))`` in float64 in one pass, then
  ``dx = (dy - sum(dy) / M - (x - mean) * sum(dy * (x - mean)) * invstd^2 / M) * invstd * weight``,
  ``dweight = sum(dy * (x - mean)) * invstd`` and ``dbias = sum(dy)``, with ``M`` the number of
  values per channel.

Channels are spread over OpenMP threads (the thread count of ``torch.set_num_threads`` /
``OMP_NUM_THREADS``). CPU and float32 only: :func:`batch_norm_train_supported` says whether a call
can use the kernels; callers keep a Jittor-op formulation for CUDA and other dtypes.
"""
from typing import Optional, Tuple

from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, per_channel_affine
from jt_mm_plugins.runtime import jt

_FORWARD_CPU_SRC = f'''
    const int N = in0_shape0, C = in0_shape1, S = in0_shape2;
    const float* x = in0_p;
    const float* weight = in1_p;
    const float* bias = in2_p;
    float* y = out0_p;
    float* mean_out = out1_p;
    float* var_out = out2_p;
    float* invstd_out = out3_p;
    const double eps = data["eps"];
    const double count = (double)N * S;
    #pragma omp parallel for schedule(static) if ((size_t)N * C * S >= {PARALLEL_MIN_NUMEL})
    for (int c = 0; c < C; c++) {{
        float sum = 0;
        for (int n = 0; n < N; n++) {{
            const float* xc = x + ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++) sum += xc[s];
        }}
        // mean, invstd, alpha and beta are float32, as in PyTorch's CPU kernel, so the output
        // rounds like PyTorch's (a following ReLU then agrees on values within rounding of zero).
        const float mean = (float)(sum / count);
        float squares = 0;
        for (int n = 0; n < N; n++) {{
            const float* xc = x + ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++) {{
                const float d = xc[s] - mean;
                squares += d * d;
            }}
        }}
        const double var = squares / count;
        const float invstd = (float)(1.0 / sqrt(var + eps));
        const float alpha = invstd * weight[c];
        const float beta = bias[c] - mean * alpha;
        for (int n = 0; n < N; n++) {{
            const float* xc = x + ((size_t)n * C + c) * S;
            float* yc = y + ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++) yc[s] = xc[s] * alpha + beta;
        }}
        mean_out[c] = mean;
        var_out[c] = (float)var;
        invstd_out[c] = invstd;
    }}
'''

_BACKWARD_CPU_SRC = f'''
    const int N = in0_shape0, C = in0_shape1, S = in0_shape2;
    const float* x = in0_p;
    const float* dy = in1_p;
    const float* mean = in2_p;
    const float* invstd = in3_p;
    const float* weight = in4_p;
    float* dx = out0_p;
    float* dweight = out1_p;
    float* dbias = out2_p;
    const double count = (double)N * S;
    #pragma omp parallel for schedule(static) if ((size_t)N * C * S >= {PARALLEL_MIN_NUMEL})
    for (int c = 0; c < C; c++) {{
        const double mean_c = mean[c];
        double sum_dy = 0, sum_dy_xmu = 0;
        for (int n = 0; n < N; n++) {{
            const size_t o = ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++) {{
                const double g = dy[o + s];
                sum_dy += g;
                sum_dy_xmu += g * (x[o + s] - mean_c);
            }}
        }}
        const double invstd_c = invstd[c];
        dweight[c] = (float)(sum_dy_xmu * invstd_c);
        dbias[c] = (float)sum_dy;
        const float k = (float)(sum_dy_xmu * invstd_c * invstd_c / count);
        const float mean_dy = (float)(sum_dy / count);
        const float scale = (float)(invstd_c * weight[c]);
        const float mean_f = (float)mean_c;
        for (int n = 0; n < N; n++) {{
            const size_t o = ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++)
                dx[o + s] = (dy[o + s] - mean_dy - (x[o + s] - mean_f) * k) * scale;
        }}
    }}
'''


def batch_norm_train_supported(x: jt.Var) -> bool:
    """Whether :func:`batch_norm_train` can normalise ``x`` (float32 on CPU)."""
    return not jt.flags.use_cuda and x.dtype == 'float32'


class _BatchNormTrain(jt.Function):
    """Normalise with batch statistics; gradients flow to the input, the weight and the bias."""

    def __init__(self, eps: float) -> None:
        self.eps = float(eps)

    def execute(self, x: jt.Var, weight: jt.Var, bias: jt.Var) -> Tuple[jt.Var, jt.Var, jt.Var]:
        channels = x.shape[1]
        x3 = x.reshape(x.shape[0], channels, -1)
        y, mean, var, invstd = jt.code(
            [x3.shape, (channels, ), (channels, ), (channels, )], ['float32'] * 4,
            [x3, weight, bias], cpu_src=_FORWARD_CPU_SRC, data={'eps': self.eps})
        self.saved = (x3, weight, mean, invstd, x.shape)
        return y.reshape(x.shape), mean, var

    def grad(self, grad_y: Optional[jt.Var], grad_mean: Optional[jt.Var] = None,
             grad_var: Optional[jt.Var] = None):
        if grad_mean is not None or grad_var is not None:
            raise NotImplementedError(
                'batch_norm_train: the batch mean and variance it returns are statistics for the '
                'running averages; back-propagating through them is not supported (detach them).')
        if grad_y is None:
            return None, None, None
        x3, weight, mean, invstd, shape = self.saved
        grad_x, grad_weight, grad_bias = jt.code(
            [x3.shape, weight.shape, weight.shape], ['float32'] * 3,
            [x3, grad_y.reshape(x3.shape), mean, invstd, weight], cpu_src=_BACKWARD_CPU_SRC)
        return grad_x.reshape(shape), grad_weight, grad_bias


def batch_norm_train(x: jt.Var,
                     weight: Optional[jt.Var],
                     bias: Optional[jt.Var],
                     eps: float = 1e-5) -> Tuple[jt.Var, jt.Var, jt.Var]:
    """Batch-normalise ``x`` with its own statistics, as ``torch.nn.functional.batch_norm`` with
    ``training=True`` computes its output.

    Args:
        x (jt.Var): Input of shape ``(N, C, ...)``, float32, on CPU.
        weight (jt.Var, optional): Per-channel scale ``(C, )``; ``None`` for 1.
        bias (jt.Var, optional): Per-channel shift ``(C, )``; ``None`` for 0.
        eps (float): Added to the variance. Defaults to 1e-5.

    Returns:
        tuple[jt.Var]: The normalised output (shape of ``x``), and the batch mean and the biased
        batch variance ``(C, )`` (for the running averages; do not differentiate them).
    """
    if x.ndim < 2:
        raise ValueError('batch_norm_train expects an (N, C, ...) input, got shape '
                         f'{tuple(x.shape)}')
    if not batch_norm_train_supported(x):
        raise ValueError('batch_norm_train runs float32 on CPU only, got '
                         f'dtype={x.dtype}, use_cuda={jt.flags.use_cuda}')
    weight, bias = per_channel_affine('batch_norm_train', x, weight, bias)
    return _BatchNormTrain(eps)(x, weight, bias)
