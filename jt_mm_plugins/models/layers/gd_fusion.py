"""Gold-YOLO's feature alignment modules (``gold_yolo/common.py``, ``gold_yolo/transformer.py``) in
Jittor, with the original's names: they bring several levels to one size and concatenate them.

* :class:`SimFusion_4in` (``low_FAM``): (C2, C3, C4, C5) to C4's size: C2 and C3 adaptive-avg-
  pooled, C5 bilinearly resized (``align_corners=False``); concatenated in that order.
* :class:`SimFusion_3in` (``LAF_p4``, ``LAF_p3``): ``[x0, x1, x2]`` to x1's size: x0 pooled,
  ``cv1`` (1x1 SimConv) on x1, x2 resized; ``cv_fuse`` (1x1 SimConv, ``3 * out -> out``) of the
  concatenation. ``cv1`` takes ``in_channel_list[0]`` channels, as in the original.
* :class:`AdvPoolFusion` (``LAF_n4``, ``LAF_n5``): x1 pooled to x2's size, ``[x1, x2]``.
* :class:`PyramidPoolAgg` (``high_FAM``): every input pooled to the last one's size
  ``(H - 1) // stride + 1`` and concatenated (the config's ``pool_mode='torch'``; the ONNX export
  path ``'onnx'`` is not built).
"""
from typing import Optional, Sequence

from jt_mm_plugins.models.layers.adaptive_avg_pool import adaptive_avg_pool2d
from jt_mm_plugins.models.layers.sim_conv import SimConv
from jt_mm_plugins.models.layers.upsample import torch_like_interpolate
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


def bilinear_resize(x: jt.Var, size) -> jt.Var:
    """``F.interpolate(x, size, mode='bilinear', align_corners=False)``."""
    return torch_like_interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class SimFusion_4in(jt.nn.Module):  # noqa: N801 (the original's name)
    """Low-level feature alignment: four levels to the third one's size."""

    def execute(self, x: Sequence[jt.Var]) -> jt.Var:
        if len(x) != 4:
            raise InputError(f'SimFusion_4in expects (C2, C3, C4, C5), got {len(x)} maps')
        x_l, x_m, x_s, x_n = x
        size = tuple(x_s.shape[2:])
        return jt.concat([adaptive_avg_pool2d(x_l, size), adaptive_avg_pool2d(x_m, size), x_s,
                          bilinear_resize(x_n, size)], dim=1)


class SimFusion_3in(jt.nn.Module):  # noqa: N801
    """Three adjacent levels fused at the middle one's size (names ``cv1``, ``cv_fuse``).

    Args:
        in_channel_list (Sequence[int]): ``[0]`` is ``cv1``'s input channels.
        out_channels (int): Output channels (x0 and x2 must have this many).
        norm_cfg (dict, optional): Norm of the SimConvs (``None``: YOLOv6's BatchNorm).
    """

    def __init__(self, in_channel_list: Sequence[int], out_channels: int,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.cv1 = SimConv(in_channel_list[0], out_channels, 1, 1, norm_cfg=norm_cfg)
        self.cv_fuse = SimConv(out_channels * 3, out_channels, 1, 1, norm_cfg=norm_cfg)

    def execute(self, x: Sequence[jt.Var]) -> jt.Var:
        size = tuple(x[1].shape[2:])
        return self.cv_fuse(jt.concat([adaptive_avg_pool2d(x[0], size), self.cv1(x[1]),
                                       bilinear_resize(x[2], size)], dim=1))


class AdvPoolFusion(jt.nn.Module):
    """``concat([adaptive_avg_pool(x1, size of x2), x2])``."""

    def execute(self, x1: jt.Var, x2: jt.Var) -> jt.Var:
        return jt.concat([adaptive_avg_pool2d(x1, tuple(x2.shape[2:])), x2], dim=1)


class PyramidPoolAgg(jt.nn.Module):
    """Pool every input to ``((H - 1) // stride + 1, (W - 1) // stride + 1)`` of the last one and
    concatenate.

    Args:
        stride (int): Extra stride over the last input.
        pool_mode (str): Only ``'torch'`` (adaptive average pooling).
    """

    def __init__(self, stride: int, pool_mode: str = 'torch') -> None:
        super().__init__()
        if pool_mode != 'torch':
            raise InputError(f"PyramidPoolAgg: only pool_mode='torch' is built (the original's "
                             f"'onnx' is its ONNX-export pooling), got {pool_mode!r}")
        self.stride = stride
        self.pool_mode = pool_mode

    def execute(self, inputs: Sequence[jt.Var]) -> jt.Var:
        h, w = inputs[-1].shape[2:]
        size = ((h - 1) // self.stride + 1, (w - 1) // self.stride + 1)
        return jt.concat([adaptive_avg_pool2d(x, size) for x in inputs], dim=1)
