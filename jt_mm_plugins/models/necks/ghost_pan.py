"""``GhostPAN``: NanoDet-Plus's neck (``nanodet/model/fpn/ghost_pan.py``) in Jittor.

A path aggregation network with Ghost blocks (../shared/specs/seed-systems.md section 4.2):

* reduce: a 1x1 ConvModule (norm, activation) per input level to ``out_channels``;
* top-down, from the coarsest level: upsample (``upsample_cfg``), concatenate with the next finer
  reduced level (upsampled first), :class:`GhostBlocks` back to ``out_channels``;
* bottom-up, from the finest: a stride-2 conv (``DepthwiseConvModule`` with ``use_depthwise``, else
  a ConvModule) of the previous output, concatenated with the top-down output of the next coarser
  level, GhostBlocks;
* ``num_extra_level`` extra levels, each ``extra_lvl_in_conv(reduced coarsest input) +
  extra_lvl_out_conv(last output)``, both stride-2 convs of the same kind.

Parameter names are NanoDet's (``reduce_layers.0.conv.weight``, ``top_down_blocks.0.blocks.0.
ghost1.primary_conv.0.weight``, ``downsamples.0.depthwise.weight``, ``extra_lvl_in_conv.0.pwnorm.
bias`` ...). Differences from NanoDet: ``num_blocks > 1`` works (see :mod:`.ghost_blocks`), and
outputs of odd ``int(out_channels * expand)`` are cut as GhostNet does (see :mod:`.ghost_module`);
NanoDet's fails in both cases.
"""
from typing import List, Optional, Sequence, Tuple, Union

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.depthwise_conv_module import DepthwiseConvModule
from jt_mm_plugins.models.layers.ghost_blocks import GhostBlocks
from jt_mm_plugins.models.layers.upsample import UPSAMPLE_MODES, torch_like_interpolate
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

_UPSAMPLE_KEYS = ('size', 'scale_factor', 'mode', 'align_corners')


