"""1x1 convolution (stride 1, no padding, one group) as matrix products: multi-threaded CPU kernels.

For each image ``n`` the convolution is ``Y[n] = W @ X[n]`` with ``W`` the ``(C_out, C_in)`` weight and
``X[n]`` the ``(C_in, H*W)`` input, both in their plain row-major layouts; the gradients are
``dX[n] = W^T @ dY[n]`` and ``dW = sum_n dY[n] @ X[n]^T``. These kernels call oneDNN's ``sgemm``
(multi-threaded over the OpenMP threads) on the tensors as they lie. Jittor's oneDNN convolution
reorders input, weight and output to blocked layouts around every call instead; for the 1x1 convolutions
of an FPN or a ResNet bottleneck the products are faster (``tools/benchmark.py``, README "Benchmarks").

Float32 on CPU with oneDNN only (:func:`conv1x1_supported`); callers keep ``jt.nn.conv2d`` elsewhere.
"""
from jt_mm_plugins import runtime
from jt_mm_plugins.ops.cpu_kernels import cpu_float32
from jt_mm_plugins.runtime import jt

_HEADER = '#include <dnnl.h>'


def _weight_times_each_image_src(transpose_weight: bool) -> str:
    """``out0[n] = W @ in0[n]`` (forward: x in, y out) or ``W^T @ in0[n]`` (input gradient: dy in,
    dx out) for every image ``n``; ``in1`` is the ``(C_out, C_in)`` weight ``W``, images are
    ``(channels, S)`` row-major."""
    return f'''
    const int N = in0_shape0, K = in0_shape1, S = in0_shape2, M = out0_shape1, Cin = in1_shape1;
    for (int n = 0; n < N; n++) {{
        dnnl_status_t status = dnnl_sgemm('{"T" if transpose_weight else "N"}', 'N', M, S, K, 1.f,
                                          in1_p, Cin, in0_p + (size_t)n * K * S, S, 0.f,
                                          out0_p + (size_t)n * M * S, S);
        ASSERTop(status,==,dnnl_success);
    }}
'''


_FORWARD_CPU_SRC = _weight_times_each_image_src(transpose_weight=False)
_INPUT_GRAD_CPU_SRC = _weight_times_each_image_src(transpose_weight=True)

# in0: dy (N, Cout, S), in1: x (N, Cin, S); out0: dw (Cout, Cin)
_WEIGHT_GRAD_CPU_SRC = '''
    const int N = in0_shape0, Cout = in0_shape1, S = in0_shape2, Cin = in1_shape1;
    for (int n = 0; n < N; n++) {
        dnnl_status_t status = dnnl_sgemm('N', 'T', Cout, Cin, S, 1.f,
                                          in0_p + (size_t)n * Cout * S, S,
                                          in1_p + (size_t)n * Cin * S, S, n ? 1.f : 0.f,
                                          out0_p, Cin);
        ASSERTop(status,==,dnnl_success);
    }
'''


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def conv1x1_supported(x: jt.Var, weight: jt.Var, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                      groups: int = 1) -> bool:
    """Whether :func:`conv1x1` computes ``jt.nn.conv2d(x, weight, None, stride, padding, dilation,
    groups)``: a 1x1 kernel, stride 1, no padding, one group, float32 on CPU, with oneDNN (whose
    ``sgemm`` the kernels call) loaded."""
    return (runtime.onednn_active and x.ndim == 4 and weight.ndim == 4
            and tuple(weight.shape[2:]) == (1, 1) and _pair(stride) == (1, 1)
            and _pair(padding) == (0, 0) and _pair(dilation) == (1, 1)
            and groups == 1 and x.shape[1] == weight.shape[1] and cpu_float32(x, weight))


class _Conv1x1(jt.Function):

    def execute(self, x: jt.Var, weight: jt.Var) -> jt.Var:
        n, c_in, h, w = x.shape
        c_out = weight.shape[0]
        self.x_shape = x.shape
        self.x = x.reshape(n, c_in, h * w)
        self.weight = weight.reshape(c_out, c_in)
        y = jt.code((n, c_out, h * w), 'float32', [self.x, self.weight], cpu_header=_HEADER,
                    cpu_src=_FORWARD_CPU_SRC)
        return y.reshape(n, c_out, h, w)

    def grad(self, grad_y: jt.Var):
        n, c_in, s = self.x.shape
        c_out = self.weight.shape[0]
        grad_y = grad_y.float32().reshape(n, c_out, s)
        grad_x = jt.code((n, c_in, s), 'float32', [grad_y, self.weight], cpu_header=_HEADER,
                         cpu_src=_INPUT_GRAD_CPU_SRC)
        grad_w = jt.code((c_out, c_in), 'float32', [grad_y, self.x], cpu_header=_HEADER,
                         cpu_src=_WEIGHT_GRAD_CPU_SRC)
        return grad_x.reshape(self.x_shape), grad_w.reshape(c_out, c_in, 1, 1)


def conv1x1(x: jt.Var, weight: jt.Var) -> jt.Var:
    """``jt.nn.conv2d(x, weight)`` for a ``(C_out, C_in, 1, 1)`` weight (stride 1, no padding), when
    :func:`conv1x1_supported` says so."""
    if not conv1x1_supported(x, weight):
        raise ValueError(f'conv1x1 takes a float32 (N, C_in, H, W) input and a (C_out, C_in, 1, 1) '
                         f'weight on CPU, got {tuple(x.shape)} {x.dtype} and '
                         f'{tuple(weight.shape)} {weight.dtype} (use_cuda={jt.flags.use_cuda}, '
                         f'oneDNN={runtime.onednn_active})')
    return _Conv1x1.apply(x, weight)
