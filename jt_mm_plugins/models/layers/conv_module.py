"""Jittor twin of mmcv's ``ConvModule`` (``mmcv/cnn/bricks/conv_module.py``): conv / norm / activation.

Children keep mmcv's names: ``conv`` (a :class:`~jt_mm_plugins.models.layers.conv2d.Conv2d`, that is
Jittor's ``nn.Conv2d``, whose ``weight`` / ``bias`` have torch's shapes), the norm layer under its
mmcv name (``bn`` or ``gn``, see :func:`build_norm_layer`) and ``activate``. So ``conv.weight``,
``bn.running_mean``, ``gn.bias`` ... are the keys of an mmcv ConvModule's state dict, and Jittor twins
of mmdet modules load mmdet checkpoints strictly.
"""
import math
import warnings
from typing import Dict, Optional, Tuple, Union

from jt_mm_plugins.models.layers.activation import build_activation_layer
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

IntPair = Union[int, Tuple[int, int]]

# mmcv gives these activations no ``inplace`` argument.
_ACTS_WITHOUT_INPLACE = ('Tanh', 'PReLU', 'Sigmoid', 'HSigmoid', 'Swish', 'GELU')
_SUPPORTED_CONVS = ('Conv', 'Conv2d')


def _as_pair(value: IntPair, name: str, minimum: int) -> Tuple[int, int]:
    pair = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise InputError(f'ConvModule: {name} must be an int >= {minimum} or a pair of them, '
                         f'got {value!r}')
    return pair


