"""ReLU as a multi-threaded CPU kernel (forward and backward), in Jittor.

Jittor compiles its fused element-wise ops into single-threaded loops on CPU, while PyTorch spreads
them over its threads; in a ResNet-50 training step the ReLUs (forward, and the masking of the
gradient) were the largest element-wise cost in Jittor's profile. These kernels split them over the
OpenMP threads (``torch.set_num_threads`` / ``OMP_NUM_THREADS``): ``tools/benchmark.py resnet`` went
from 1.12x to 0.97x PyTorch's step on the 2-core CI machine (README, "Benchmarks").

Same values and gradients as ``torch.relu``: ``y = max(x, 0)``, NaN stays NaN (``jt.nn.relu`` turns
it into 0, which would hide a diverged step from the loss); ``dx = 0`` where ``y <= 0``, else ``dy``
(the gradient at 0 is 0; at NaN it is ``dy``, as in PyTorch). Float32 on CPU only:
anything else goes to ``jt.nn.relu``, which Jittor fuses with its neighbours.
"""
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32
from jt_mm_plugins.runtime import jt

_FORWARD_CPU_SRC = f'''
    const size_t n = in0->num;
    const float* x = in0_p;
    float* y = out0_p;
    #pragma omp parallel for schedule(static) if (n >= {PARALLEL_MIN_NUMEL})
    for (size_t i = 0; i < n; i++) {{
        // Zero where the sign bit is set unless x is NaN, which passes through as in torch.relu.
        // Tested on the bits: Jittor compiles with -Ofast, under which x != x may fold to false.
        uint32_t bits;
        memcpy(&bits, x + i, sizeof(bits));
        const bool negative_number = (bits >> 31) && (bits & 0x7fffffffu) <= 0x7f800000u;
        y[i] = negative_number ? 0.0f : x[i];
    }}
'''

_BACKWARD_CPU_SRC = f'''
    const size_t n = in0->num;
    const float* y = in0_p;
    const float* dy = in1_p;
    float* dx = out0_p;
    #pragma omp parallel for schedule(static) if (n >= {PARALLEL_MIN_NUMEL})
    for (size_t i = 0; i < n; i++) {{
        // torch masks where y <= 0, so NaN passes its gradient; NaN tested on the bits (-Ofast).
        uint32_t bits;
        memcpy(&bits, y + i, sizeof(bits));
        const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
        dx[i] = (nan || y[i] > 0) ? dy[i] : 0.0f;
    }}
'''


class _ReLU(jt.Function):

    def execute(self, x: jt.Var) -> jt.Var:
        y = jt.code(x.shape, 'float32', [x], cpu_src=_FORWARD_CPU_SRC)
        self.y = y  # y > 0 exactly where x > 0
        return y

    def grad(self, grad_y: jt.Var) -> jt.Var:
        return jt.code(grad_y.shape, 'float32', [self.y, grad_y.float32()],
                       cpu_src=_BACKWARD_CPU_SRC)


def relu(x: jt.Var) -> jt.Var:
    """``max(x, 0)``: the multi-threaded kernels for non-empty float32 on CPU, else
    ``jt.nn.relu``."""
    if not cpu_float32(x):
        return jt.nn.relu(x)
    return _ReLU.apply(x)
