"""YOLOv6's plain conv blocks (``yolov6/layers/common.py``) in Jittor: a bias-free convolution
with ``padding = kernel_size // 2``, a norm and an activation, under YOLOv6's names ``conv``,
``bn``, ``act``.

* :class:`SimConv`: ReLU (used by SimSPPF / SimCSPSPPF and the Gold-YOLO neck's reduce layers);
* :class:`Conv`: SiLU (Gold-YOLO's ``Conv`` in the neck's ``low_IFM`` and EffiDeHead's stems).

The norm defaults to :data:`YOLOV6_BN` (``eps`` 1e-3, ``momentum`` 0.03): YOLOv6's model builder
(``initialize_weights``) sets these on every ``nn.BatchNorm2d`` of the network, so a trained
YOLOv6 / Gold-YOLO model normalises with them (the bare PyTorch classes keep torch's defaults until
the builder runs).
"""
from typing import Optional

from jt_mm_plugins.models.layers.activation import ReLU, SiLU
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

# The BatchNorm of a network built by YOLOv6's ``build_network`` + ``initialize_weights``.
YOLOV6_BN = dict(type='BN', eps=1e-3, momentum=0.03)


def yolov6_norm(norm_cfg: Optional[dict], channels: int) -> jt.nn.Module:
    """The norm layer of ``channels`` from ``norm_cfg`` (``None``: :data:`YOLOV6_BN`)."""
    return build_norm_layer(dict(YOLOV6_BN if norm_cfg is None else norm_cfg), channels)[1]


class _ConvNormAct(jt.nn.Module):
    """``act(bn(conv(x)))``; subclasses set the activation class ``act_layer``."""

    act_layer = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int = 1, bias: bool = False, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1:
            raise InputError(f'{type(self).__name__}: kernel_size and stride must be >= 1, got '
                             f'{kernel_size} and {stride}')
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                           padding=kernel_size // 2, groups=groups, bias=bias)
        self.bn = yolov6_norm(norm_cfg, out_channels)
        self.act = self.act_layer()

    def execute(self, x: jt.Var) -> jt.Var:
        return self.act(self.bn(self.conv(x)))


class SimConv(_ConvNormAct):
    """Conv, BN, ReLU (YOLOv6's ``SimConv``)."""

    act_layer = ReLU


class Conv(_ConvNormAct):
    """Conv, BN, SiLU (YOLOv6's ``Conv``)."""

    act_layer = SiLU
