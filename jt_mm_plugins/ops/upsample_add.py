"""``fine + nearest_upsample_x2(coarse)``, an FPN top-down step, as multi-threaded CPU kernels.

mmdet's FPN adds each coarser level, upsampled by nearest neighbour, to the next finer lateral.
Written with Jittor's reindex ops this is single-threaded on CPU, and its backward (each coarse pixel
gathers the gradient of the 2x2 block it was copied to) a scattered ``reindex_reduce``: together
~50 ms of a 2.4 s FPN step in ``tools/benchmark.py fpn --profile-jittor``. These kernels spread the
planes over the OpenMP threads.

Only the exact factor 2 in both directions, where ``torch.nn.functional.interpolate(mode='nearest')``
reads source pixel ``(i // 2, j // 2)``. Values equal PyTorch's: the forward is one float32 addition;
the coarse gradient sums its block's four values in PyTorch's order (row by row, from zero, in
float32). CPU and float32 only; :func:`upsample_x2_add_supported` says whether a call can use it.
"""
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32
from jt_mm_plugins.runtime import jt

# in0: coarse (P, h, w), in1: fine (P, 2h, 2w); out0: (P, 2h, 2w)
_FORWARD_CPU_SRC = f'''
    const size_t P = in0_shape0, h = in0_shape1, w = in0_shape2;
    const float* coarse = in0_p;
    const float* fine = in1_p;
    float* result = out0_p;
    #pragma omp parallel for schedule(static) if (P * h * w * 4 >= {PARALLEL_MIN_NUMEL})
    for (size_t row = 0; row < P * 2 * h; row++) {{
        // output row `row` of all planes reads coarse row (row / 2) of its plane
        const float* src = coarse + (row / 2) * w;
        const float* f = fine + row * 2 * w;
        float* o = result + row * 2 * w;
        for (size_t j = 0; j < 2 * w; j++) o[j] = f[j] + src[j / 2];
    }}
'''

# in0: d_out (P, 2h, 2w); out0: d_coarse (P, h, w)
_COARSE_GRAD_CPU_SRC = f'''
    const size_t P = out0_shape0, h = out0_shape1, w = out0_shape2;
    const float* dy = in0_p;
    float* dc = out0_p;
    // Jittor compiles with -Ofast, which may reassociate float additions; an empty asm statement
    // makes a partial sum a value the compiler must keep (in a vector register on x86).
    #if defined(__x86_64__) || defined(__i386__)
    #define KEEP_PARTIAL_SUM(v) __asm__("" : "+x"(v))
    #else
    #define KEEP_PARTIAL_SUM(v) __asm__("" : "+m"(v))
    #endif
    #pragma omp parallel for schedule(static) if (P * h * w * 4 >= {PARALLEL_MIN_NUMEL})
    for (size_t row = 0; row < P * h; row++) {{
        const float* top = dy + row * 4 * w;
        const float* bottom = top + 2 * w;
        float* d = dc + row * w;
        for (size_t j = 0; j < w; j++) {{
            // PyTorch's order: ((a + b) + c) + d
            float sum = top[2 * j] + top[2 * j + 1];
            KEEP_PARTIAL_SUM(sum);
            sum += bottom[2 * j];
            KEEP_PARTIAL_SUM(sum);
            d[j] = sum + bottom[2 * j + 1];
        }}
    }}
'''


def upsample_x2_add_supported(coarse: jt.Var, fine: jt.Var) -> bool:
    """Whether :func:`upsample_x2_add` applies: ``(N, C, h, w)`` and ``(N, C, 2h, 2w)`` float32
    Vars on CPU."""
    return (coarse.ndim == 4 and fine.ndim == 4 and cpu_float32(coarse, fine)
            and tuple(fine.shape) == (coarse.shape[0], coarse.shape[1], 2 * coarse.shape[2],
                                      2 * coarse.shape[3]))


class _UpsampleX2Add(jt.Function):

    def execute(self, coarse: jt.Var, fine: jt.Var) -> jt.Var:
        n, c, h, w = coarse.shape
        self.coarse_shape = coarse.shape
        out = jt.code((n * c, 2 * h, 2 * w), 'float32',
                      [coarse.reshape(n * c, h, w), fine.reshape(n * c, 2 * h, 2 * w)],
                      cpu_src=_FORWARD_CPU_SRC)
        return out.reshape(fine.shape)

    def grad(self, grad_out: jt.Var):
        n, c, h, w = self.coarse_shape
        grad_out = grad_out.float32()
        grad_coarse = jt.code((n * c, h, w), 'float32', [grad_out.reshape(n * c, 2 * h, 2 * w)],
                              cpu_src=_COARSE_GRAD_CPU_SRC)
        return grad_coarse.reshape(self.coarse_shape), grad_out


def upsample_x2_add(coarse: jt.Var, fine: jt.Var) -> jt.Var:
    """``fine + interpolate(coarse, scale_factor=2, mode='nearest')`` for ``coarse`` of shape
    ``(N, C, h, w)`` and ``fine`` of shape ``(N, C, 2h, 2w)``, float32 on CPU."""
    if not upsample_x2_add_supported(coarse, fine):
        raise ValueError(
            'upsample_x2_add takes float32 (N, C, h, w) and (N, C, 2h, 2w) Vars on CPU, got '
            f'{tuple(coarse.shape)} {coarse.dtype} and {tuple(fine.shape)} {fine.dtype} '
            f'(use_cuda={jt.flags.use_cuda})')
    return _UpsampleX2Add.apply(coarse, fine)
