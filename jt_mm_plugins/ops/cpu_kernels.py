"""What the multi-threaded CPU kernels of :mod:`jt_mm_plugins.ops` share.

Jittor compiles its fused element-wise ops and reductions into single-threaded loops on CPU, where
PyTorch spreads them over its threads; the kernels in this package split that work over the OpenMP
threads (``torch.set_num_threads`` / ``OMP_NUM_THREADS``) with ``jt.code``. They take float32 on CPU;
callers fall back to plain Jittor ops elsewhere (CUDA, other dtypes), which Jittor fuses itself.
"""
from typing import Optional, Tuple

from jt_mm_plugins.runtime import jt

# Below this many values a kernel runs on one thread: a parallel region costs more than it saves.
PARALLEL_MIN_NUMEL = 1 << 16


def cpu_float32(*tensors: jt.Var) -> bool:
    """Whether every Var is a non-empty float32 and Jittor runs on CPU."""
    return (not jt.flags.use_cuda
            and all(t.dtype == 'float32' and t.numel() > 0 for t in tensors))


def per_channel_affine(op_name: str, x: jt.Var, weight: Optional[jt.Var],
                       bias: Optional[jt.Var]) -> Tuple[jt.Var, jt.Var]:
    """The float32 ``(C, )`` scale and shift of a normalisation kernel over an ``(N, C, ...)``
    input: ``weight`` / ``bias`` checked (``ValueError`` naming ``op_name`` and the culprit),
    ``None`` replaced by constant ones / zeros that take no gradient."""
    channels = x.shape[1]
    for name, param in (('weight', weight), ('bias', bias)):
        if param is not None and (tuple(param.shape) != (channels, ) or param.dtype != 'float32'):
            raise ValueError(f'{op_name}: {name} must be float32 of shape ({channels},) for an '
                             f'input of shape {tuple(x.shape)}, got {param.dtype} '
                             f'{tuple(param.shape)}')
    if weight is None:
        weight = jt.ones((channels, ), dtype='float32').stop_grad()
    if bias is None:
        bias = jt.zeros((channels, ), dtype='float32').stop_grad()
    return weight, bias
