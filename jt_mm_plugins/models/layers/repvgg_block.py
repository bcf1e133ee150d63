"""``RepVGGBlock`` (`RepVGG <https://arxiv.org/abs/2101.03697>`_) as YOLOv6 builds it
(``yolov6/layers/common.py``), in Jittor, with its parameter names.

Training form: ``relu(bn(conv3x3(x)) + bn(conv1x1(x)) + bn(x))`` (``rbr_dense``, ``rbr_1x1``,
``rbr_identity``; the identity branch exists only when the input and output channels are equal and
the stride is 1). Deploy form (``deploy=True`` or after :meth:`RepVGGBlock.switch_to_deploy`): one
3x3 convolution with bias, ``rbr_reparam``, holding the three branches with their BatchNorms'
running statistics folded in; the same function in eval mode.

The fused kernel and bias are computed in float64 from the branch weights and cast to the
parameters' dtype (YOLOv6 computes them in float32), so a fused block is at most float32 rounding
away from YOLOv6's.
"""
from typing import Optional, Tuple

import numpy as np

from jt_mm_plugins.models.layers.activation import ReLU
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.sim_conv import yolov6_norm
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


class ConvBN(jt.nn.Module):
    """A bias-free convolution followed by a norm (YOLOv6's ``conv_bn``: ``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, groups: int = 1, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           groups=groups, bias=False)
        self.bn = yolov6_norm(norm_cfg, out_channels)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.bn(self.conv(x))


def _bn_scale_shift(bn) -> Tuple[np.ndarray, np.ndarray]:
    """Float64 ``(gamma / std, beta - mean * gamma / std)`` of an eval-mode BatchNorm."""
    std = np.sqrt(bn.running_var.numpy().astype(np.float64) + bn.eps)
    gamma = bn.weight.numpy().astype(np.float64)
    scale = gamma / std
    return scale, bn.bias.numpy().astype(np.float64) - bn.running_mean.numpy() * scale


class RepVGGBlock(jt.nn.Module):
    """RepVGG block: 3x3 conv-BN + 1x1 conv-BN (+ identity BN), ReLU; re-parameterisable.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Only 3 (YOLOv6 asserts it). Defaults to 3.
        stride (int): Stride of both convolutions. Defaults to 1.
        padding (int): Only 1. Defaults to 1.
        dilation (int): Dilation of the deploy conv (YOLOv6 passes it there only). Defaults to 1.
        groups (int): Groups of both convolutions. Defaults to 1.
        padding_mode (str): Only ``'zeros'``. Defaults to ``'zeros'``.
        deploy (bool): Build the fused form (``rbr_reparam``). Defaults to False.
        use_se (bool): Must be False (YOLOv6 raises NotImplementedError too). Defaults to False.
        norm_cfg (dict, optional): The branches' norm; ``None``: YOLOv6's trained BatchNorm
            (eps 1e-3, momentum 0.03, see ``sim_conv.YOLOV6_BN``). Must be a BatchNorm to fuse.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, groups: int = 1,
                 padding_mode: str = 'zeros', deploy: bool = False, use_se: bool = False,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if use_se:
            raise NotImplementedError('se block not supported yet')
        if kernel_size != 3 or padding != 1 or padding_mode != 'zeros':
            raise InputError(f'RepVGGBlock: only kernel_size=3, padding=1, padding_mode="zeros" '
                             f'(as YOLOv6), got {kernel_size}, {padding}, {padding_mode!r}')
        if in_channels % groups or out_channels % groups:
            raise InputError(f'RepVGGBlock: groups={groups} must divide in_channels '
                             f'({in_channels}) and out_channels ({out_channels})')
        self.deploy, self.groups, self.stride, self.dilation = deploy, groups, stride, dilation
        self.in_channels, self.out_channels = in_channels, out_channels
        self.nonlinearity = ReLU()
        self.se = jt.nn.Identity()
        if deploy:
            self.rbr_reparam = self._fused_conv()
        else:
            self.rbr_identity = (yolov6_norm(norm_cfg, in_channels)
                                 if out_channels == in_channels and stride == 1 else None)
            self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, 1, groups, norm_cfg)
            self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride, 0, groups, norm_cfg)

    def _fused_conv(self) -> Conv2d:
        return Conv2d(self.in_channels, self.out_channels, 3, stride=self.stride, padding=1,
                      dilation=self.dilation, groups=self.groups, bias=True)

    def execute(self, x: jt.Var) -> jt.Var:
        if self.deploy:
            return self.nonlinearity(self.se(self.rbr_reparam(x)))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(self.se(out))

    def get_equivalent_kernel_bias(self) -> Tuple[np.ndarray, np.ndarray]:
        """The fused 3x3 kernel and bias (float64 numpy arrays) of the three branches, with the
        BatchNorms' running statistics (the eval-mode function)."""
        if self.deploy:
            raise RuntimeError('RepVGGBlock: already in deploy mode (no branches to fuse)')
        in_per_group = self.in_channels // self.groups
        scale, bias = _bn_scale_shift(self.rbr_dense.bn)
        kernel = self.rbr_dense.conv.weight.numpy().astype(np.float64) * scale[:, None, None, None]
        scale1, bias1 = _bn_scale_shift(self.rbr_1x1.bn)
        kernel[:, :, 1, 1] += self.rbr_1x1.conv.weight.numpy()[:, :, 0, 0] * scale1[:, None]
        bias = bias + bias1
        if self.rbr_identity is not None:
            scale_id, bias_id = _bn_scale_shift(self.rbr_identity)
            channels = np.arange(self.in_channels)
            kernel[channels, channels % in_per_group, 1, 1] += scale_id
            bias = bias + bias_id
        return kernel, bias

    def switch_to_deploy(self) -> None:
        """Replace the branches by ``rbr_reparam`` (no-op in deploy mode)."""
        if self.deploy:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        dtype = self.rbr_dense.conv.weight.dtype
        fused = self._fused_conv()
        fused.weight.assign(jt.array(kernel).cast(dtype))
        fused.bias.assign(jt.array(bias).cast(dtype))
        for name in ('rbr_dense', 'rbr_1x1', 'rbr_identity'):
            delattr(self, name)
        self.rbr_reparam = fused
        self.deploy = True


def switch_to_deploy(module: jt.nn.Module) -> jt.nn.Module:
    """Fuse every :class:`RepVGGBlock` inside ``module`` (in place); returns ``module``."""
    for m in list(module.modules()):
        if isinstance(m, RepVGGBlock):
            m.switch_to_deploy()
    return module
