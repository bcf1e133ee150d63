"""mmdet's ``LVISMetric`` with the ``lvis`` package PyPI has (0.5.3, the latest there).

lvis 0.5.3's ``LVISEval.accumulate`` casts with ``np.float``, an alias of the builtin ``float``
that numpy removed in 1.24 (requirements.txt pins ``numpy<2``, which resolves to 1.26), so every
LVIS evaluation ends in ``AttributeError: module 'numpy' has no attribute 'float'``. mmdet points
to the fixed lvis-api on GitHub, which no package registry serves. Importing this module (as
``import jt_mm_plugins`` does) gives numpy the alias back as exactly what it was, ``float``, when it
is missing; nothing else changes.
"""
import numpy as np


def restore_numpy_float_alias() -> bool:
    """Set ``np.float = float`` if numpy lacks it; returns whether it was set."""
    if 'float' in vars(np):
        return False
    np.float = float
    return True


restore_numpy_float_alias()
