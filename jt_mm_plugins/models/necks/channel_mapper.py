"""Jittor twin of mmdet's ``ChannelMapper`` (``mmdet/models/necks/channel_mapper.py``): a
``kernel_size`` ConvModule per input level to ``out_channels``, then stride-2 3x3 ConvModules for
extra levels; DETR's neck (2048 -> 256, 1x1, no norm, no activation)."""
from typing import Dict, List, Optional, Sequence, Tuple

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@register_jittor_module()
class JittorChannelMapper(jt.nn.Module):
    """Map every input level to ``out_channels`` (same arguments and parameter names as mmdet's
    ``ChannelMapper``: ``convs.{i}.conv.weight``, ``extra_convs.{i}...``).

    Args:
        in_channels (list[int]): Channels of each input level.
        out_channels (int): Output channels of every level.
        kernel_size (int): Kernel of the per-level convs (padding (k - 1) // 2). Defaults to 3.
        conv_cfg, norm_cfg (dict, optional): ConvModule configs.
        act_cfg (dict, optional): Activation. Defaults to ReLU.
        bias (bool | str): ConvModule's bias. Defaults to 'auto'.
        num_outs (int, optional): Output levels; more than inputs adds stride-2 3x3 convs on the
            last input (the first one) and then on the previous extra output.
        init_cfg: Accepted for config compatibility.
    """

    def __init__(self, in_channels: List[int], out_channels: int, kernel_size: int = 3,
                 conv_cfg: Optional[Dict] = None, norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = dict(type='ReLU'), bias='auto',
                 num_outs: Optional[int] = None, init_cfg: Optional[Dict] = None) -> None:
        super().__init__()
        if not isinstance(in_channels, (list, tuple)) or not in_channels:
            raise InputError(f'ChannelMapper: in_channels must be a non-empty list, got '
                             f'{in_channels!r}')
        num_outs = len(in_channels) if num_outs is None else num_outs
        if num_outs < len(in_channels):
            raise InputError(f'ChannelMapper: num_outs ({num_outs}) < number of inputs '
                             f'({len(in_channels)})')
        self.in_channels, self.out_channels = list(in_channels), out_channels
        self.num_outs = num_outs
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, bias=bias)
        self.convs = jt.nn.Sequential(*[
            ConvModule(c, out_channels, kernel_size, padding=(kernel_size - 1) // 2, **common)
            for c in in_channels])
        self.extra_convs = None
        if num_outs > len(in_channels):
            self.extra_convs = jt.nn.Sequential(*[
                ConvModule(in_channels[-1] if i == len(in_channels) else out_channels,
                           out_channels, 3, stride=2, padding=1, **common)
                for i in range(len(in_channels), num_outs)])

    def execute(self, inputs: Sequence[jt.Var]) -> Tuple[jt.Var, ...]:
        if len(inputs) != len(self.convs):
            raise InputError(f'ChannelMapper: {len(inputs)} input levels, expected '
                             f'{len(self.convs)}')
        outs = [conv(x) for conv, x in zip(self.convs, inputs)]
        if self.extra_convs is not None:
            for i, conv in enumerate(self.extra_convs):
                outs.append(conv(inputs[-1] if i == 0 else outs[-1]))
        return tuple(outs)
