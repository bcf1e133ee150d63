"""``GhostBlocks``: the stack of :class:`GhostBottleneck` that GhostPAN (NanoDet-Plus,
``nanodet/model/fpn/ghost_pan.py``) uses after each concatenation, in Jittor.

``num_blocks`` bottlenecks ``(in, int(out * expand), out)`` with a ``kernel_size`` depthwise
shortcut; with ``use_res`` a 1x1 ConvModule (conv with bias, no norm, the activation:
``reduce_conv``) of the input is added to the result.

One difference from NanoDet: its GhostBlocks builds *every* block with ``in_channels`` inputs, so
with ``num_blocks > 1`` and ``in_channels != out_channels`` (always so in GhostPAN, whose blocks
take ``2 * out_channels``) the second block gets ``out_channels`` and its forward fails. Here the
first block takes ``in_channels`` and the following ones ``out_channels``: the same module for
``num_blocks=1`` (NanoDet-Plus's configs), a working stack otherwise.
"""
from typing import Union

from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.ghost_bottleneck import GhostBottleneck
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


class GhostBlocks(jt.nn.Module):
    """Stack of GhostBottlenecks (NanoDet's names: ``blocks.<i>``, ``reduce_conv``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expand (float): Middle channels of each bottleneck are ``int(out_channels * expand)``.
            Defaults to 1.
        kernel_size (int): Depthwise kernel of the bottlenecks' shortcuts. Defaults to 5.
        num_blocks (int): Number of bottlenecks (>= 1). Defaults to 1.
        use_res (bool): Add ``reduce_conv(x)``. Defaults to False.
        activation (str | dict | None): Activation name / config. Defaults to ``'LeakyReLU'``.
    """

    def __init__(self, in_channels: int, out_channels: int, expand: float = 1,
                 kernel_size: int = 5, num_blocks: int = 1, use_res: bool = False,
                 activation: Union[str, dict, None] = 'LeakyReLU') -> None:
        super().__init__()
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise InputError(f'GhostBlocks: num_blocks must be an int >= 1, got {num_blocks!r}')
        mid_channels = int(out_channels * expand)
        if mid_channels < 1:
            raise InputError(f'GhostBlocks: int(out_channels * expand) = {mid_channels} '
                             f'(out_channels={out_channels}, expand={expand}) must be >= 1')
        self.use_res = use_res
        if use_res:
            self.reduce_conv = ConvModule(in_channels, out_channels, 1,
                                          act_cfg=act_cfg_from_name(activation, 'GhostBlocks'))
        self.blocks = jt.nn.Sequential(*[
            GhostBottleneck(in_channels if i == 0 else out_channels, mid_channels, out_channels,
                            dw_kernel_size=kernel_size, activation=activation)
            for i in range(num_blocks)])

    def execute(self, x: jt.Var) -> jt.Var:
        out = self.blocks(x)
        return out + self.reduce_conv(x) if self.use_res else out
