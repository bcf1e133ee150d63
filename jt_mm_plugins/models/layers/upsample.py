"""Upsampling exactly as ``torch.nn.functional.interpolate`` computes it, and the upsample-and-add
of feature pyramids (FPN's top-down path; GhostPAN and RepGD necks have the same step).

:func:`upsample_add` is the one a neck calls: it runs the multi-threaded CPU kernel
(:func:`jt_mm_plugins.ops.upsample_x2_add`) where the step is exactly a nearest x2 upsampling, and
:func:`torch_like_interpolate` plus an addition elsewhere (other modes and factors, CUDA). Jittor's
own ``interpolate`` defaults to bilinear and picks nearest neighbours differently from torch for
non-integer ratios.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.ops.upsample_add import upsample_x2_add, upsample_x2_add_supported
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

UPSAMPLE_MODES = ('nearest', 'nearest-exact', 'bilinear')

def scale_pair(scale_factor: Union[float, Sequence[float]]) -> Tuple[float, float]:
    """``(h, w)`` scale factors from a number or a pair; refuses non-positive ones."""
    pair = tuple(scale_factor) if isinstance(scale_factor, (list, tuple)) else (scale_factor,
                                                                                  scale_factor)
    if len(pair) != 2 or not all(isinstance(s, (int, float)) and s > 0 for s in pair):
        raise InputError(f'scale_factor must be a positive number or a pair of them, got '
                         f'{scale_factor!r}')
    return float(pair[0]), float(pair[1])


def _source_scale(in_size: int, out_size: int, scale_factor: Optional[float]) -> np.float32:
    """torch's ``compute_scales_value<float>``: 1/scale_factor if given, else in/out."""
    if scale_factor is not None:
        return np.float32(1.0 / scale_factor)
    return np.float32(in_size) / np.float32(out_size)


def _nearest_indices(in_size: int, out_size: int, scale_factor: Optional[float],
                     exact: bool) -> np.ndarray:
    """Source index of every output pixel, as torch's CPU ``nearest_idx`` / ``nearest_exact_idx``."""
    dst = np.arange(out_size, dtype=np.float32)
    if not exact:
        # torch special-cases these two ratios to avoid float error.
        if out_size == in_size:
            return np.arange(out_size, dtype=np.int32)
        if out_size == 2 * in_size:
            return (np.arange(out_size) >> 1).astype(np.int32)
    scale = _source_scale(in_size, out_size, scale_factor)
    src = np.floor((dst + np.float32(0.5)) * scale if exact else dst * scale)
    return np.minimum(src.astype(np.int64), in_size - 1).astype(np.int32)


def _linear_indices_weights(in_size: int, out_size: int, scale_factor: Optional[float],
                            align_corners: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray]:
    """Two source indices and their weights per output pixel, as torch's CPU linear upsampling."""
    if out_size == in_size:
        idx = np.arange(out_size, dtype=np.int32)
        return idx, idx, np.ones(out_size, np.float32), np.zeros(out_size, np.float32)
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = (np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else
                 np.float32(0))
        src = dst * scale
    else:
        scale = _source_scale(in_size, out_size, scale_factor)
        src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    idx0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lambda1 = np.clip(src - idx0.astype(np.float32), 0, 1).astype(np.float32)
    idx1 = idx0 + (idx0 < in_size - 1)
    return (idx0.astype(np.int32), idx1.astype(np.int32), (np.float32(1) - lambda1), lambda1)


def _gather_hw(x: jt.Var, rows: np.ndarray, cols: np.ndarray) -> jt.Var:
    """``x[:, :, rows][:, :, :, cols]`` as one differentiable Jittor reindex."""
    n, c = x.shape[:2]
    return x.reindex([n, c, len(rows), len(cols)], ['i0', 'i1', '@e0(i2)', '@e1(i3)'],
                     extras=[jt.array(rows), jt.array(cols)])


