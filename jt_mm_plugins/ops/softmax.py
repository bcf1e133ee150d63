"""Softmax over the last dimension as multi-threaded CPU kernels (forward and backward), in Jittor.

On CPU ``jt.nn.softmax`` is a max reduction, a subtraction, an exponential, a sum reduction and a
division, each a single-threaded pass over the input (and its backward as many again, keeping the
intermediates for it). In DETR's attention these passes run over ``batch * heads x L x S`` logits
(14.4M for two images of DETR R50's encoder, per layer). These kernels do one row per iteration,
rows split over the OpenMP threads (``torch.set_num_threads`` / ``OMP_NUM_THREADS``):
``y = exp(x - max) / sum(exp(x - max))`` in two passes over the row, and the gradient
``dx = y * (dy - sum(dy * y))``; only ``y`` is kept for the backward.

Same values as ``torch.softmax`` for rows holding ``-inf`` (masked keys: weight 0, gradient 0),
except that weights below ``exp(-87)`` of the row's largest (< 1.7e-38, where torch keeps a tiny
or denormal value) are 0. Float32 on CPU only; anything else goes to ``jt.nn.softmax``.
"""
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32
from jt_mm_plugins.runtime import jt

_HEADER = '#include <cmath>'

_FORWARD_CPU_SRC = f'''
    const size_t rows = in0_shape0;
    const int C = in0_shape1;
    #pragma omp parallel for schedule(static) if (in0->num >= {PARALLEL_MIN_NUMEL})
    for (size_t r = 0; r < rows; r++) {{
        const float* x = in0_p + r * C;
        float* y = out0_p + r * C;
        float top = x[0];
        for (int c = 1; c < C; c++) top = x[c] > top ? x[c] : top;
        float total = 0.f;
        for (int c = 0; c < C; c++) {{
            // Below -87 exp is under FLT_MIN (1.2e-38): 0. The clamp keeps -inf (masked keys) out
            // of the vectorised exp, whose special-value path made the loop 4x slower.
            const float d = x[c] - top;
            const float e = d < -87.f ? 0.f : std::exp(d < -87.f ? -87.f : d);
            y[c] = e;
            total += e;
        }}
        const float scale = 1.f / total;
        for (int c = 0; c < C; c++) y[c] *= scale;
    }}
'''

_BACKWARD_CPU_SRC = f'''
    const size_t rows = in0_shape0;
    const int C = in0_shape1;
    #pragma omp parallel for schedule(static) if (in0->num >= {PARALLEL_MIN_NUMEL})
    for (size_t r = 0; r < rows; r++) {{
        const float* y = in0_p + r * C;
        const float* dy = in1_p + r * C;
        float* dx = out0_p + r * C;
        float dot = 0.f;
        for (int c = 0; c < C; c++) dot += dy[c] * y[c];
        for (int c = 0; c < C; c++) dx[c] = y[c] * (dy[c] - dot);
    }}
'''


class _Softmax(jt.Function):

    def execute(self, x: jt.Var) -> jt.Var:
        self.shape = x.shape
        self.y = jt.code(x.shape, 'float32', [x.reshape(-1, x.shape[-1])], cpu_header=_HEADER,
                         cpu_src=_FORWARD_CPU_SRC).reshape(x.shape)
        return self.y

    def grad(self, grad_y: jt.Var) -> jt.Var:
        columns = self.shape[-1]
        return jt.code(self.shape, 'float32', [self.y.reshape(-1, columns),
                                               grad_y.float32().reshape(-1, columns)],
                       cpu_header=_HEADER, cpu_src=_BACKWARD_CPU_SRC)


def softmax_last_dim(x: jt.Var) -> jt.Var:
    """``jt.nn.softmax(x, dim=-1)``: the multi-threaded kernels for non-empty float32 on CPU,
    else Jittor's."""
    if not cpu_float32(x) or x.ndim == 0:
        return jt.nn.softmax(x, dim=-1)
    return _Softmax.apply(x)
