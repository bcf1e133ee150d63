"""Jittor activation layers built from mmcv-style configs (``dict(type='ReLU')`` ...).

:func:`build_activation_layer` is the Jittor counterpart of mmcv's
``mmcv.cnn.build_activation_layer``: the same ``type`` names and the same keyword arguments as the
PyTorch layers mmcv builds (``negative_slope``, ``approximate``, ``inplace`` ...), so an mmdet config's
``act_cfg`` works unchanged. Each layer computes exactly what its PyTorch namesake computes, including
the gradient at the kinks (ReLU's gradient at 0 is 0, as in PyTorch).

``inplace`` is accepted for config compatibility and ignored: Jittor Vars are immutable, so every
activation returns a new Var.

They are registered in ``JITTOR_MODELS`` (mmcv registers its activations in ``MODELS`` too); custom
Jittor activations can be added with ``@JITTOR_MODELS.register_module()``.
"""
import math
from typing import Dict

import torch

from jt_mm_plugins.bridge.mirrors import register_torch_mirror
from jt_mm_plugins.ops.relu import relu
from jt_mm_plugins.registry import JITTOR_MODELS
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


class _InplaceActivation(jt.nn.Module):
    """Base of the activations whose PyTorch namesakes take ``inplace``: the flag is kept for
    config compatibility and ignored (Jittor has no in-place ops).

    Args:
        inplace (bool): Ignored. Defaults to False.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.ReLU)
class ReLU(_InplaceActivation):
    """``max(0, x)``, as ``torch.nn.ReLU``.

    Args:
        inplace (bool): Ignored (Jittor has no in-place ops). Defaults to False.
    """

    def execute(self, x: jt.Var) -> jt.Var:
        return relu(x)


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.LeakyReLU)
class LeakyReLU(_InplaceActivation):
    """``x`` for ``x > 0`` else ``negative_slope * x``, as ``torch.nn.LeakyReLU``.

    Args:
        negative_slope (float): Slope for negative inputs. Defaults to 0.01.
        inplace (bool): Ignored. Defaults to False.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def execute(self, x: jt.Var) -> jt.Var:
        return jt.ternary(x > 0, x, x * self.negative_slope)


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.ReLU6)
class ReLU6(_InplaceActivation):
    """``min(max(0, x), 6)``, as ``torch.nn.ReLU6``.

    Args:
        inplace (bool): Ignored. Defaults to False.
    """

    def execute(self, x: jt.Var) -> jt.Var:
        return _relu6(x)


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.ELU)
class ELU(_InplaceActivation):
    """``x`` for ``x > 0`` else ``alpha * (exp(x) - 1)``, as ``torch.nn.ELU``.

    Args:
        alpha (float): Scale of the negative part. Defaults to 1.0.
        inplace (bool): Ignored. Defaults to False.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = alpha

    def execute(self, x: jt.Var) -> jt.Var:
        return jt.ternary(x > 0, x, (x.exp() - 1) * self.alpha)


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.PReLU)
class PReLU(jt.nn.Module):
    """Leaky ReLU with a learnt slope, as ``torch.nn.PReLU`` (parameter ``weight``).

    Args:
        num_parameters (int): 1 (one slope shared by all channels) or the number of channels.
            Defaults to 1.
        init (float): Initial slope. Defaults to 0.25.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = jt.full((num_parameters, ), init, dtype='float32')

    def execute(self, x: jt.Var) -> jt.Var:
        if self.num_parameters == 1:
            slope = self.weight.reshape([1] * x.ndim)
        else:
            if x.ndim < 2 or x.shape[1] != self.num_parameters:
                raise InputError(f'PReLU with num_parameters={self.num_parameters} expects '
                                 f'(N, {self.num_parameters}, ...) input, got {tuple(x.shape)}')
            slope = self.weight.reshape([1, -1] + [1] * (x.ndim - 2))
        return jt.ternary(x > 0, x, x * slope)


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.Sigmoid)
class Sigmoid(jt.nn.Module):
    """``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``."""

    def execute(self, x: jt.Var) -> jt.Var:
        return x.sigmoid()


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.Tanh)
class Tanh(jt.nn.Module):
    """``tanh(x)``, as ``torch.nn.Tanh``."""

    def execute(self, x: jt.Var) -> jt.Var:
        return x.tanh()


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.SiLU)
class SiLU(_InplaceActivation):
    """``x * sigmoid(x)``, as ``torch.nn.SiLU``.

    Args:
        inplace (bool): Ignored. Defaults to False.
    """

    def execute(self, x: jt.Var) -> jt.Var:
        return x * x.sigmoid()


