"""``GhostModule`` (`GhostNet <https://arxiv.org/abs/1911.11907>`_) as NanoDet builds it
(``nanodet/model/backbone/ghostnet.py``), in Jittor.

A primary conv (``primary_conv``: conv, BN, activation) makes ``ceil(oup / ratio)`` channels; a
cheap depthwise conv (``cheap_operation``: dw_size x dw_size conv with one group per primary
channel, BN, activation) makes ``ratio - 1`` more per primary channel; the two are concatenated.
Parameter names are NanoDet's (``primary_conv.0.weight``, ``cheap_operation.1.running_var`` ...).

The concatenation is cut to ``oup`` channels, as GhostNet's reference implementation does: the same
result whenever ``ratio`` divides ``oup`` (NanoDet's uses: ratio 2, even widths); NanoDet's own
module skips the cut, and with an odd ``oup`` its output has one channel too many (the next layer
then fails).
"""
import math
from typing import Union

from jt_mm_plugins.models.layers.activation import build_activation_layer
from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

BN = dict(type='BN')


class GhostModule(jt.nn.Module):
    """Primary conv + cheap depthwise conv, concatenated.

    Args:
        inp (int): Input channels.
        oup (int): Output channels.
        kernel_size (int): Kernel of the primary conv. Defaults to 1.
        ratio (int): Output channels per primary channel (an int >= 2). Defaults to 2.
        dw_size (int): Kernel of the cheap depthwise conv. Defaults to 3.
        stride (int): Stride of the primary conv. Defaults to 1.
        activation (str | dict | None): After both convs; None: none (NanoDet's ``act=None``,
            the linear ghost module). Defaults to ``'ReLU'``.
    """

    def __init__(self, inp: int, oup: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3,
                 stride: int = 1, activation: Union[str, dict, None] = 'ReLU') -> None:
        super().__init__()
        if not isinstance(ratio, int) or ratio < 2:
            raise InputError(f'GhostModule: ratio must be an int >= 2, got {ratio!r}')
        if not (isinstance(oup, int) and oup >= 1 and isinstance(inp, int) and inp >= 1):
            raise InputError(f'GhostModule: inp and oup must be positive ints, got {inp!r}, '
                             f'{oup!r}')
        self.inp = inp
        self.oup = oup
        self.ratio = ratio
        self.activation = activation
        act_cfg = act_cfg_from_name(activation, 'GhostModule')
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)

        def act() -> jt.nn.Module:
            return jt.nn.Identity() if act_cfg is None else build_activation_layer(dict(act_cfg))

        self.primary_conv = jt.nn.Sequential(
            Conv2d(inp, init_channels, kernel_size, stride, kernel_size // 2, bias=False),
            build_norm_layer(BN, init_channels)[1], act())
        self.cheap_operation = jt.nn.Sequential(
            Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels,
                   bias=False),
            build_norm_layer(BN, new_channels)[1], act())

    def execute(self, x: jt.Var) -> jt.Var:
        if x.ndim != 4 or x.shape[1] != self.inp:
            raise InputError(f'GhostModule expects (N, {self.inp}, H, W) input, got '
                             f'{tuple(x.shape)}')
        x1 = self.primary_conv(x)
        out = jt.concat([x1, self.cheap_operation(x1)], dim=1)
        return out if out.shape[1] == self.oup else out[:, :self.oup]
