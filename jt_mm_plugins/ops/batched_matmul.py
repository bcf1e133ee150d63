"""Batched matrix product ``op(A[n]) @ op(B[n])`` (``op``: identity or transpose), CPU, oneDNN.

On CPU Jittor computes a batched ``jt.matmul`` as a broadcast multiply followed by a sum reduction,
a single-threaded loop over ``batch x M x N x K`` that does not block for the cache. In DETR's
attention (``q @ k^T``, ``attn @ v``: 16 products of 950 x 950 x 32 for two images of DETR R50's
encoder) those loops took most of a training step (README "DETR"). This op calls oneDNN's ``sgemm``
once per batch entry on the operands as they lie, the transposes passed as ``sgemm``'s flags instead
of copies; the batch is split over the OpenMP threads (``torch.set_num_threads`` /
``OMP_NUM_THREADS``) when it has at least as many entries as threads, else each ``sgemm`` uses the
threads itself. The gradients are two more such products (their transposes chosen so that nothing is
copied): for ``C = op_a(A) @ op_b(B)`` and upstream ``G``,

* ``A @ B``:     ``dA = G @ B^T``,     ``dB = A^T @ G``
* ``A @ B^T``:   ``dA = G @ B``,       ``dB = G^T @ A``
* ``A^T @ B``:   ``dA = B @ G^T``,     ``dB = A @ G``
* ``A^T @ B^T``: ``dA = B^T @ G^T``,   ``dB = G^T @ A^T``

Float32 on CPU with oneDNN loaded only (:func:`batched_matmul_supported`); elsewhere (CUDA, float64,
empty operands) :func:`batched_matmul` computes the same product with ``jt.matmul``.
"""
from jt_mm_plugins import runtime
from jt_mm_plugins.ops.cpu_kernels import PARALLEL_MIN_NUMEL, cpu_float32
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

_HEADER = '#include <dnnl.h>\n#include <omp.h>'


def _sgemm_each_entry_src(transpose_a: bool, transpose_b: bool) -> str:
    """``out0[n] = op(in0[n]) @ op(in1[n])`` for every ``n`` of ``(batch, rows, cols)`` row-major
    operands."""
    k = 'in0_shape1' if transpose_a else 'in0_shape2'
    return f'''
    const int B = out0_shape0, M = out0_shape1, N = out0_shape2, K = {k};
    const int lda = in0_shape2, ldb = in1_shape2;
    const size_t stride_a = (size_t)in0_shape1 * in0_shape2;
    const size_t stride_b = (size_t)in1_shape1 * in1_shape2, stride_c = (size_t)M * N;
    // One sgemm per thread when the batch can keep every thread busy (and the work pays for a
    // parallel region; inside it oneDNN runs single-threaded), else sgemm's own threads.
    const bool split = B > 1 && B >= omp_get_max_threads()
                       && (size_t)B * M * N * K >= {PARALLEL_MIN_NUMEL};
    int failed = 0;
    #pragma omp parallel for schedule(static) reduction(|:failed) if (split)
    for (int n = 0; n < B; n++) {{
        dnnl_status_t status = dnnl_sgemm('{"T" if transpose_a else "N"}',
                                          '{"T" if transpose_b else "N"}', M, N, K, 1.f,
                                          in0_p + n * stride_a, lda, in1_p + n * stride_b, ldb,
                                          0.f, out0_p + n * stride_c, N);
        failed |= status != dnnl_success;
    }}
    ASSERTop(failed,==,0);
'''


_SRC = {(ta, tb): _sgemm_each_entry_src(ta, tb) for ta in (False, True) for tb in (False, True)}


def _dims(a: jt.Var, b: jt.Var, transpose_a: bool, transpose_b: bool):
    """``(batch shape, M, K, N)`` of ``op(a) @ op(b)``; ``InputError`` naming both shapes if the
    operands do not multiply."""
    if a.ndim < 2 or b.ndim < 2 or a.ndim != b.ndim or tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        raise InputError(f'batched_matmul: operands must have the same batch dimensions and at '
                         f'least 2 dims, got {tuple(a.shape)} and {tuple(b.shape)}')
    m, k = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
    k_b, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
    if k != k_b:
        raise InputError(f'batched_matmul: inner dimensions differ: {tuple(a.shape)}'
                         f'{"^T" if transpose_a else ""} @ {tuple(b.shape)}'
                         f'{"^T" if transpose_b else ""} ({k} vs {k_b})')
    return tuple(a.shape[:-2]), m, k, n


def batched_matmul_supported(a: jt.Var, b: jt.Var) -> bool:
    """Whether :func:`batched_matmul` runs the oneDNN kernels: non-empty float32 operands on CPU,
    with oneDNN (whose ``sgemm`` the kernels call) loaded."""
    return runtime.onednn_active and cpu_float32(a, b)


def _sgemm(a: jt.Var, b: jt.Var, transpose_a: bool, transpose_b: bool) -> jt.Var:
    """The kernel on ``(batch, rows, cols)`` float32 operands."""
    m = a.shape[2] if transpose_a else a.shape[1]
    n = b.shape[1] if transpose_b else b.shape[2]
    return jt.code((a.shape[0], m, n), 'float32', [a, b], cpu_header=_HEADER,
                   cpu_src=_SRC[transpose_a, transpose_b])


class _BatchedMatmul(jt.Function):

    def execute(self, a: jt.Var, b: jt.Var, transpose_a: bool, transpose_b: bool) -> jt.Var:
        self.a, self.b = a, b
        self.transpose_a, self.transpose_b = transpose_a, transpose_b
        return _sgemm(a, b, transpose_a, transpose_b)

    def grad(self, grad_c: jt.Var):
        a, b, g = self.a, self.b, grad_c.float32()
        if not self.transpose_a and not self.transpose_b:
            return _sgemm(g, b, False, True), _sgemm(a, g, True, False)
        if not self.transpose_a:
            return _sgemm(g, b, False, False), _sgemm(g, a, True, False)
        if not self.transpose_b:
            return _sgemm(b, g, False, True), _sgemm(a, g, False, False)
        return _sgemm(b, g, True, True), _sgemm(g, a, True, True)


def _swap_last(x: jt.Var) -> jt.Var:
    order = list(range(x.ndim))
    order[-2], order[-1] = order[-1], order[-2]
    return x.transpose(order)


def batched_matmul(a: jt.Var, b: jt.Var, transpose_a: bool = False,
                   transpose_b: bool = False) -> jt.Var:
    """``op(a) @ op(b)`` over the leading (batch) dimensions, which must be equal (no
    broadcasting); ``op`` transposes the last two dimensions where ``transpose_a`` /
    ``transpose_b`` say so. ``a``: ``(..., M, K)`` (``(..., K, M)`` transposed), ``b``:
    ``(..., K, N)`` (``(..., N, K)`` transposed); returns ``(..., M, N)``.

    oneDNN's ``sgemm`` per batch entry where :func:`batched_matmul_supported`, else
    ``jt.matmul`` (CUDA, float64, empty operands)."""
    batch, m, _, n = _dims(a, b, transpose_a, transpose_b)
    if not batched_matmul_supported(a, b):
        return jt.matmul(_swap_last(a) if transpose_a else a, _swap_last(b) if transpose_b else b)
    entries = 1
    for size in batch:
        entries *= size
    a3 = a.reshape(entries, *a.shape[-2:])
    b3 = b.reshape(entries, *b.shape[-2:])
    return _BatchedMatmul.apply(a3, b3, transpose_a, transpose_b).reshape(*batch, m, n)