@JITTOR_MODELS.register_module()
class Swish(jt.nn.Module):
    """``x * sigmoid(x)``, as mmcv's ``Swish`` (no arguments)."""

    def execute(self, x: jt.Var) -> jt.Var:
        return x * x.sigmoid()


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.GELU)
class GELU(jt.nn.Module):
    """Gaussian Error Linear Unit, as ``torch.nn.GELU``.

    Args:
        approximate (str): ``'none'`` for the exact ``x * Phi(x)`` (with erf), ``'tanh'`` for the
            tanh approximation. Defaults to ``'none'``.
    """

    def __init__(self, approximate: str = 'none') -> None:
        super().__init__()
        if approximate not in ('none', 'tanh'):
            raise InputError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def execute(self, x: jt.Var) -> jt.Var:
        if self.approximate == 'tanh':
            inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
            return x * 0.5 * (inner.tanh() + 1.0)
        return x * 0.5 * (jt.erf(x * (1.0 / math.sqrt(2.0))) + 1.0)


@JITTOR_MODELS.register_module()
class HSigmoid(jt.nn.Module):
    """Hard sigmoid ``clamp((x + bias) / divisor, min_value, max_value)``, as mmcv's ``HSigmoid``.

    Args:
        bias (float): Added to the input. Defaults to 3.0.
        divisor (float): Divides the shifted input; must not be 0. Defaults to 6.0.
        min_value (float): Lower bound. Defaults to 0.0.
        max_value (float): Upper bound. Defaults to 1.0.
    """

    def __init__(self, bias: float = 3.0, divisor: float = 6.0, min_value: float = 0.0,
                 max_value: float = 1.0) -> None:
        super().__init__()
        if divisor == 0:
            raise InputError('HSigmoid: divisor must not be 0')
        self.bias = bias
        self.divisor = divisor
        self.min_value = min_value
        self.max_value = max_value

    def execute(self, x: jt.Var) -> jt.Var:
        y = (x + self.bias) / self.divisor
        return jt.minimum(jt.maximum(y, self.min_value), self.max_value)


@JITTOR_MODELS.register_module()
@register_torch_mirror(torch.nn.Hardswish)
class HSwish(_InplaceActivation):
    """Hard swish ``x * relu6(x + 3) / 6``, as ``torch.nn.Hardswish`` (mmcv's ``HSwish``).

    Args:
        inplace (bool): Ignored. Defaults to False.
    """

    def execute(self, x: jt.Var) -> jt.Var:
        return x * _relu6(x + 3.0) / 6.0


@JITTOR_MODELS.register_module(name='Clip')
@JITTOR_MODELS.register_module()
class Clamp(jt.nn.Module):
    """``clamp(x, min, max)``, as mmcv's ``Clamp`` (also registered as ``Clip``).

    Args:
        min (float): Lower bound. Defaults to -1.
        max (float): Upper bound. Defaults to 1.
    """

    def __init__(self, min: float = -1., max: float = 1.) -> None:  # noqa: A002 (mmcv's names)
        super().__init__()
        self.min = min
        self.max = max

    def execute(self, x: jt.Var) -> jt.Var:
        return jt.minimum(jt.maximum(x, self.min), self.max)


def _relu6(x: jt.Var) -> jt.Var:
    return jt.minimum(jt.maximum(x, 0.0), 6.0)


def build_activation_layer(cfg: Dict) -> jt.nn.Module:
    """Build a Jittor activation layer from an mmcv-style config.

    Args:
        cfg (dict): ``type`` (an activation registered in ``JITTOR_MODELS``, e.g. ``'ReLU'``, ``'LeakyReLU'``,
            ``'SiLU'``, ``'GELU'``, ``'HSwish'``) plus that layer's keyword arguments.

    Returns:
        jt.nn.Module: The activation layer.
    """
    return JITTOR_MODELS.build(cfg)
