"""ReLU as a multi-threaded CPU kernel (forward and backward), in Jittor.

Jittor compiles its fused element-wise ops into single-threaded loops on CPU, while PyTorch spreads
them over its threads; in a ResNet-50 training step the ReLUs (forward, and the masking of the
gradient) were the largest element-wise cost in Jittor's profile. These kernels split them over the
OpenMP threads (``torch.set_num_threads`` / ``OMP_NUM_THREADS``): ``tools/benchmark.py resnet`` went
from 1.12x to 0.97x PyTorch's step on the 2-core CI machine (README, "Benchmarks").

Same values and gradients as ``jt.nn.relu`` / ``torch.relu``: ``y = max(x, 0)``; ``dx = dy`` where
``y > 0`` (``x > 0``), else 0 (the gradient at 0 is 0, as in PyTorch). Float32 on CPU only:
anything else goes to ``jt.nn.relu``, which Jittor fuses with its neighbours.
"""
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32
from jt_mm_plugins.runtime import jt

_FORWARD_CPU_SRC = f'''
    const size_t n = in0->num;
    const float* x = in0_p;
    float* y = out0_p;
    #pragma omp parallel for schedule(static) if (n >= {PARALLEL_MIN_NUMEL})
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
'''

_BACKWARD_CPU_SRC = f'''
    const size_t n = in0->num;
    const float* y = in0_p;
    const float* dy = in1_p;
    float* dx = out0_p;
    #pragma omp parallel for schedule(static) if (n >= {PARALLEL_MIN_NUMEL})
    for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0.0f;
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
