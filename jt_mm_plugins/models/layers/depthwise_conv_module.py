"""``DepthwiseConvModule``: NanoDet's depthwise-separable conv block
(``nanodet/model/module/conv.py``) in Jittor: a k x k depthwise conv, its norm, the activation, a
1x1 pointwise conv, its norm, the activation.

Children keep NanoDet's names (``depthwise``, ``dwnorm``, ``act``, ``pointwise``, ``pwnorm``), so a
NanoDet checkpoint's keys (``depthwise.weight``, ``dwnorm.running_mean`` ...) load by name.
"""
import math
from typing import Optional, Union

from jt_mm_plugins.models.layers.activation import build_activation_layer
from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

DEFAULT_ORDER = ('depthwise', 'dwnorm', 'act', 'pointwise', 'pwnorm', 'act')


class DepthwiseConvModule(jt.nn.Module):
    """Depthwise conv + norm + act, then pointwise (1x1) conv + norm + act, as NanoDet's.

    Initialisation as NanoDet's: Kaiming normal (``fan_out``, gain sqrt(2): NanoDet calls it with
    ``a=0`` for ReLU and LeakyReLU alike) for both convs, zero conv biases, norms 1 / 0.

    Args:
        in_channels (int): Input channels (the depthwise conv keeps them).
        out_channels (int): Output channels of the pointwise conv.
        kernel_size (int): Depthwise kernel size.
        stride (int): Depthwise stride. Defaults to 1.
        padding (int): Depthwise zero padding. Defaults to 0.
        dilation (int): Depthwise dilation. Defaults to 1.
        bias (bool | str): ``'auto'``: conv biases iff ``norm_cfg`` is None. Defaults to ``'auto'``.
        norm_cfg (dict, optional): Norm after each conv (:func:`build_norm_layer`); None: no norm
            layers (NanoDet's module then fails at its forward; here they are skipped).
            Defaults to ``dict(type='BN')``.
        activation (str | dict | None): NanoDet activation name, mmcv ``act_cfg`` or None
            (:func:`act_cfg_from_name`). Defaults to ``'ReLU'``.
        inplace (bool): Accepted for NanoDet's signature; no effect in Jittor. Defaults to True.
        order (tuple[str]): NanoDet's order of the six steps; a permutation of
            ``('depthwise', 'dwnorm', 'act', 'pointwise', 'pwnorm', 'act')``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride: int = 1,
                 padding: int = 0,
                 dilation: int = 1,
                 bias: Union[bool, str] = 'auto',
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 activation: Union[str, dict, None] = 'ReLU',
                 inplace: bool = True,
                 order: tuple = DEFAULT_ORDER) -> None:
        super().__init__()
        if not (isinstance(order, tuple) and sorted(order) == sorted(DEFAULT_ORDER)):
            raise InputError(f'DepthwiseConvModule: order must be a permutation of '
                             f'{DEFAULT_ORDER}, got {order!r}')
        if not (bias == 'auto' or isinstance(bias, bool)):
            raise InputError(f"DepthwiseConvModule: bias must be 'auto', True or False, got "
                             f'{bias!r}')
        if norm_cfg is not None and not isinstance(norm_cfg, dict):
            raise InputError(f'DepthwiseConvModule: norm_cfg must be a dict or None, got '
                             f'{norm_cfg!r}')
        self.activation = activation
        self.act_cfg = act_cfg_from_name(activation, 'DepthwiseConvModule')
        self.inplace = inplace
        self.order = order
        self.norm_cfg = norm_cfg
        self.with_norm = norm_cfg is not None
        self.with_bias = (not self.with_norm) if bias == 'auto' else bias
        self.depthwise = Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                                padding=padding, dilation=dilation, groups=in_channels,
                                bias=self.with_bias)
        self.pointwise = Conv2d(in_channels, out_channels, 1, bias=self.with_bias)
        # NanoDet exports these attributes of its convs
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = self.depthwise.kernel_size
        self.stride = self.depthwise.stride
        self.padding = self.depthwise.padding
        self.dilation = self.depthwise.dilation
        if self.with_norm:
            self.dwnorm = build_norm_layer(norm_cfg, in_channels)[1]
            self.pwnorm = build_norm_layer(norm_cfg, out_channels)[1]
        if self.act_cfg is not None:
            self.act = build_activation_layer(dict(self.act_cfg))
        self.init_weights()

    def init_weights(self) -> None:
        """NanoDet's: Kaiming normal (fan_out, gain sqrt(2)) convs, zero biases, norms 1 / 0."""
        for conv in (self.depthwise, self.pointwise):
            w = conv.weight
            fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            w.assign(jt.init.gauss(tuple(w.shape), 'float32', 0.0, math.sqrt(2.0 / fan_out)))
            if conv.bias is not None:
                conv.bias.assign(jt.zeros(conv.bias.shape, dtype='float32'))
        if self.with_norm:
            for norm in (self.dwnorm, self.pwnorm):
                if getattr(norm, 'weight', None) is not None:
                    norm.weight.assign(jt.ones(norm.weight.shape, dtype='float32'))
                    norm.bias.assign(jt.zeros(norm.bias.shape, dtype='float32'))

    def execute(self, x: jt.Var) -> jt.Var:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f'DepthwiseConvModule expects (N, {self.in_channels}, H, W) input, '
                             f'got {tuple(x.shape)}')
        for step in self.order:
            if step == 'act':
                if self.act_cfg is not None:
                    x = self.act(x)
            elif step in ('depthwise', 'pointwise') or self.with_norm:
                x = getattr(self, step)(x)
        return x
