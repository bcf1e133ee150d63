"""Jittor twin of mmdet 3.3.0's ``FPN`` neck (``mmdet/models/necks/fpn.py``)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.ops.relu import relu
from jt_mm_plugins.ops.upsample_add import upsample_x2_add, upsample_x2_add_supported
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

_EXTRA_CONV_SOURCES = ('on_input', 'on_lateral', 'on_output')
_UPSAMPLE_MODES = ('nearest', 'nearest-exact', 'bilinear')
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
        if cfg['mode'] not in _UPSAMPLE_MODES:
            raise InputError(f"JittorFPN: upsample_cfg mode {cfg['mode']!r} is not implemented; use "
                             f'one of {_UPSAMPLE_MODES}')
        if 'align_corners' in cfg and cfg['mode'] != 'bilinear':
            raise InputError('JittorFPN: align_corners can only be set with mode="bilinear" (as in '
                             f"torch.nn.functional.interpolate), got mode {cfg['mode']!r}")
        if 'scale_factor' in cfg:
            _scale_pair(cfg['scale_factor'])  # validates
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
            target_hw = tuple(laterals[i - 1].shape[2:])
            if self._exact_nearest_x2(laterals[i], laterals[i - 1]):
                # the same values, as one multi-threaded CPU kernel (and its backward)
                laterals[i - 1] = upsample_x2_add(laterals[i], laterals[i - 1])
                continue
            if 'scale_factor' in self._upsample:
                upsampled = torch_like_interpolate(laterals[i], **self._upsample)
            else:
                upsampled = torch_like_interpolate(laterals[i], size=target_hw, **self._upsample)
            if tuple(upsampled.shape[2:]) != target_hw:
                raise InputError(
                    f'JittorFPN: level {i + self.start_level} upsampled with '
                    f'{self._upsample} has size {tuple(upsampled.shape[2:])}, but level '
                    f'{i - 1 + self.start_level} has size {target_hw}')
            laterals[i - 1] = laterals[i - 1] + upsampled
        return laterals

    def _exact_nearest_x2(self, coarse: jt.Var, fine: jt.Var) -> bool:
        """Whether this step is ``fine + nearest x2 upsampling of coarse`` that
        :func:`upsample_x2_add` computes: mode 'nearest' and, with a ``scale_factor``, exactly 2."""
        if self._upsample['mode'] != 'nearest' or not upsample_x2_add_supported(coarse, fine):
            return False
        return 'scale_factor' not in self._upsample or _scale_pair(
            self._upsample['scale_factor']) == (2.0, 2.0)

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


def _scale_pair(scale_factor: Union[float, Sequence[float]]) -> Tuple[float, float]:
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
    if mode not in _UPSAMPLE_MODES:
        raise InputError(f'torch_like_interpolate: mode {mode!r} is not implemented; use one of '
                         f'{_UPSAMPLE_MODES}')
    if align_corners is not None and mode != 'bilinear':
        raise InputError('torch_like_interpolate: align_corners can only be set with bilinear mode')
    in_hw = tuple(x.shape[2:])
    if scale_factor is not None:
        scales: Tuple[Optional[float], Optional[float]] = _scale_pair(scale_factor)
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
