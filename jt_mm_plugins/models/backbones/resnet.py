"""Jittor twin of mmdet 3.3.0's ``ResNet`` backbone (``mmdet/models/backbones/resnet.py``).

Submodule and parameter names equal mmdet's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0`` ...), so an mmdet ResNet state dict loads strictly into
the bridged wrapper ``JittorResNet`` that :func:`register_jittor_module` places in mmdet's
``MODELS`` (torchvision ImageNet checkpoints use the same names, plus ``fc.*``).
"""
import warnings
from typing import List, Optional, Sequence, Tuple

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.activation import relu
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.norm import GroupNorm, build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

nn = jt.nn
init = jt.init


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
          padding: int = 0, dilation: int = 1) -> Conv2d:
    """A bias-free convolution, as every convolution of ResNet is."""
    return Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                  dilation=dilation, bias=False)


def _set_eval(module: jt.Module) -> None:
    """Put ``module`` and its children in eval mode without touching gradient flags.

    Jittor's ``Module.eval()`` also stops the gradients of all parameters; mmdet's ``m.eval()``
    only changes the BatchNorm behaviour, so we set the mode flag alone.
    """
    for m in module.modules():
        m.is_train = False


def freeze_modules(modules: List[jt.Module], keep_mode: Tuple[jt.Module, ...] = ()) -> None:
    """No gradients for the parameters of ``modules``, which run in eval mode (except those in
    ``keep_mode``, whose mode flag stays)."""
    for module in modules:
        if not any(module is kept for kept in keep_mode):
            _set_eval(module)
        for param in module.parameters():
            param.requires_grad = False


def train_keeping_frozen(module: jt.Module, frozen: List[jt.Module], norm_eval: bool,
                         keep_mode: Tuple[jt.Module, ...] = ()) -> jt.Module:
    """A backbone's ``train()``: training mode, the ``frozen`` modules frozen and in eval mode
    (see :func:`freeze_modules`), and every BatchNorm in eval mode with ``norm_eval``."""
    jt.Module.train(module)
    freeze_modules(frozen, keep_mode)
    if norm_eval:
        for m in module.modules():
            if isinstance(m, BatchNorm2d):
                m.is_train = False
    return module


class _ResBlock(jt.Module):
    """What :class:`BasicBlock` and :class:`Bottleneck` share: their first two norm layers under
    mmdet's names (``bn1``/``gn1`` ..., reached as ``norm1``/``norm2``) and the residual addition.
    Subclasses set ``norm1_name``, ``norm2_name`` and ``downsample``.
    """

    @property
    def norm1(self) -> jt.Module:
        """Norm layer after the first convolution."""
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> jt.Module:
        """Norm layer after the second convolution."""
        return getattr(self, self.norm2_name)

    def _add_identity(self, out: jt.Var, x: jt.Var) -> jt.Var:
        """``relu(out + identity)``, the identity projected by ``downsample`` if there is one."""
        identity = x if self.downsample is None else self.downsample(x)
        return relu(out + identity)


class BasicBlock(_ResBlock):
    """Basic residual block of ResNet-18/34 (two 3x3 convolutions).

    Args:
        inplanes (int): Input channels.
        planes (int): Output channels of the block.
        stride (int): Stride of the first convolution. Defaults to 1.
        dilation (int): Dilation of the first convolution. Defaults to 1.
        downsample (nn.Sequential, optional): Projection of the identity branch. Defaults to None.
        style (str): ``'pytorch'`` or ``'caffe'``; a BasicBlock puts the stride on its first 3x3
            convolution either way, as mmdet does. Defaults to ``'pytorch'``.
        norm_cfg (dict): Config of the norm layers. Defaults to ``dict(type='BN')``.
    """
    expansion = 1

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Sequential] = None,
                 style: str = 'pytorch',
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix='1')
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix='2')
        self.conv1 = _conv(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation)
        setattr(self, self.norm1_name, norm1)
        self.conv2 = _conv(planes, planes, 3, padding=1)
        setattr(self, self.norm2_name, norm2)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    @property
    def last_norm(self) -> jt.Module:
        """The norm that ``zero_init_residual`` zeroes."""
        return self.norm2

    def execute(self, x: jt.Var) -> jt.Var:
        out = relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self._add_identity(out, x)


