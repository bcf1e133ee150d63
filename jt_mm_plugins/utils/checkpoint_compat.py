"""Let mmengine checkpoints load under ``torch.load(weights_only=True)`` (torch >= 2.6's default).

Since torch 2.6, ``torch.load`` unpickles with a restricted unpickler that only builds tensors, plain
containers and the globals on an allow-list. mmengine 0.10's ``Runner.save_checkpoint`` also stores
the message hub (for ``--resume``), and its pickle names globals that are not on torch's list:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the logged scalars),
* numpy's ``_reconstruct``, ``ndarray``, ``dtype``, ``scalar`` and the ``numpy.dtypes.*DType``
  classes (the buffers' arrays and numpy scalars such as the ``eta`` runtime info),
* ``builtins.getattr``: each ``HistoryBuffer`` pickles its statistics methods
  (``HistoryBuffer.min``, ``.max``, ``.mean``, ``.current``); a function whose qualified name has a
  dot is written by pickle protocol 2 (torch's default) as ``getattr(HistoryBuffer, 'min')``.

So ``load_from`` and ``--resume`` of any mmengine checkpoint fail out of the box.

The fix chosen here keeps ``weights_only=True`` for every file instead of trusting files (which
would run arbitrary code from a malicious checkpoint):

1. The data-only classes above are allow-listed with ``torch.serialization.add_safe_globals``: they
   build arrays, dtypes and a buffer of arrays, and run no code from the file.
2. ``builtins.getattr`` is NOT allow-listed: ``getattr(allowed_object, any_name)`` would hand the
   file any attribute of any allowed class or module (methods included), which widens the unpickler
   far beyond data. Instead the name ``builtins.getattr`` is mapped (``add_safe_globals`` accepts
   ``(callable, 'full.name')`` pairs) to :func:`history_buffer_getattr`, which only returns
   ``HistoryBuffer``'s own statistics methods and raises for everything else.

A checkpoint that holds other objects still fails with torch's message; if you trust such a file,
load it with ``torch.load(path, weights_only=False)`` or set ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.

This module needs only torch, numpy and mmengine (not Jittor), so ``tools/train.py`` and
``tools/test.py`` load it for plain mmdet configs too; importing ``jt_mm_plugins`` applies it as
well.
"""
import pickle
from typing import Any, List, Tuple, Union

import numpy as np
import torch

# HistoryBuffer methods that HistoryBuffer.__getstate__ stores (see its _set_default_statistics).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')

_registered = False


def history_buffer_getattr(owner: Any, name: str) -> Any:
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods.

    Unpickling resolves the global ``builtins.getattr`` to this function (see the module docstring).

    Args:
        owner (Any): The object whose attribute the pickle asks for.
        name (str): The attribute name.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)`` for ``name`` in :data:`HISTORY_BUFFER_STATISTICS`.

    Raises:
        pickle.UnpicklingError: for any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights-only loading refuses getattr({owner!r}, {name!r}): jt_mm_plugins only allows '
        f'getattr(HistoryBuffer, one of {HISTORY_BUFFER_STATISTICS}) (what mmengine checkpoints '
        f'hold). If you trust this checkpoint, load it with torch.load(..., weights_only=False).')


def _numpy_safe_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """numpy's array/dtype/scalar rebuilders, under their numpy 1.x and 2.x module paths."""
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:
        multiarray = np.core.multiarray  # numpy 1.x
    safe: List[Union[Any, Tuple[Any, str]]] = [np.ndarray, np.dtype]
    for module_path in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        # A checkpoint names the path of the numpy that wrote it, whichever numpy reads it.
        safe.append((multiarray._reconstruct, f'{module_path}._reconstruct'))
        safe.append((multiarray.scalar, f'{module_path}.scalar'))
    dtypes_module = getattr(np, 'dtypes', None)  # numpy >= 1.25: one class per dtype
    if dtypes_module is not None:
        for name in dir(dtypes_module):
            cls = getattr(dtypes_module, name)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                safe.append(cls)
    return safe


def mmengine_safe_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """Everything :func:`register_mmengine_safe_globals` allow-lists.

    Returns:
        list: Classes/functions, or ``(callable, 'full.name')`` pairs, as
        ``torch.serialization.add_safe_globals`` takes them.
    """
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')] + _numpy_safe_globals()


def register_mmengine_safe_globals() -> None:
    """Allow-list what mmengine checkpoints hold for weights-only ``torch.load`` (idempotent).

    Afterwards ``Runner(load_from=..., resume=...)`` and ``mmengine.runner.load_checkpoint`` read
    mmengine checkpoints with torch's default ``weights_only=True``.
    """
    global _registered
    if _registered:
        return
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 loads everything with weights_only=False anyway
        _registered = True
        return
    add_safe_globals(mmengine_safe_globals())
    _registered = True
