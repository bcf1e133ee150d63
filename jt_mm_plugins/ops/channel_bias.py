"""Per-channel bias addition ``y[n, c, ...] = x[n, c, ...] + bias[c]`` as multi-threaded CPU kernels.

A convolution's bias is this addition after the (oneDNN) convolution. Jittor writes it, and the
bias gradient ``sum over n and the spatial positions of dy[n, c, ...]``, as single-threaded loops on
CPU: in ``tools/benchmark.py fpn --profile-jittor`` the bias-gradient reductions alone were 45 ms of
a 2.4 s FPN step. These kernels spread the planes (forward) and the channels (bias gradient) over the
OpenMP threads. The input gradient is ``dy`` itself (no copy).

Values: the forward is one float32 addition, as everywhere. The bias gradient accumulates each
channel in float64, then rounds to float32 (PyTorch's float32 sums differ from it by rounding only).
CPU and float32 only: anything else is Jittor's broadcast addition.
"""
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32
from jt_mm_plugins.runtime import jt

# in0: x viewed as (N, C, S); in1: bias (C,)
_FORWARD_CPU_SRC = f'''
    const size_t N = in0_shape0, C = in0_shape1, S = in0_shape2;
    const float* x = in0_p;
    const float* bias = in1_p;
    float* y = out0_p;
    #pragma omp parallel for schedule(static) if (N * C * S >= {PARALLEL_MIN_NUMEL})
    for (size_t plane = 0; plane < N * C; plane++) {{
        const float b = bias[plane % C];
        const float* xp = x + plane * S;
        float* yp = y + plane * S;
        for (size_t s = 0; s < S; s++) yp[s] = xp[s] + b;
    }}
'''

# in0: dy viewed as (N, C, S); out0: dbias (C,)
_BIAS_GRAD_CPU_SRC = f'''
    const size_t N = in0_shape0, C = in0_shape1, S = in0_shape2;
    const float* dy = in0_p;
    float* dbias = out0_p;
    #pragma omp parallel for schedule(static) if (N * C * S >= {PARALLEL_MIN_NUMEL})
    for (size_t c = 0; c < C; c++) {{
        double sum = 0;
        for (size_t n = 0; n < N; n++) {{
            const float* dyp = dy + (n * C + c) * S;
            for (size_t s = 0; s < S; s++) sum += dyp[s];
        }}
        dbias[c] = (float)sum;
    }}
'''


class _AddChannelBias(jt.Function):

    def execute(self, x: jt.Var, bias: jt.Var) -> jt.Var:
        self.planes = (x.shape[0], x.shape[1], x.numel() // (x.shape[0] * x.shape[1]))
        y = jt.code(self.planes, 'float32', [x.reshape(self.planes), bias],
                    cpu_src=_FORWARD_CPU_SRC)
        return y.reshape(x.shape)

    def grad(self, grad_y: jt.Var):
        grad_y = grad_y.float32()
        grad_bias = jt.code((self.planes[1], ), 'float32', [grad_y.reshape(self.planes)],
                            cpu_src=_BIAS_GRAD_CPU_SRC)
        return grad_y, grad_bias


def add_channel_bias(x: jt.Var, bias: jt.Var) -> jt.Var:
    """``x + bias`` broadcast over dimension 1 of ``x`` (shape ``(N, C, ...)``, ``bias`` ``(C,)``):
    the multi-threaded kernels for float32 on CPU, else Jittor's broadcast addition."""
    if x.ndim < 2 or tuple(bias.shape) != (x.shape[1], ):
        raise ValueError(f'add_channel_bias: bias of shape {tuple(bias.shape)} does not match the '
                         f'channels of an input of shape {tuple(x.shape)} (expected '
                         f'({x.shape[1] if x.ndim >= 2 else "?"},))')
    if not cpu_float32(x, bias):
        return x + bias.broadcast(x.shape, [d for d in range(x.ndim) if d != 1])
    return _AddChannelBias.apply(x, bias)