class Bottleneck(_ResBlock):
    """Bottleneck residual block of ResNet-50/101/152 (1x1, 3x3, 1x1 convolutions).

    Args:
        inplanes (int): Input channels.
        planes (int): Middle channels; the block outputs ``planes * 4``.
        stride (int): Stride of the block. Defaults to 1.
        dilation (int): Dilation of the 3x3 convolution. Defaults to 1.
        downsample (nn.Sequential, optional): Projection of the identity branch. Defaults to None.
        style (str): ``'pytorch'`` puts the stride on the 3x3 convolution, ``'caffe'`` on the
            first 1x1 convolution. Defaults to ``'pytorch'``.
        norm_cfg (dict): Config of the norm layers. Defaults to ``dict(type='BN')``.
    """
    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Sequential] = None,
                 style: str = 'pytorch',
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        if style not in ('pytorch', 'caffe'):
            raise InputError(f"Bottleneck: style must be 'pytorch' or 'caffe', got {style!r}")
        self.inplanes = inplanes
        self.planes = planes
        self.stride = stride
        self.dilation = dilation
        self.style = style
        self.conv1_stride, self.conv2_stride = (1, stride) if style == 'pytorch' else (stride, 1)

        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix='1')
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix='2')
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, planes * self.expansion, postfix='3')
        self.conv1 = _conv(inplanes, planes, 1, stride=self.conv1_stride)
        setattr(self, self.norm1_name, norm1)
        self.conv2 = _conv(planes, planes, 3, stride=self.conv2_stride, padding=dilation,
                           dilation=dilation)
        setattr(self, self.norm2_name, norm2)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        setattr(self, self.norm3_name, norm3)
        self.downsample = downsample

    @property
    def norm3(self) -> jt.Module:
        """Norm layer after the third convolution (the last one of the block)."""
        return getattr(self, self.norm3_name)

    @property
    def last_norm(self) -> jt.Module:
        """The norm that ``zero_init_residual`` zeroes."""
        return self.norm3

    def execute(self, x: jt.Var) -> jt.Var:
        out = relu(self.norm1(self.conv1(x)))
        out = relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self._add_identity(out, x)


def make_res_layer(block: type,
                   inplanes: int,
                   planes: int,
                   num_blocks: int,
                   stride: int = 1,
                   dilation: int = 1,
                   style: str = 'pytorch',
                   norm_cfg: dict = dict(type='BN')) -> nn.Sequential:
    """Stack ``num_blocks`` blocks into one stage, as mmdet's ``ResLayer`` (downsample first).

    The identity branch of the first block gets a 1x1 convolution + norm (``downsample.0`` and
    ``downsample.1``) when the stride or the channel count changes.
    """
    downsample = None
    out_channels = planes * block.expansion
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            _conv(inplanes, out_channels, 1, stride=stride),
            build_norm_layer(norm_cfg, out_channels)[1])
    blocks = [block(inplanes, planes, stride=stride, dilation=dilation, downsample=downsample,
                    style=style, norm_cfg=norm_cfg)]
    for _ in range(1, num_blocks):
        blocks.append(block(out_channels, planes, stride=1, dilation=dilation, style=style,
                            norm_cfg=norm_cfg))
    return nn.Sequential(*blocks)


