"""What the multi-threaded CPU kernels of :mod:`jt_mm_plugins.ops` share.

Jittor compiles its fused element-wise ops and reductions into single-threaded loops on CPU, where
PyTorch spreads them over its threads; the kernels in this package split that work over the OpenMP
threads (``torch.set_num_threads`` / ``OMP_NUM_THREADS``) with ``jt.code``. They take float32 on CPU;
callers fall back to plain Jittor ops elsewhere (CUDA, other dtypes), which Jittor fuses itself.
"""
from jt_mm_plugins.runtime import jt

# Below this many values a kernel runs on one thread: a parallel region costs more than it saves.
PARALLEL_MIN_NUMEL = 1 << 16


def cpu_float32(*tensors: jt.Var) -> bool:
    """Whether every Var is a non-empty float32 and Jittor runs on CPU."""
    return (not jt.flags.use_cuda
            and all(t.dtype == 'float32' and t.numel() > 0 for t in tensors))