class ConvModule(jt.nn.Module):
    """A conv block that bundles conv / norm / activation layers, as mmcv's ``ConvModule``.

    ``bias='auto'`` gives the convolution a bias exactly when there is no norm layer. The weights are
    initialised as mmcv does: Kaiming normal (``fan_out``; ``leaky_relu`` gain when the activation is
    LeakyReLU) for the convolution, zero bias, and ones / zeros for the norm layer.

    Args:
        in_channels (int): Number of channels of the input feature map.
        out_channels (int): Number of channels produced by the convolution.
        kernel_size (int | tuple[int, int]): Size of the convolving kernel.
        stride (int | tuple[int, int]): Stride of the convolution. Defaults to 1.
        padding (int | tuple[int, int]): Zero padding added to both sides. Defaults to 0.
        dilation (int | tuple[int, int]): Spacing between kernel elements. Defaults to 1.
        groups (int): Number of blocked connections from input to output channels. Defaults to 1.
        bias (bool | str): ``'auto'``: bias iff ``norm_cfg`` is None. Defaults to ``'auto'``.
        conv_cfg (dict, optional): Only None or ``dict(type='Conv2d')`` (plain convolution) are
            supported. Defaults to None.
        norm_cfg (dict, optional): Norm layer config for :func:`build_norm_layer`, e.g.
            ``dict(type='BN')`` or ``dict(type='GN', num_groups=8)``. Defaults to None.
        act_cfg (dict, optional): Activation config for :func:`build_activation_layer`.
            Defaults to ``dict(type='ReLU')``.
        inplace (bool): Passed to activations that take it (no effect in Jittor). Defaults to True.
        with_spectral_norm (bool): Not supported in Jittor; must be False. Defaults to False.
        padding_mode (str): Only ``'zeros'`` is supported. Defaults to ``'zeros'``.
        order (tuple[str]): Order of ``'conv'``, ``'norm'`` and ``'act'``.
            Defaults to ``('conv', 'norm', 'act')``.
        efficient_conv_bn_eval (bool): mmcv folds BN into the convolution in eval mode for speed;
            the result is the same up to rounding, so here it is accepted and the layers run
            unfused. Defaults to False.
    """

    _abbr_ = 'conv_block'

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntPair,
                 stride: IntPair = 1,
                 padding: IntPair = 0,
                 dilation: IntPair = 1,
                 groups: int = 1,
                 bias: Union[bool, str] = 'auto',
                 conv_cfg: Optional[Dict] = None,
                 norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = dict(type='ReLU'),
                 inplace: bool = True,
                 with_spectral_norm: bool = False,
                 padding_mode: str = 'zeros',
                 order: tuple = ('conv', 'norm', 'act'),
                 efficient_conv_bn_eval: bool = False) -> None:
        super().__init__()
        self._check_args(conv_cfg, norm_cfg, act_cfg, with_spectral_norm, padding_mode, order,
                         bias)
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.inplace = inplace
        self.with_spectral_norm = with_spectral_norm
        self.order = tuple(order)
        self.efficient_conv_bn_eval = efficient_conv_bn_eval
        self.with_norm = norm_cfg is not None
        self.with_activation = act_cfg is not None
        self.with_bias = (not self.with_norm) if bias == 'auto' else bias

        self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self._init_norm(in_channels, out_channels)
        if self.with_activation:
            self._init_activation()
        self.init_weights()

    @staticmethod
    def _check_args(conv_cfg, norm_cfg, act_cfg, with_spectral_norm, padding_mode, order,
                    bias) -> None:
        for name, cfg in (('conv_cfg', conv_cfg), ('norm_cfg', norm_cfg), ('act_cfg', act_cfg)):
            if cfg is not None and not isinstance(cfg, dict):
                raise TypeError(f'ConvModule: {name} must be a dict or None, got {cfg!r}')
        if conv_cfg is not None and (conv_cfg.get('type') not in _SUPPORTED_CONVS
                                     or len(conv_cfg) != 1):
            raise NotImplementedError(
                f'ConvModule (Jittor): conv_cfg={conv_cfg!r} is not supported; only None or '
                "dict(type='Conv2d') (plain convolution) are implemented.")
        if with_spectral_norm:
            raise NotImplementedError('ConvModule (Jittor): with_spectral_norm=True is not supported')
        if padding_mode != 'zeros':
            raise NotImplementedError(
                f"ConvModule (Jittor): padding_mode={padding_mode!r} is not supported; use 'zeros'")
        if (not isinstance(order, (tuple, list)) or len(order) != 3
                or set(order) != {'conv', 'norm', 'act'}):
            raise InputError('ConvModule: order must be a permutation of ("conv", "norm", "act"), '
                             f'got {order!r}')
        if not (bias == 'auto' or isinstance(bias, bool)):
            raise InputError(f"ConvModule: bias must be 'auto', True or False, got {bias!r}")

    def _init_conv(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                   stride: IntPair, padding: IntPair, dilation: IntPair, groups: int) -> None:
        if not (isinstance(groups, int) and groups >= 1 and in_channels % groups == 0
                and out_channels % groups == 0):
            raise InputError(f'ConvModule: in_channels ({in_channels}) and out_channels '
                             f'({out_channels}) must be divisible by groups ({groups})')
        self.conv = Conv2d(
            in_channels,
            out_channels,
            _as_pair(kernel_size, 'kernel_size', 1),
            stride=_as_pair(stride, 'stride', 1),
            padding=_as_pair(padding, 'padding', 0),
            dilation=_as_pair(dilation, 'dilation', 1),
            groups=groups,
            bias=self.with_bias)
        # mmcv exports these attributes of its conv.
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = self.conv.kernel_size
        self.stride = self.conv.stride
        self.padding = padding
        self.dilation = self.conv.dilation
        self.groups = groups

    def _init_norm(self, in_channels: int, out_channels: int) -> None:
        if not self.with_norm:
            self.norm_name = None
            return
        # The norm normalises the conv output if it comes after the conv, else the input.
        norm_after_conv = self.order.index('norm') > self.order.index('conv')
        norm_channels = out_channels if norm_after_conv else in_channels
        self.norm_name, norm = build_norm_layer(self.norm_cfg, norm_channels)
        setattr(self, self.norm_name, norm)
        if self.with_bias and isinstance(norm, BatchNorm2d):
            warnings.warn('Unnecessary conv bias before batch norm')

    def _init_activation(self) -> None:
        act_cfg = dict(self.act_cfg)
        if act_cfg.get('type') not in _ACTS_WITHOUT_INPLACE:
            act_cfg.setdefault('inplace', self.inplace)
        self.activate = build_activation_layer(act_cfg)

    @property
    def norm(self) -> Optional[jt.nn.Module]:
        """The norm layer (``self.bn`` / ``self.gn`` ...) or None."""
        return getattr(self, self.norm_name) if self.norm_name else None

    def init_weights(self) -> None:
        """Kaiming-normal conv weights (``fan_out``), zero conv bias, unit-scale / zero-shift norm."""
        if self.with_activation and self.act_cfg['type'] == 'LeakyReLU':
            slope = self.act_cfg.get('negative_slope', 0.01)
            gain = math.sqrt(2.0 / (1 + slope**2))
        else:
            gain = math.sqrt(2.0)
        weight = self.conv.weight
        fan_out = weight.shape[0] * weight.shape[2] * weight.shape[3]
        weight.assign(jt.init.gauss(tuple(weight.shape), 'float32', 0.0, gain / math.sqrt(fan_out)))
        if self.conv.bias is not None:
            self.conv.bias.assign(jt.zeros(self.conv.bias.shape, dtype='float32'))
        norm = self.norm
        if norm is not None and getattr(norm, 'weight', None) is not None:
            norm.weight.assign(jt.ones(norm.weight.shape, dtype='float32'))
            norm.bias.assign(jt.zeros(norm.bias.shape, dtype='float32'))

    def execute(self, x: jt.Var, activate: bool = True, norm: bool = True) -> jt.Var:
        """Apply the layers in ``self.order``.

        Args:
            x (jt.Var): Input of shape ``(N, in_channels, H, W)``.
            activate (bool): Apply the activation. Defaults to True.
            norm (bool): Apply the norm layer. Defaults to True.

        Returns:
            jt.Var: The output feature map.
        """
        for layer in self.order:
            if layer == 'conv':
                if x.ndim != 4 or x.shape[1] != self.in_channels:
                    raise InputError(f'ConvModule expects (N, {self.in_channels}, H, W) input, got '
                                     f'shape {tuple(x.shape)}')
                x = self.conv(x)
            elif layer == 'norm' and norm and self.with_norm:
                x = self.norm(x)
            elif layer == 'act' and activate and self.with_activation:
                x = self.activate(x)
        return x
