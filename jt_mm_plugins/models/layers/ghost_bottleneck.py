"""``GhostBottleneck`` as NanoDet builds it (``nanodet/model/backbone/ghostnet.py``), in Jittor,
without squeeze-and-excitation (NanoDet's GhostPAN never uses it).

``ghost1`` (a :class:`GhostModule` with the activation) expands to ``mid_chs``; with a stride > 1
a depthwise conv + BN (``conv_dw``, ``bn_dw``) downsamples; ``ghost2`` (a GhostModule without
activation) projects to ``out_chs``; the shortcut (identity when ``in_chs == out_chs`` and the
stride is 1, else a depthwise ``dw_kernel_size`` conv + BN + 1x1 conv + BN, ``shortcut.0`` ..
``shortcut.3``) is added. No activation after the addition.
"""
from typing import Union

from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.ghost_module import BN, GhostModule
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


class GhostBottleneck(jt.nn.Module):
    """Ghost bottleneck (NanoDet's names: ``ghost1``, ``conv_dw``, ``bn_dw``, ``ghost2``,
    ``shortcut``).

    Args:
        in_chs (int): Input channels.
        mid_chs (int): Channels after ``ghost1``.
        out_chs (int): Output channels.
        dw_kernel_size (int): Kernel of the strided depthwise conv and of the shortcut's.
            Defaults to 3.
        stride (int): 1 or 2. Defaults to 1.
        activation (str | dict | None): Activation of ``ghost1``. Defaults to ``'ReLU'``.
        se_ratio (float): Only 0 / None (squeeze-and-excitation is not implemented).
            Defaults to 0.0.
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3,
                 stride: int = 1, activation: Union[str, dict, None] = 'ReLU',
                 se_ratio: float = 0.0) -> None:
        super().__init__()
        if se_ratio:
            raise NotImplementedError(f'GhostBottleneck: se_ratio={se_ratio!r} '
                                      '(squeeze-and-excitation) is not implemented; use 0')
        if stride not in (1, 2):
            raise InputError(f'GhostBottleneck: stride must be 1 or 2, got {stride!r}')
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.stride = stride
        padding = (dw_kernel_size - 1) // 2
        self.ghost1 = GhostModule(in_chs, mid_chs, activation=activation)
        if stride > 1:
            self.conv_dw = Conv2d(mid_chs, mid_chs, dw_kernel_size, stride=stride, padding=padding,
                                  groups=mid_chs, bias=False)
            self.bn_dw = build_norm_layer(BN, mid_chs)[1]
        self.ghost2 = GhostModule(mid_chs, out_chs, activation=None)
        self.shortcut = None
        if in_chs != out_chs or stride != 1:
            self.shortcut = jt.nn.Sequential(
                Conv2d(in_chs, in_chs, dw_kernel_size, stride=stride, padding=padding,
                       groups=in_chs, bias=False),
                build_norm_layer(BN, in_chs)[1],
                Conv2d(in_chs, out_chs, 1, bias=False),
                build_norm_layer(BN, out_chs)[1])

    def execute(self, x: jt.Var) -> jt.Var:
        if x.ndim != 4 or x.shape[1] != self.in_chs:
            raise InputError(f'GhostBottleneck expects (N, {self.in_chs}, H, W) input, got '
                             f'{tuple(x.shape)}')
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        out = self.ghost2(out)
        return out + (x if self.shortcut is None else self.shortcut(x))
