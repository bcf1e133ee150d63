"""mmdet's ``SinePositionalEncoding`` (DETR's sine / cosine position embedding) in Jittor."""
import math
from typing import Optional

from jt_mm_plugins.bridge.registry import register_jittor_module
from jt_mm_plugins.runtime import jt


@register_jittor_module('JittorSinePositionalEncoding')
class SinePositionalEncoding(jt.nn.Module):
    """Sine / cosine position embedding (mmdet's ``SinePositionalEncoding``, same arguments and
    output): ``execute(mask, input=None)`` gives (bs, 2 * num_feats, h, w) float32, the y half
    first; positions count only unmasked pixels (``mask`` True / non-zero at padding); without a
    mask, every pixel of ``input`` (bs, c, h, w) counts.

    Args:
        num_feats (int): Embedding width per axis.
        temperature (int): Frequency base. Defaults to 10000.
        normalize (bool): Scale positions to ``(0, scale]``. Defaults to False.
        scale (float): Scale when normalising. Defaults to 2 * pi.
        eps (float): Added to the normaliser. Defaults to 1e-6.
        offset (float): Added to the positions before normalising. Defaults to 0.
        init_cfg: Accepted for config compatibility (no parameters).
    """

    def __init__(self, num_feats: int, temperature: int = 10000, normalize: bool = False,
                 scale: float = 2 * math.pi, eps: float = 1e-6, offset: float = 0.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if normalize and not isinstance(scale, (float, int)):
            raise TypeError(f'SinePositionalEncoding: when normalize is set, scale should be a '
                            f'float or int, found {type(scale)}')
        self.num_feats, self.temperature, self.normalize = num_feats, temperature, normalize
        self.scale, self.eps, self.offset = scale, eps, offset

    def execute(self, mask: Optional[jt.Var],
                input: Optional[jt.Var] = None) -> jt.Var:  # noqa: A002 (mmdet's name)
        if mask is None and input is None:
            raise ValueError('SinePositionalEncoding: give a mask or an input')
        if mask is not None:
            batch, height, width = mask.shape
            not_mask = 1.0 - mask.cast('float32')
            y_embed = jt.cumsum(not_mask, dim=1)
            x_embed = jt.cumsum(not_mask, dim=2)
        else:
            batch, _, height, width = input.shape
            x_embed = jt.arange(1, width + 1, dtype='float32').reshape(1, 1, width) \
                .broadcast((batch, height, width))
            y_embed = jt.arange(1, height + 1, dtype='float32').reshape(1, height, 1) \
                .broadcast((batch, height, width))
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = jt.arange(self.num_feats, dtype='float32')
        dim_t = jt.pow(jt.float32(self.temperature),
                       2 * jt.floor(dim_t / 2) / self.num_feats)

        def embed(positions: jt.Var) -> jt.Var:
            angles = positions.unsqueeze(-1) / dim_t  # (bs, h, w, num_feats)
            return jt.stack((angles[:, :, :, 0::2].sin(), angles[:, :, :, 1::2].cos()),
                            dim=4).reshape(batch, height, width, -1)

        return jt.concat((embed(y_embed), embed(x_embed)), dim=3).permute(0, 3, 1, 2)
