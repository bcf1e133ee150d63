"""Tensor conversion between torch and Jittor that keeps dtypes.

CPU: one copy each way. ``tensor.numpy()`` is a view, ``jt.array`` copies it into Jittor's memory;
``Var.numpy()`` copies out of Jittor's memory and ``torch.from_numpy`` is a view of that copy. The
gradients a backward returns are not copied at all (``share_memory=True``: views of Jittor's buffers).

CUDA: Jittor has no DLPack, so a device-to-device copy is made by a tiny ``jt.code`` kernel that
``cudaMemcpyAsync``-s between Jittor's buffer and the torch tensor's device pointer, after
synchronising torch's stream (``_cuda_torch_to_jittor`` / ``_cuda_jittor_to_torch``). No host round
trip. Jittor is lazy: the torch-to-Jittor copy is executed before returning, so it reads the tensor
as it is at the call, not whatever torch later writes into (or reallocates from) that memory
(tests/test_cuda_device.py checks both; see the README for where and when it ran on a GPU).
"""
from typing import Any, Callable, List

import numpy as np
import torch

from jt_mm_plugins.runtime import jt

TORCH_TO_JITTOR_DTYPE = {
    torch.float32: 'float32', torch.float64: 'float64', torch.float16: 'float16',
    torch.int64: 'int64', torch.int32: 'int32', torch.int16: 'int16', torch.int8: 'int8',
    torch.uint8: 'uint8', torch.bool: 'bool',
}
JITTOR_TO_TORCH_DTYPE = {v: k for k, v in TORCH_TO_JITTOR_DTYPE.items()}


def _check_dtype(tensor: torch.Tensor) -> str:
    try:
        return TORCH_TO_JITTOR_DTYPE[tensor.dtype]
    except KeyError:
        raise TypeError(f'jt_mm_plugins cannot pass a {tensor.dtype} tensor to Jittor; supported '
                        f'dtypes: {sorted(str(d) for d in TORCH_TO_JITTOR_DTYPE)}') from None


def torch_to_jittor(tensor: torch.Tensor) -> 'jt.Var':
    """Copy a torch tensor into a new Jittor Var of the same shape and dtype (no autograd link)."""
    _check_dtype(tensor)
    tensor = tensor.detach()
    if tensor.is_cuda and jt.flags.use_cuda:
        return _cuda_torch_to_jittor(tensor)
    array = tensor.cpu().numpy()
    # Jittor would silently turn int64/float64 into int32/float32 (auto_convert_64_to_32).
    with jt.flag_scope(auto_convert_64_to_32=0):
        return jt.array(array)


def jittor_to_torch(var: 'jt.Var', device: torch.device = torch.device('cpu'),
                    share_memory: bool = False) -> torch.Tensor:
    """Copy a Jittor Var into a new torch tensor on ``device``, keeping its dtype.

    ``share_memory=True`` (Jittor and ``device`` on CPU): no copy; the tensor is a view of the Var's
    buffer, which the view keeps alive. Only for Vars that nothing in Jittor reads afterwards (the
    gradients a backward hands to torch): torch may write into the tensor (``grad +=``), and so into
    the Var.
    """
    dtype = str(var.dtype)
    if dtype not in JITTOR_TO_TORCH_DTYPE:
        raise TypeError(f'jt_mm_plugins cannot return a Jittor {dtype} Var to torch')
    if device.type == 'cuda' and jt.flags.use_cuda:
        return _cuda_jittor_to_torch(var, device)
    if share_memory and device.type == 'cpu' and not jt.flags.use_cuda:
        # ``Var.data`` is a writeable numpy view whose base is the Var itself. (With CUDA on, the
        # Var's buffer may be device or managed memory: copy.)
        return torch.from_numpy(var.data)
    array = var.numpy()
    if not array.flags.writeable:  # torch warns on read-only buffers
        array = np.array(array)
    return torch.from_numpy(array).to(device)


# Device pointers travel in ``data`` (doubles: exact below 2**53), so one compiled kernel serves all.
COPY_FROM_TORCH_CUDA_SRC = ('cudaMemcpyAsync(out0_p, (void*)(size_t)data["src"], out0->size, '
                            'cudaMemcpyDeviceToDevice, 0);')
COPY_TO_TORCH_CUDA_SRC = ('cudaMemcpyAsync((void*)(size_t)data["dst"], in0_p, in0->size, '
                          'cudaMemcpyDeviceToDevice, 0);')


def _cuda_torch_to_jittor(tensor: torch.Tensor) -> 'jt.Var':
    tensor = tensor.contiguous()
    torch.cuda.current_stream(tensor.device).synchronize()  # the producer kernel must be done
    var = jt.code(list(tensor.shape), TORCH_TO_JITTOR_DTYPE[tensor.dtype], [],
                  cuda_src=COPY_FROM_TORCH_CUDA_SRC, data={'src': tensor.data_ptr()})
    # Run the copy now: a lazy Var would read the pointer whenever Jittor next executes, after torch
    # may have written to it or freed it (``tensor`` may be a temporary ``contiguous()`` copy). The
    # copy is queued on the legacy default stream, ahead of any later torch kernel on it.
    var.sync()
    return var


def _cuda_jittor_to_torch(var: 'jt.Var', device: torch.device) -> torch.Tensor:
    out = torch.empty(tuple(var.shape), dtype=JITTOR_TO_TORCH_DTYPE[str(var.dtype)], device=device)
    done = jt.code(var.shape, var.dtype, [var], cuda_src=COPY_TO_TORCH_CUDA_SRC,
                   data={'dst': out.data_ptr()})
    done.sync()
    jt.sync_all(True)  # Jittor's stream must finish before torch reads ``out``
    return out


def map_structure(fn: Callable[[Any], Any], obj: Any) -> Any:
    """Apply ``fn`` to every leaf of nested lists, tuples and dicts, keeping the structure."""
    if isinstance(obj, (list, tuple)):
        mapped = [map_structure(fn, x) for x in obj]
        return type(obj)(*mapped) if hasattr(obj, '_fields') else type(obj)(mapped)
    if isinstance(obj, dict):
        return type(obj)((k, map_structure(fn, v)) for k, v in obj.items())
    return fn(obj)


def flatten_structure(obj: Any, is_leaf: Callable[[Any], bool]) -> List[Any]:
    """The leaves of nested lists, tuples and dicts for which ``is_leaf`` holds, in order."""
    leaves = []

    def collect(x):
        if is_leaf(x):
            leaves.append(x)
        return x

    map_structure(collect, obj)
    return leaves
