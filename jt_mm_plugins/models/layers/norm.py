"""Jittor normalisation layers built from mmcv-style configs (``dict(type='BN')``, ``dict(type='GN',
num_groups=32)`` ...).

:func:`build_norm_layer` is the Jittor counterpart of mmcv's ``mmcv.cnn.build_norm_layer``: it
returns ``(name, layer)`` with mmcv's layer name (``'bn'``, ``'gn'`` plus an optional postfix), so
Jittor twins of mmdet modules keep mmdet's parameter names (``lateral_convs.0.bn.weight``,
``fpn_convs.0.gn.bias``).

Supported types: ``BN`` / ``BN2d`` / ``SyncBN`` (the torch-faithful
:class:`~jt_mm_plugins.models.layers.batch_norm.BatchNorm2d`) and ``GN`` (:class:`GroupNorm` below).
They are registered in ``JITTOR_MODELS`` (mmcv registers its norm layers in ``MODELS`` too); custom
Jittor norm layers can be added with ``@JITTOR_MODELS.register_module('MyNorm')``.
"""
import inspect
from typing import Dict, Tuple, Union

import torch

from jt_mm_plugins.bridge.mirrors import register_torch_mirror
from jt_mm_plugins.models.layers.batch_norm import (BatchNorm2d, SyncBatchNorm,
                                                   distributed_world_size,
                                                   refuse_unsynchronised_syncbn)
from jt_mm_plugins.ops.group_norm import group_norm, group_norm_supported
from jt_mm_plugins.registry import JITTOR_MODELS, config_args, instantiate, resolve_type
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

JITTOR_MODELS.register_module('BN', module=BatchNorm2d)
JITTOR_MODELS.register_module('BN2d', module=BatchNorm2d)


@JITTOR_MODELS.register_module('GN')
@register_torch_mirror(torch.nn.GroupNorm)
class GroupNorm(jt.nn.Module):
    """Group normalisation (`Group Normalization <https://arxiv.org/abs/1803.08494>`_) with the
    semantics and parameter names of ``torch.nn.GroupNorm``.

    Jittor's own ``nn.GroupNorm`` computes the variance as E[x^2] - E[x]^2, which loses precision when
    a group's mean is large compared with its spread, and its ``affine=False`` mode leaves plain floats
    where torch has no parameters. This layer centres first, so its error against a float64
    reference stays at torch's level or below: on CPU in float32 through the fused kernels of
    :mod:`jt_mm_plugins.ops.group_norm` (float64 statistics, closed-form backward), elsewhere (CUDA,
    float64) through Jittor ops with a corrected two-pass mean.

    Args:
        num_groups (int): Number of groups the channels are split into.
        num_channels (int): Number of channels ``C`` of an ``(N, C, ...)`` input; a multiple of
            ``num_groups``.
        eps (float): Added to the variance for numerical stability. Defaults to 1e-5.
        affine (bool): Learn a per-channel scale ``weight`` (ones) and shift ``bias`` (zeros).
            Defaults to True.
    """

    _abbr_ = 'gn'

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True) -> None:
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups != 0:
            raise InputError(f'GroupNorm: num_channels ({num_channels}) must be a positive multiple of '
                             f'num_groups ({num_groups})')
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = jt.ones((num_channels, ), dtype='float32')
            self.bias = jt.zeros((num_channels, ), dtype='float32')

    def execute(self, x: jt.Var) -> jt.Var:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise InputError(f'GroupNorm expects (N, {self.num_channels}, ...) input, got shape '
                             f'{tuple(x.shape)}')
        weight = self.weight if self.affine else None
        bias = self.bias if self.affine else None
        if group_norm_supported(x) and all(p is None or p.dtype == 'float32'
                                           for p in (weight, bias)):
            # Fused CPU kernels: the same result (float64 statistics), several times faster.
            return group_norm(x, self.num_groups, weight, bias, self.eps)
        return self._execute_jittor_ops(x)

    def _execute_jittor_ops(self, x: jt.Var) -> jt.Var:
        """The plain-Jittor formulation (CUDA, float64 and other dtypes, empty inputs)."""
        grouped = x.reshape((x.shape[0], self.num_groups, -1))
        # Two-pass mean: the second pass removes the rounding error of a plain float32 sum, which
        # otherwise dominates when a group's mean is large compared with its spread.
        shifted = grouped - grouped.mean(dims=[2], keepdims=True)
        centered = shifted - shifted.mean(dims=[2], keepdims=True)
        var = (centered * centered).mean(dims=[2], keepdims=True)
        normed = (centered / jt.sqrt(var + self.eps)).reshape(x.shape)
        if self.affine:
            per_channel = [1, -1] + [1] * (x.ndim - 2)
            normed = normed * self.weight.reshape(per_channel) + self.bias.reshape(per_channel)
        return normed


JITTOR_MODELS.register_module('SyncBN', module=SyncBatchNorm)


def infer_abbr(class_type: type) -> str:
    """The mmcv abbreviation of a norm layer class: ``_abbr_`` if set, else from its type or name.

    Args:
        class_type (type): The norm layer class.

    Returns:
        str: ``'bn'``, ``'gn'``, ``'ln'``, ``'in'`` or ``'norm_layer'``, as mmcv's ``infer_abbr``.
    """
    if not inspect.isclass(class_type):
        raise TypeError(f'class_type must be a type, but got {type(class_type)}')
    if hasattr(class_type, '_abbr_'):
        return class_type._abbr_
    if issubclass(class_type, BatchNorm2d):
        return 'bn'
    name = class_type.__name__.lower()
    for word, abbr in (('instance', 'in'), ('batch', 'bn'), ('group', 'gn'), ('layer', 'ln')):
        if word in name:
            return abbr
    return 'norm_layer'


def build_norm_layer(cfg: Dict, num_features: int,
                     postfix: Union[int, str] = '') -> Tuple[str, jt.nn.Module]:
    """Build a Jittor normalisation layer from an mmcv-style config.

    Args:
        cfg (dict): ``type`` (``'BN'``, ``'BN2d'``, ``'SyncBN'``, ``'GN'`` or a registered name / a
            Jittor Module class), optional ``requires_grad`` (bool, default True: whether the affine
            parameters are trained), and the layer's own arguments (``eps`` defaults to 1e-5;
            ``momentum``; ``num_groups`` is required for GN).
        num_features (int): Number of input channels.
        postfix (int | str): Appended to the abbreviation to form the layer name. Defaults to ''.

    Returns:
        tuple[str, jt.nn.Module]: The layer name (e.g. ``'bn'``, ``'gn1'``) and the layer.
    """
    if not isinstance(postfix, (int, str)):
        raise TypeError(f'build_norm_layer: postfix must be int or str, got {type(postfix).__name__}')
    args = config_args(cfg, JITTOR_MODELS)
    layer_type = args.pop('type')
    _, norm_cls = resolve_type(layer_type, JITTOR_MODELS)
    if issubclass(norm_cls, SyncBatchNorm):  # fail at build time already, naming the config
        refuse_unsynchronised_syncbn(distributed_world_size())

    requires_grad = args.pop('requires_grad', True)
    args.setdefault('eps', 1e-5)
    if norm_cls is GroupNorm:
        if 'num_groups' not in args:
            raise KeyError(f'build_norm_layer: GN needs "num_groups" in its cfg, got {cfg}')
        args['num_channels'] = num_features
    else:
        args['num_features'] = num_features
    layer = instantiate(norm_cls, args, JITTOR_MODELS)

    if not requires_grad:
        for param in layer.parameters():
            param.requires_grad = False
    return infer_abbr(norm_cls) + str(postfix), layer