def torch_like_interpolate(x: jt.Var,
                           size: Optional[Sequence[int]] = None,
                           scale_factor: Optional[Union[float, Sequence[float]]] = None,
                           mode: str = 'nearest',
                           align_corners: Optional[bool] = None) -> jt.Var:
    """Resize an ``(N, C, H, W)`` Var exactly as ``torch.nn.functional.interpolate`` (CPU) does.

    Args:
        x (jt.Var): Input feature map.
        size (tuple[int, int], optional): Output ``(H, W)``. Exactly one of ``size`` and
            ``scale_factor`` must be given.
        scale_factor (float | tuple[float, float], optional): Output size is
            ``floor(input size * scale_factor)``; source coordinates use ``1 / scale_factor``.
        mode (str): ``'nearest'``, ``'nearest-exact'`` or ``'bilinear'``. Defaults to ``'nearest'``
            (torch's default; Jittor's own ``interpolate`` defaults to bilinear).
        align_corners (bool, optional): Bilinear only. Defaults to None (False).

    Returns:
        jt.Var: The resized feature map.
    """
    if x.ndim != 4:
        raise InputError(f'torch_like_interpolate expects an (N, C, H, W) Var, got {tuple(x.shape)}')
    if (size is None) == (scale_factor is None):
        raise InputError('torch_like_interpolate: give exactly one of size and scale_factor')
    if mode not in UPSAMPLE_MODES:
        raise InputError(f'torch_like_interpolate: mode {mode!r} is not implemented; use one of '
                         f'{UPSAMPLE_MODES}')
    if align_corners is not None and mode != 'bilinear':
        raise InputError('torch_like_interpolate: align_corners can only be set with bilinear mode')
    in_hw = tuple(x.shape[2:])
    if scale_factor is not None:
        scales: Tuple[Optional[float], Optional[float]] = scale_pair(scale_factor)
        out_hw = tuple(int(np.floor(s * f)) for s, f in zip(in_hw, scales))
    else:
        out_hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        scales = (None, None)
    if len(out_hw) != 2 or min(out_hw) <= 0:
        raise InputError(f'torch_like_interpolate: output size must be two positive ints, got '
                         f'{out_hw} (input {in_hw}, size={size}, scale_factor={scale_factor})')

    if mode in ('nearest', 'nearest-exact'):
        exact = mode == 'nearest-exact'
        rows, cols = (_nearest_indices(i, o, s, exact) for i, o, s in zip(in_hw, out_hw, scales))
        return _gather_hw(x, rows, cols)
    h0, h1, wh0, wh1 = _linear_indices_weights(in_hw[0], out_hw[0], scales[0], bool(align_corners))
    w0, w1, ww0, ww1 = _linear_indices_weights(in_hw[1], out_hw[1], scales[1], bool(align_corners))
    col_w0 = jt.array(ww0).reshape(1, 1, 1, -1)
    col_w1 = jt.array(ww1).reshape(1, 1, 1, -1)
    top = _gather_hw(x, h0, w0) * col_w0 + _gather_hw(x, h0, w1) * col_w1
    bottom = _gather_hw(x, h1, w0) * col_w0 + _gather_hw(x, h1, w1) * col_w1
    return top * jt.array(wh0).reshape(1, 1, -1, 1) + bottom * jt.array(wh1).reshape(1, 1, -1, 1)


def upsample_add(coarse: jt.Var,
                 fine: jt.Var,
                 mode: str = 'nearest',
                 scale_factor: Optional[Union[float, Sequence[float]]] = None,
                 align_corners: Optional[bool] = None) -> jt.Var:
    """``fine + interpolate(coarse)`` where the upsampled map must have ``fine``'s size.

    Args:
        coarse (jt.Var): ``(N, C, h, w)`` map to upsample.
        fine (jt.Var): ``(N, C, H, W)`` map it is added to.
        mode, scale_factor, align_corners: As for :func:`torch_like_interpolate`; without
            ``scale_factor`` the output size is ``fine``'s.

    Returns:
        jt.Var: The sum, ``fine``'s shape.
    """
    exact_x2 = scale_factor is None or scale_pair(scale_factor) == (2.0, 2.0)
    if mode == 'nearest' and exact_x2 and upsample_x2_add_supported(coarse, fine):
        return upsample_x2_add(coarse, fine)  # the same values, one multi-threaded CPU kernel
    target_hw = tuple(fine.shape[2:])
    if scale_factor is not None:
        upsampled = torch_like_interpolate(coarse, scale_factor=scale_factor, mode=mode,
                                           align_corners=align_corners)
    else:
        upsampled = torch_like_interpolate(coarse, size=target_hw, mode=mode,
                                           align_corners=align_corners)
    if tuple(upsampled.shape[2:]) != target_hw:
        raise InputError(f'upsample_add: {tuple(coarse.shape[2:])} upsampled with '
                         f'scale_factor={scale_factor} is {tuple(upsampled.shape[2:])}, but the '
                         f'map it is added to is {target_hw}')
    return fine + upsampled