@register_jittor_module()
class JittorResNet(jt.Module):
    """ResNet backbone in Jittor, a twin of mmdet's ``ResNet``.

    `Deep Residual Learning for Image Recognition <https://arxiv.org/abs/1512.03385>`_.

    Parameter names equal mmdet's, so ``ResNet`` checkpoints load into the bridged
    ``JittorResNet`` strictly. Weights are initialised like mmdet's default ``init_cfg``: Kaiming
    normal (fan_out, ReLU) for convolutions, 1/0 for norm weight/bias, and zero weight for the last
    norm of each block when ``zero_init_residual``. Load weights with ``init_cfg=dict(type=
    'Pretrained', checkpoint=...)`` or ``load_from`` (handled by the bridged wrapper / mmengine).

    Args:
        depth (int): Depth of resnet, from {18, 34, 50, 101, 152}.
        in_channels (int): Number of input image channels. Defaults to 3.
        stem_channels (int, optional): Channels of the stem; ``base_channels`` when None.
            Defaults to None.
        base_channels (int): Channels of the first stage (before expansion). Defaults to 64.
        num_stages (int): Number of stages, 1 to 4. Defaults to 4.
        strides (Sequence[int]): Stride of the first block of each stage. Defaults to (1, 2, 2, 2).
        dilations (Sequence[int]): Dilation of each stage. Defaults to (1, 1, 1, 1).
        out_indices (Sequence[int]): Stages whose outputs are returned. Defaults to (0, 1, 2, 3).
        style (str): ``'pytorch'`` (stride on the 3x3 conv) or ``'caffe'`` (stride on the first
            1x1 conv of a Bottleneck). Defaults to ``'pytorch'``.
        deep_stem (bool): Only False is supported (ResNetV1c/d stems are not). Defaults to False.
        avg_down (bool): Only False is supported. Defaults to False.
        frozen_stages (int): Stages to freeze (no gradient, eval mode); 0 freezes the stem only,
            -1 nothing. Defaults to -1.
        conv_cfg (dict, optional): Only None (plain convolution) is supported. Defaults to None.
        norm_cfg (dict): Norm config for :func:`build_norm_layer` (``BN``, ``SyncBN``, ``GN``),
            with optional ``requires_grad``. Defaults to ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to True.
        dcn (dict, optional): Not supported; must be None. Defaults to None.
        stage_with_dcn (Sequence[bool]): Must not enable DCN. Defaults to (False,) * 4.
        plugins (list[dict], optional): Not supported; must be None. Defaults to None.
        with_cp (bool): Gradient checkpointing; ignored with a warning. Defaults to False.
        zero_init_residual (bool): Zero the last norm weight of each block. Defaults to True.
        pretrained (str, optional): Not supported (no downloads); use ``init_cfg``.
            Defaults to None.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3))
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: Optional[int] = None,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 dcn: Optional[dict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[List[dict]] = None,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 pretrained: Optional[str] = None) -> None:
        super().__init__()
        self._check_args(depth, num_stages, strides, dilations, out_indices, style, deep_stem,
                         avg_down, conv_cfg, dcn, stage_with_dcn, plugins, pretrained)
        if with_cp:
            warnings.warn('JittorResNet: with_cp (gradient checkpointing) is not implemented in '
                          'Jittor and is ignored; memory use is that of with_cp=False.',
                          UserWarning, stacklevel=2)
        self.depth = depth
        self.stem_channels = base_channels if stem_channels is None else stem_channels
        self.base_channels = base_channels
        self.num_stages = num_stages
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.out_indices = tuple(out_indices)
        self.style = style
        self.deep_stem = deep_stem
        self.avg_down = avg_down
        self.frozen_stages = frozen_stages
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual
        # mmdet's attributes for what this twin refuses (checked above): read by mmdet-side code
        self.conv_cfg, self.dcn, self.plugins = conv_cfg, dcn, plugins
        self.stage_with_dcn = stage_with_dcn
        self.block, stage_blocks = self.arch_settings[depth]
        self.stage_blocks = stage_blocks[:num_stages]

        self._make_stem_layer(in_channels, self.stem_channels)
        self._make_res_layers()
        self._init_weights()
        self._freeze_stages()
        self.feat_dim = self.block.expansion * base_channels * 2**(len(self.stage_blocks) - 1)
        self.inplanes = self.feat_dim  # mmdet's value after building the last stage

    @classmethod
    def _check_args(cls, depth, num_stages, strides, dilations, out_indices, style, deep_stem,
                    avg_down, conv_cfg, dcn, stage_with_dcn, plugins, pretrained) -> None:
        """Reject what mmdet rejects, and what this twin does not implement, by name."""
        if depth not in cls.arch_settings:
            raise KeyError(f'JittorResNet: invalid depth {depth}; choose from '
                           f'{sorted(cls.arch_settings)}')
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError(f'JittorResNet: pretrained must be a str or None, got {pretrained!r}')
        if pretrained is not None:
            raise InputError(
                f'JittorResNet: pretrained={pretrained!r} is not supported (it would download or '
                'load weights implicitly). Use init_cfg=dict(type="Pretrained", checkpoint=PATH) '
                'or load_from instead.')
        if not 1 <= num_stages <= 4:
            raise InputError(f'JittorResNet: num_stages must be in [1, 4], got {num_stages}')
        if not len(strides) == len(dilations) == num_stages:
            raise InputError(
                f'JittorResNet: strides {tuple(strides)} and dilations {tuple(dilations)} must '
                f'both have num_stages={num_stages} entries')
        if len(out_indices) == 0 or max(out_indices) >= num_stages or min(out_indices) < 0:
            raise InputError(f'JittorResNet: out_indices {tuple(out_indices)} must be non-empty '
                             f'and within [0, {num_stages - 1}] (num_stages={num_stages})')
        if style not in ('pytorch', 'caffe'):
            raise InputError(f"JittorResNet: style must be 'pytorch' or 'caffe', got {style!r}")
        if deep_stem:
            raise NotImplementedError('JittorResNet: deep_stem=True (ResNetV1c/V1d stem) is not '
                                      'implemented; use deep_stem=False.')
        if avg_down:
            raise NotImplementedError('JittorResNet: avg_down=True (ResNetV1d downsampling) is '
                                      'not implemented; use avg_down=False.')
        if conv_cfg is not None:
            raise NotImplementedError(f'JittorResNet: conv_cfg={conv_cfg!r} is not supported; '
                                      'only plain convolutions (conv_cfg=None).')
        if dcn is not None or any(stage_with_dcn):
            raise NotImplementedError('JittorResNet: deformable convolution (dcn / '
                                      'stage_with_dcn) is not implemented; use dcn=None.')
        if plugins is not None:
            raise NotImplementedError('JittorResNet: plugins are not implemented; use '
                                      'plugins=None.')

    @property
    def norm1(self) -> jt.Module:
        """The stem's norm layer (``bn1``)."""
        return getattr(self, self.norm1_name)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        """7x7/2 convolution, norm, ReLU, then a 3x3/2 max pool."""
        self.conv1 = _conv(in_channels, stem_channels, 7, stride=2, padding=3)
        self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix='1')
        setattr(self, self.norm1_name, norm1)
        self.maxpool = nn.Pool(kernel_size=3, stride=2, padding=1, op='maximum')

    def _make_res_layers(self) -> None:
        """Build ``layer1`` .. ``layer{num_stages}``."""
        inplanes = self.stem_channels
        self.res_layers = []
        for i, num_blocks in enumerate(self.stage_blocks):
            planes = self.base_channels * 2**i
            res_layer = make_res_layer(self.block, inplanes, planes, num_blocks,
                                       stride=self.strides[i], dilation=self.dilations[i],
                                       style=self.style, norm_cfg=self.norm_cfg)
            inplanes = planes * self.block.expansion
            layer_name = f'layer{i + 1}'
            setattr(self, layer_name, res_layer)
            self.res_layers.append(layer_name)

    def _init_weights(self) -> None:
        """mmdet's default init: Kaiming for convs, constant for norms, zero residual norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, a=0, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, (BatchNorm2d, GroupNorm)) and getattr(m, 'weight', None) is not None:
                init.constant_(m.weight, 1.0)
                init.constant_(m.bias, 0.0)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    init.constant_(m.last_norm.weight, 0.0)
                    init.constant_(m.last_norm.bias, 0.0)

    def _frozen_modules(self) -> List[jt.Module]:
        """The stem (``conv1``, ``bn1``) and ``layer1`` .. ``layer{frozen_stages}``."""
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.norm1] + [
            getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]

    def _freeze_stages(self) -> None:
        """Stop the gradients of the frozen stages and keep them in eval mode (as mmdet: the stem
        conv's flag stays, which has no effect on it)."""
        freeze_modules(self._frozen_modules(), keep_mode=(self.conv1, ))

    def train(self, mode: bool = True) -> 'JittorResNet':
        """Training mode, keeping frozen stages (and all BatchNorms if ``norm_eval``) in eval."""
        if not mode:
            return self.eval()
        return train_keeping_frozen(self, self._frozen_modules(), self.norm_eval,
                                    keep_mode=(self.conv1, ))

    def execute(self, x: jt.Var) -> Tuple[jt.Var, ...]:
        """Return the feature maps of the stages in ``out_indices``."""
        x = relu(self.norm1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
