"""Jittor twin of mmdet 3.3.0's ``FPN`` neck (``mmdet/models/necks/fpn.py``)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.activation import relu
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.upsample import (  # noqa: F401  (torch_like_interpolate: re-export)
    UPSAMPLE_MODES, scale_pair, torch_like_interpolate, upsample_add)
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

_EXTRA_CONV_SOURCES = ('on_input', 'on_lateral', 'on_output')
_UPSAMPLE_KEYS = ('mode', 'scale_factor', 'align_corners')


@register_jittor_module()
class JittorFPN(jt.nn.Module):
    r"""Feature Pyramid Network, in Jittor.

    This is an implementation of paper `Feature Pyramid Networks for Object
    Detection <https://arxiv.org/abs/1612.03144>`_, computing what mmdet's ``FPN`` computes with the
    same constructor arguments and the same parameter names (``lateral_convs.0.conv.weight``,
    ``fpn_convs.3.conv.weight``, ``fpn_convs.0.bn.running_mean`` ...), so an mmdet FPN state dict
    loads strictly into the bridged ``JittorFPN`` that mmdet's ``MODELS`` builds. Invalid arguments
    raise :class:`~jt_mm_plugins.utils.errors.InputError` (a ``ValueError`` and an ``AssertionError``,
    which mmdet's FPN raises) naming the argument.

    Upsampling reproduces ``torch.nn.functional.interpolate`` (CPU kernel) index for index for
    ``nearest`` and ``nearest-exact``, and weight for weight for ``bilinear``: Jittor's own
    ``interpolate`` defaults to bilinear and picks nearest neighbours differently for non-integer
    ratios.

    Args:
        in_channels (list[int]): Number of input channels per scale.
        out_channels (int): Number of output channels (used at each scale).
        num_outs (int): Number of output scales.
        start_level (int): Index of the start input backbone level used to
            build the feature pyramid. Defaults to 0.
        end_level (int): Index of the end input backbone level (inclusive, as
            mmdet's code uses it) to build the feature pyramid. Defaults to -1,
            which means the last level.
        add_extra_convs (bool | str): If bool, it decides whether to add conv
            layers on top of the original feature maps. Defaults to False.
            If True, it is equivalent to `add_extra_convs='on_input'`.
            If str, it specifies the source feature map of the extra convs:
            'on_input' (last backbone feature used), 'on_lateral' (last
            lateral feature) or 'on_output' (last FPN output).
        relu_before_extra_convs (bool): Whether to apply relu before the extra
            conv. Defaults to False.
        no_norm_on_lateral (bool): Whether to omit the norm on the lateral
            convs. Defaults to False.
        conv_cfg (dict, optional): Config dict for convolution layer (only
            None / ``dict(type='Conv2d')``). Defaults to None.
        norm_cfg (dict, optional): Config dict for normalization layer
            (``BN``, ``SyncBN``, ``GN``). Defaults to None.
        act_cfg (dict, optional): Config dict for activation layer in
            ConvModule. Defaults to None.
        upsample_cfg (dict): Config dict for the top-down interpolation:
            ``mode`` ('nearest', 'nearest-exact' or 'bilinear'; default
            'nearest'), optional ``scale_factor`` (otherwise the size of the
            lower level is used) and ``align_corners`` (bilinear only).
            Defaults to dict(mode='nearest').

    Example:
        >>> from jt_mm_plugins.runtime import jt
        >>> in_channels = [2, 3, 5, 7]
        >>> scales = [340, 170, 84, 43]
        >>> inputs = [jt.rand(1, c, s, s) for c, s in zip(in_channels, scales)]
        >>> self = JittorFPN(in_channels, 11, len(in_channels)).eval()
        >>> outputs = self(inputs)
        >>> [tuple(o.shape) for o in outputs]
        [(1, 11, 340, 340), (1, 11, 170, 170), (1, 11, 84, 84), (1, 11, 43, 43)]
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False,
                 conv_cfg: Optional[Dict] = None,
                 norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = None,
                 upsample_cfg: Dict = dict(mode='nearest')) -> None:
        super().__init__()
        if not isinstance(in_channels, list) or not in_channels:  # a list, as mmdet asserts
            raise InputError(f'JittorFPN: in_channels must be a non-empty list of ints, got '
                             f'{in_channels!r}')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.num_outs = num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.no_norm_on_lateral = no_norm_on_lateral
        self._upsample = self._check_upsample_cfg(upsample_cfg)  # with mmdet's defaults filled in
        self.upsample_cfg = dict(upsample_cfg)  # as given, as mmdet keeps it
        self.start_level = start_level
        self.end_level = end_level
        self.backbone_end_level = self._check_levels(num_outs, start_level, end_level)
        self.add_extra_convs = self._check_add_extra_convs(add_extra_convs)

        self._init_layers(conv_cfg, norm_cfg, act_cfg)
        self.init_weights()

    def _check_levels(self, num_outs: int, start_level: int, end_level: int) -> int:
        """Validate the level arguments as mmdet asserts them; return ``backbone_end_level``."""
        if end_level == -1 or end_level == self.num_ins - 1:
            backbone_end_level = self.num_ins
            if num_outs < self.num_ins - start_level:
                raise InputError(f'JittorFPN: num_outs ({num_outs}) must be >= len(in_channels) - '
                                 f'start_level ({self.num_ins} - {start_level}) when end_level is '
                                 'the last level')
        else:
            # If end_level is not the last level, no extra level is allowed.
            if not 0 <= end_level < self.num_ins:
                raise InputError(f'JittorFPN: end_level ({end_level}) must be -1 or in '
                                 f'[0, {self.num_ins - 1}] for {self.num_ins} input levels')
            backbone_end_level = end_level + 1
            if num_outs != end_level - start_level + 1:
                raise InputError(f'JittorFPN: num_outs ({num_outs}) must equal end_level - '
                                 f'start_level + 1 ({end_level} - {start_level} + 1) when end_level '
                                 'is not the last level')
        if not 0 <= start_level < backbone_end_level:
            raise InputError(f'JittorFPN: start_level ({start_level}) must be in '
                             f'[0, {backbone_end_level - 1}]')
        return backbone_end_level

    @staticmethod
    def _check_add_extra_convs(add_extra_convs: Union[bool, str]) -> Union[bool, str]:
        """``True`` means ``'on_input'``; strings must name one of the three sources."""
        if isinstance(add_extra_convs, bool):
            return 'on_input' if add_extra_convs else False
        if isinstance(add_extra_convs, str) and add_extra_convs in _EXTRA_CONV_SOURCES:
            return add_extra_convs
        raise InputError(f'JittorFPN: add_extra_convs must be a bool or one of {_EXTRA_CONV_SOURCES}, '
                         f'got {add_extra_convs!r}')

    @staticmethod
    def _check_upsample_cfg(upsample_cfg: Dict) -> Dict:
        if not isinstance(upsample_cfg, dict):
            raise InputError(f'JittorFPN: upsample_cfg must be a dict, got {upsample_cfg!r}')
        unknown = sorted(set(upsample_cfg) - set(_UPSAMPLE_KEYS))
        if unknown:
            raise InputError(f'JittorFPN: unsupported upsample_cfg keys {unknown}; allowed: '
                             f'{list(_UPSAMPLE_KEYS)} (the size comes from the lower level)')
        cfg = dict(upsample_cfg)
        cfg.setdefault('mode', 'nearest')  # F.interpolate's default
        if cfg['mode'] not in UPSAMPLE_MODES:
            raise InputError(f"JittorFPN: upsample_cfg mode {cfg['mode']!r} is not implemented; use "
                             f'one of {UPSAMPLE_MODES}')
        if 'align_corners' in cfg and cfg['mode'] != 'bilinear':
            raise InputError('JittorFPN: align_corners can only be set with mode="bilinear" (as in '
                             f"torch.nn.functional.interpolate), got mode {cfg['mode']!r}")
        if 'scale_factor' in cfg:
            scale_pair(cfg['scale_factor'])  # validates
        return cfg

    def _init_layers(self, conv_cfg: Optional[Dict], norm_cfg: Optional[Dict],
                     act_cfg: Optional[Dict]) -> None:
        """Build ``lateral_convs`` / ``fpn_convs`` (with extra levels) as mmdet's FPN does."""
        self.lateral_convs = jt.nn.ModuleList()
        self.fpn_convs = jt.nn.ModuleList()
        for i in range(self.start_level, self.backbone_end_level):
            self.lateral_convs.append(
                ConvModule(
                    self.in_channels[i],
                    self.out_channels,
                    1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg if not self.no_norm_on_lateral else None,
                    act_cfg=act_cfg,
                    inplace=False))
            self.fpn_convs.append(
                ConvModule(
                    self.out_channels,
                    self.out_channels,
                    3,
                    padding=1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                    inplace=False))

        # Extra levels with stride-2 convs (e.g. RetinaNet).
        extra_levels = self.num_outs - self.backbone_end_level + self.start_level
        if self.add_extra_convs and extra_levels >= 1:
            for i in range(extra_levels):
                if i == 0 and self.add_extra_convs == 'on_input':
                    in_channels = self.in_channels[self.backbone_end_level - 1]
                else:
                    in_channels = self.out_channels
                self.fpn_convs.append(
                    ConvModule(
                        in_channels,
                        self.out_channels,
                        3,
                        stride=2,
                        padding=1,
                        conv_cfg=conv_cfg,
                        norm_cfg=norm_cfg,
                        act_cfg=act_cfg,
                        inplace=False))

    def init_weights(self) -> None:
        """Xavier-uniform convolution weights and zero biases: mmdet FPN's default ``init_cfg``
        (``dict(type='Xavier', layer='Conv2d', distribution='uniform')``)."""
        for module in list(self.lateral_convs) + list(self.fpn_convs):
            weight = module.conv.weight
            out_c, in_c_per_group, kh, kw = weight.shape
            bound = float(np.sqrt(6.0 / ((in_c_per_group + out_c) * kh * kw)))
            weight.assign(jt.init.uniform(tuple(weight.shape), 'float32', -bound, bound))
            if module.conv.bias is not None:
                module.conv.bias.assign(jt.zeros(module.conv.bias.shape, dtype='float32'))

    def execute(self, inputs: Sequence[jt.Var]) -> Tuple[jt.Var, ...]:
        """Forward function.

        Args:
            inputs (tuple[jt.Var]): Features from the upstream network, each
                a 4D-Var ``(N, in_channels[i], H_i, W_i)``.

        Returns:
            tuple[jt.Var]: ``num_outs`` feature maps with ``out_channels`` channels each.
        """
        if len(inputs) != len(self.in_channels):
            raise InputError(f'JittorFPN: expected {len(self.in_channels)} input levels '
                             f'(in_channels={self.in_channels}), got {len(inputs)}')
        laterals = [
            lateral_conv(inputs[i + self.start_level])
            for i, lateral_conv in enumerate(self.lateral_convs)
        ]
        laterals = self._top_down(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals))]
        outs.extend(self._extra_levels(inputs, laterals, outs))
        return tuple(outs)

    def _top_down(self, laterals: List[jt.Var]) -> List[jt.Var]:
        """Add each upsampled coarser lateral to the next finer one, coarsest first."""
        laterals = list(laterals)
        for i in range(len(laterals) - 1, 0, -1):
            try:
                laterals[i - 1] = upsample_add(laterals[i], laterals[i - 1], **self._upsample)
            except InputError as err:
                raise InputError(f'JittorFPN: levels {i + self.start_level} -> '
                                 f'{i - 1 + self.start_level}: {err}') from err
        return laterals

    def _extra_levels(self, inputs: Sequence[jt.Var], laterals: List[jt.Var],
                      outs: List[jt.Var]) -> List[jt.Var]:
        """Outputs beyond the backbone levels: stride-2 max pooling or the extra convs."""
        used_backbone_levels = len(laterals)
        extra: List[jt.Var] = []
        if self.num_outs <= used_backbone_levels:
            return extra
        if not self.add_extra_convs:
            last = outs[-1]
            for _ in range(self.num_outs - used_backbone_levels):
                # max_pool2d with kernel 1 and stride 2 keeps every second pixel.
                last = last[:, :, ::2, ::2]
                extra.append(last)
            return extra
        if self.add_extra_convs == 'on_input':
            source = inputs[self.backbone_end_level - 1]
        elif self.add_extra_convs == 'on_lateral':
            source = laterals[-1]
        else:  # 'on_output'
            source = outs[-1]
        extra.append(self.fpn_convs[used_backbone_levels](source))
        for i in range(used_backbone_levels + 1, self.num_outs):
            last = relu(extra[-1]) if self.relu_before_extra_convs else extra[-1]
            extra.append(self.fpn_convs[i](last))
        return extra
