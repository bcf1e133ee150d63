"""CLIP's attention pooling (open_clip ``modified_resnet.AttentionPool2d``) in Jittor."""
import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@register_jittor_module()
class CLIPAttentionPool2d(jt.nn.Module):
    """CLIP's attention pool: the mean of the ``spacial_dim**2`` feature tokens is prepended as a
    query token, a learned positional embedding is added to all tokens, multi-head attention of
    the query token over all tokens (the mean token included) is projected by ``c_proj``.

    Parameter names are open_clip's (``positional_embedding``, ``q_proj``, ``k_proj``,
    ``v_proj``, ``c_proj``), so CLIP's ``attnpool.*`` weights load unchanged. open_clip runs full
    self-attention and keeps token 0; only token 0's query is computed here (the same result).
    In UniDetector's CLIP bbox heads it turns 7x7 RoI features of CLIP's ``layer4`` (2048
    channels) into a 1024-d embedding (``spacial_dim=7, embed_dim=2048, num_heads=32,
    output_dim=1024``).

    Args:
        spacial_dim (int): Side of the square feature map (open_clip's spelling).
        embed_dim (int): Input channels.
        num_heads (int): Attention heads; must divide ``embed_dim``.
        output_dim (int, optional): Output features. Defaults to ``embed_dim``.
    """

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int,
                 output_dim: int = None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise InputError(f'CLIPAttentionPool2d: num_heads {num_heads} does not divide '
                             f'embed_dim {embed_dim}')
        self.spacial_dim = spacial_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.output_dim = output_dim or embed_dim
        self.positional_embedding = jt.array(
            (np.random.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5).astype(np.float32))
        self.k_proj = jt.nn.Linear(embed_dim, embed_dim)
        self.q_proj = jt.nn.Linear(embed_dim, embed_dim)
        self.v_proj = jt.nn.Linear(embed_dim, embed_dim)
        self.c_proj = jt.nn.Linear(embed_dim, self.output_dim)

    def execute(self, x: jt.Var) -> jt.Var:
        """(N, embed_dim, spacial_dim, spacial_dim) -> (N, output_dim)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.embed_dim, self.spacial_dim,
                                                 self.spacial_dim):
            raise InputError(f'CLIPAttentionPool2d expects (N, {self.embed_dim}, '
                             f'{self.spacial_dim}, {self.spacial_dim}) features, got '
                             f'{tuple(x.shape)}')
        n, c = x.shape[0], self.embed_dim
        heads, head_dim = self.num_heads, self.embed_dim // self.num_heads
        tokens = x.reshape(n, c, -1).transpose(0, 2, 1)  # (N, HW, C)
        tokens = jt.concat([tokens.mean(dims=(1, ), keepdims=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding.unsqueeze(0)  # (N, L, C)
        num_tokens = tokens.shape[1]
        query = self.q_proj(tokens[:, 0]).reshape(n, 1, heads, head_dim)
        keys = self.k_proj(tokens).reshape(n, num_tokens, heads, head_dim)
        values = self.v_proj(tokens).reshape(n, num_tokens, heads, head_dim)
        logits = (query * keys).sum(dims=(3, )) / float(np.sqrt(head_dim))  # (N, L, heads)
        weights = jt.nn.softmax(logits, dim=1)
        pooled = (weights.unsqueeze(3) * values).sum(dims=(1, )).reshape(n, c)
        return self.c_proj(pooled)