@register_jittor_module()
class GhostPAN(jt.nn.Module):
    """Path aggregation network with Ghost blocks (NanoDet-Plus).

    Args:
        in_channels (Sequence[int]): Channels of each input level, finest first.
        out_channels (int): Channels of every output level.
        use_depthwise (bool): Stride-2 convs are DepthwiseConvModules, else ConvModules.
            Defaults to False.
        kernel_size (int): Kernel of the stride-2 convs and of the Ghost blocks' depthwise
            shortcuts. Defaults to 5.
        expand (float): Expand ratio of the Ghost bottlenecks. Defaults to 1.
        num_blocks (int): Ghost bottlenecks per GhostBlocks (>= 1). Defaults to 1.
        use_res (bool): GhostBlocks add a 1x1 conv of their input. Defaults to False.
        num_extra_level (int): Extra coarser output levels: 0 or 1 (see the check). Defaults to 0.
        upsample_cfg (dict): ``torch.nn.Upsample``'s arguments (``scale_factor`` or ``size``,
            ``mode`` in ('nearest', 'nearest-exact', 'bilinear'), ``align_corners``); computed as
            ``F.interpolate`` does. Defaults to ``dict(scale_factor=2, mode='bilinear')``.
        norm_cfg (dict): Norm of the reduce and stride-2 convs (the Ghost blocks use BN, as
            NanoDet's). Defaults to ``dict(type='BN')``.
        activation (str | dict | None): NanoDet activation name (``'LeakyReLU'``: slope 0.1), an
            mmcv ``act_cfg`` or None. Defaults to ``'LeakyReLU'``.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 use_depthwise: bool = False,
                 kernel_size: int = 5,
                 expand: float = 1,
                 num_blocks: int = 1,
                 use_res: bool = False,
                 num_extra_level: int = 0,
                 upsample_cfg: dict = dict(scale_factor=2, mode='bilinear'),
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 activation: Union[str, dict, None] = 'LeakyReLU') -> None:
        super().__init__()
        self._check_args(in_channels, out_channels, kernel_size, num_blocks, num_extra_level,
                         upsample_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.use_depthwise = use_depthwise
        self.kernel_size = kernel_size
        self.expand = expand
        self.num_blocks = num_blocks
        self.use_res = use_res
        self.num_extra_level = num_extra_level
        self.upsample_cfg = dict(upsample_cfg)
        self.norm_cfg = norm_cfg
        self.activation = activation
        act_cfg = act_cfg_from_name(activation, 'GhostPAN')
        num_levels = len(in_channels)

        self.reduce_layers = jt.nn.ModuleList([
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for c in in_channels])
        self.top_down_blocks = jt.nn.ModuleList(
            [self._ghost_blocks() for _ in range(num_levels - 1)])
        self.downsamples = jt.nn.ModuleList(
            [self._stride2_conv(act_cfg) for _ in range(num_levels - 1)])
        self.bottom_up_blocks = jt.nn.ModuleList(
            [self._ghost_blocks() for _ in range(num_levels - 1)])
        self.extra_lvl_in_conv = jt.nn.ModuleList(
            [self._stride2_conv(act_cfg) for _ in range(num_extra_level)])
        self.extra_lvl_out_conv = jt.nn.ModuleList(
            [self._stride2_conv(act_cfg) for _ in range(num_extra_level)])

    @staticmethod
    def _check_args(in_channels, out_channels, kernel_size, num_blocks, num_extra_level,
                    upsample_cfg) -> None:
        if (not isinstance(in_channels, (list, tuple)) or not in_channels
                or not all(isinstance(c, int) and c > 0 for c in in_channels)):
            raise InputError(f'GhostPAN: in_channels must be a non-empty list of positive ints, '
                             f'got {in_channels!r}')
        if not isinstance(out_channels, int) or out_channels <= 0:
            raise InputError(f'GhostPAN: out_channels must be a positive int, got {out_channels!r}')
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f'GhostPAN: kernel_size must be a positive odd int, got '
                             f'{kernel_size!r}')
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise InputError(f'GhostPAN: num_blocks must be an int >= 1, got {num_blocks!r}')
        if not isinstance(num_extra_level, int) or not 0 <= num_extra_level <= 1:
            raise InputError(f'GhostPAN: num_extra_level must be 0 or 1, got {num_extra_level!r}: '
                             'every extra level adds a stride-2 conv of the reduced coarsest '
                             'input, whose size matches the first extra level only (NanoDet\'s '
                             'forward fails from the second on)')
        if not isinstance(upsample_cfg, dict) or not set(upsample_cfg) <= set(_UPSAMPLE_KEYS):
            raise InputError(f'GhostPAN: upsample_cfg must be a dict with keys among '
                             f'{_UPSAMPLE_KEYS}, got {upsample_cfg!r}')
        if upsample_cfg.get('mode', 'nearest') not in UPSAMPLE_MODES:
            raise InputError(f'GhostPAN: upsample_cfg mode {upsample_cfg.get("mode")!r} is not '
                             f'implemented; use one of {UPSAMPLE_MODES}')
        if ('size' in upsample_cfg) == ('scale_factor' in upsample_cfg):
            raise InputError(f'GhostPAN: upsample_cfg needs exactly one of size and scale_factor, '
                             f'got {upsample_cfg!r}')

    def _ghost_blocks(self) -> GhostBlocks:
        return GhostBlocks(self.out_channels * 2, self.out_channels, self.expand,
                           kernel_size=self.kernel_size, num_blocks=self.num_blocks,
                           use_res=self.use_res, activation=self.activation)

    def _stride2_conv(self, act_cfg: Optional[dict]) -> jt.nn.Module:
        c, k = self.out_channels, self.kernel_size
        if self.use_depthwise:
            return DepthwiseConvModule(c, c, k, stride=2, padding=k // 2, norm_cfg=self.norm_cfg,
                                       activation=act_cfg)
        return ConvModule(c, c, k, stride=2, padding=k // 2, norm_cfg=self.norm_cfg,
                          act_cfg=act_cfg)

    def _upsample(self, x: jt.Var) -> jt.Var:
        return torch_like_interpolate(x, **self.upsample_cfg)

    @staticmethod
    def _concat(a: jt.Var, b: jt.Var, step: str) -> jt.Var:
        if tuple(a.shape[2:]) != tuple(b.shape[2:]):
            raise InputError(f'GhostPAN {step}: cannot concatenate maps of sizes '
                             f'{tuple(a.shape[2:])} and {tuple(b.shape[2:])}; each input level '
                             f'must be half the size of the previous one (upsample_cfg and the '
                             f'stride-2 convs pair them)')
        return jt.concat([a, b], dim=1)

    def execute(self, inputs: Sequence[jt.Var]) -> Tuple[jt.Var, ...]:
        """Return ``len(in_channels) + num_extra_level`` maps of ``out_channels``, finest first."""
        if len(inputs) != len(self.in_channels):
            raise InputError(f'GhostPAN: {len(inputs)} input levels, expected '
                             f'{len(self.in_channels)} (in_channels={self.in_channels})')
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.ndim != 4 or x.shape[1] != c:
                raise InputError(f'GhostPAN: input level {i} must be (N, {c}, H, W), got '
                                 f'{tuple(x.shape)}')
        reduced = [reduce(x) for reduce, x in zip(self.reduce_layers, inputs)]
        num_levels = len(reduced)
        # top-down: inner[i] for level i, built from the coarsest level down
        inner: List[jt.Var] = [reduced[-1]]
        for step, idx in enumerate(range(num_levels - 1, 0, -1)):
            cat = self._concat(self._upsample(inner[0]), reduced[idx - 1], 'top-down')
            inner.insert(0, self.top_down_blocks[step](cat))
        # bottom-up
        outs = [inner[0]]
        for idx in range(num_levels - 1):
            cat = self._concat(self.downsamples[idx](outs[-1]), inner[idx + 1], 'bottom-up')
            outs.append(self.bottom_up_blocks[idx](cat))
        for extra_in, extra_out in zip(self.extra_lvl_in_conv, self.extra_lvl_out_conv):
            outs.append(extra_in(reduced[-1]) + extra_out(outs[-1]))
        return tuple(outs)
