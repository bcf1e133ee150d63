"""``adaptive_avg_pool2d`` in Jittor with ``torch.nn.functional.adaptive_avg_pool2d``'s windows:
output cell ``i`` of ``out`` averages input rows ``floor(i * H / out)`` to
``ceil((i + 1) * H / out) - 1`` (same for columns); windows may overlap when ``H`` is not a
multiple of ``out``, and an output larger than the input repeats input cells."""
import math
from typing import Sequence, Union

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


def _windows(size: int, out: int):
    return [(i * size // out, math.ceil((i + 1) * size / out)) for i in range(out)]


def adaptive_avg_pool2d(x: jt.Var, output_size: Union[int, Sequence[int]]) -> jt.Var:
    """Average-pool an ``(N, C, H, W)`` Var to ``output_size`` (``(oh, ow)`` or an int)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else (
        int(output_size[0]), int(output_size[1]))
    if x.ndim != 4 or oh < 1 or ow < 1:
        raise InputError(f'adaptive_avg_pool2d: expects (N, C, H, W) and a positive output size, '
                         f'got {tuple(x.shape)} and {output_size!r}')
    n, c, h, w = x.shape
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:  # equal, disjoint windows
        return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(dims=(3, 5))
    rows = [x[:, :, a:b].mean(dims=(2, ), keepdims=True) for a, b in _windows(h, oh)]
    x = jt.concat(rows, dim=2) if len(rows) > 1 else rows[0]
    cols = [x[:, :, :, a:b].mean(dims=(3, ), keepdims=True) for a, b in _windows(w, ow)]
    return jt.concat(cols, dim=3) if len(cols) > 1 else cols[0]
