"""Layer normalisation with the semantics and parameter names of ``torch.nn.LayerNorm``, registered
as mmcv's ``'LN'`` so ``build_norm_layer(dict(type='LN'), C)`` builds it (the transformer layers'
``norm_cfg``)."""
from typing import Sequence, Union

import torch

from jt_mm_plugins.bridge.mirrors import register_torch_mirror
from jt_mm_plugins.registry import JITTOR_MODELS
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@JITTOR_MODELS.register_module('LN')
@register_torch_mirror(torch.nn.LayerNorm)
class LayerNorm(jt.nn.Module):
    """Normalise over the last dimensions (biased variance, centred first), then scale ``weight``
    and shift ``bias``, as ``torch.nn.LayerNorm``.

    Args:
        num_features (int | sequence[int]): The normalised trailing shape (mmcv's
            ``build_norm_layer`` passes the channel count).
        eps (float): Added to the variance. Defaults to 1e-5.
        elementwise_affine (bool): Learn ``weight`` (ones) and ``bias`` (zeros). Defaults to True.
    """

    _abbr_ = 'ln'

    def __init__(self, num_features: Union[int, Sequence[int]], eps: float = 1e-5,
                 elementwise_affine: bool = True) -> None:
        super().__init__()
        shape = (num_features, ) if isinstance(num_features, int) else tuple(num_features)
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = jt.ones(shape, dtype='float32')
            self.bias = jt.zeros(shape, dtype='float32')

    def execute(self, x: jt.Var) -> jt.Var:
        n = len(self.normalized_shape)
        if tuple(x.shape[-n:]) != self.normalized_shape:
            raise InputError(f'LayerNorm{self.normalized_shape}: input shape {tuple(x.shape)} does '
                             f'not end with the normalised shape')
        dims = list(range(x.ndim - n, x.ndim))
        centred = x - x.mean(dims=dims, keepdims=True)
        var = (centred * centred).mean(dims=dims, keepdims=True)
        out = centred / jt.sqrt(var + self.eps)
        if self.elementwise_affine:
            out = out * self.weight + self.bias
        return out
