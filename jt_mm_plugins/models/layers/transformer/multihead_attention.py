"""Multi-head attention: ``torch.nn.MultiheadAttention``'s computation and parameter names
(:class:`TorchMultiheadAttention`), inside mmcv's ``MultiheadAttention`` block (positional
encodings added to query and key, residual connection, dropouts: :class:`MultiheadAttention`)."""
import math
import warnings
from typing import Optional, Tuple

import numpy as np

from jt_mm_plugins.bridge.registry import register_jittor_module
from jt_mm_plugins.ops.batched_matmul import batched_matmul
from jt_mm_plugins.ops.softmax import softmax_last_dim
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .dropout import build_dropout


def _additive_mask(mask: jt.Var, dtype) -> jt.Var:
    """A boolean mask (True = not attended, torch's convention; uint8 too) as ``-inf`` / 0, a
    float mask as is (added to the attention logits)."""
    if str(mask.dtype) in ('bool', 'uint8'):
        mask = mask.bool()
        return jt.ternary(mask, jt.full(mask.shape, float('-inf'), dtype),
                          jt.zeros(mask.shape, dtype))
    return mask.cast(dtype)


class TorchMultiheadAttention(jt.nn.Module):
    """``torch.nn.MultiheadAttention`` (sequence-first inputs, packed ``in_proj_weight`` /
    ``in_proj_bias``, ``out_proj``): the ``attn`` of mmcv's ``MultiheadAttention``.

    Args:
        embed_dim (int): Model width ``E``; a multiple of ``num_heads``.
        num_heads (int): Number of heads.
        dropout (float): Dropout on the attention weights in training mode. Defaults to 0.
        bias (bool): Projection biases. Defaults to True.
        batch_first (bool): Inputs are (batch, seq, E) instead of (seq, batch, E).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0., bias: bool = True,
                 batch_first: bool = False) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise InputError(f'MultiheadAttention: embed_dim ({embed_dim}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # torch: xavier_uniform_, zero biases
        self.in_proj_weight = jt.array(
            np.random.uniform(-bound, bound, (3 * embed_dim, embed_dim)).astype('float32'))
        self.in_proj_bias = jt.zeros((3 * embed_dim, ), dtype='float32') if bias else None
        self.out_proj = jt.nn.Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            self.out_proj.bias = jt.zeros((embed_dim, ), dtype='float32')
        self.attn_drop = build_dropout(dict(type='Dropout', drop_prob=dropout))

    def _project(self, x: jt.Var, index: int) -> jt.Var:
        """(L, B, E) -> (B * heads, L, head_dim) through the ``index``-th third of in_proj."""
        e = self.embed_dim
        y = jt.nn.linear(x, self.in_proj_weight[index * e:(index + 1) * e],
                         None if self.in_proj_bias is None
                         else self.in_proj_bias[index * e:(index + 1) * e])
        length, batch = x.shape[0], x.shape[1]
        return y.reshape(length, batch * self.num_heads, self.head_dim).transpose(1, 0, 2)

    def execute(self, query: jt.Var, key: jt.Var, value: jt.Var,
                key_padding_mask: Optional[jt.Var] = None, need_weights: bool = True,
                attn_mask: Optional[jt.Var] = None,
                average_attn_weights: bool = True) -> Tuple[jt.Var, Optional[jt.Var]]:
        if self.batch_first:
            query, key, value = (x.transpose(1, 0, 2) for x in (query, key, value))
        if query.ndim != 3 or key.shape != value.shape or query.shape[1] != key.shape[1] or \
                query.shape[2] != self.embed_dim:
            raise InputError(f'MultiheadAttention(E={self.embed_dim}): expected query (L, B, E) '
                             f'and key = value (S, B, E), got {tuple(query.shape)}, '
                             f'{tuple(key.shape)}, {tuple(value.shape)}')
        length, batch, src = query.shape[0], query.shape[1], key.shape[0]
        heads = self.num_heads
        q = self._project(query, 0)
        # Divided by sqrt(head_dim) computed in q's dtype: a Python float scalar would enter a
        # float64 graph rounded to float32 (measured: 1.5e-8 relative).
        q = q / jt.sqrt(jt.array(self.head_dim).cast(q.dtype))
        k = self._project(key, 1)
        v = self._project(value, 2)
        logits = batched_matmul(q, k, transpose_b=True)  # (B * heads, L, S)
        if attn_mask is not None:
            if tuple(attn_mask.shape) not in ((length, src), (batch * heads, length, src)):
                raise InputError(f'MultiheadAttention: attn_mask shape {tuple(attn_mask.shape)}, '
                                 f'expected ({length}, {src}) or '
                                 f'({batch * heads}, {length}, {src})')
            logits = logits + _additive_mask(attn_mask, logits.dtype)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (batch, src):
                raise InputError(f'MultiheadAttention: key_padding_mask shape '
                                 f'{tuple(key_padding_mask.shape)}, expected ({batch}, {src})')
            pad = _additive_mask(key_padding_mask, logits.dtype)
            pad = pad.reshape(batch, 1, 1, src).broadcast((batch, heads, 1, src))
            logits = logits + pad.reshape(batch * heads, 1, src)
        weights = softmax_last_dim(logits)
        out = batched_matmul(self.attn_drop(weights), v)  # (B * heads, L, head_dim)
        out = out.transpose(1, 0, 2).reshape(length, batch, self.embed_dim)
        out = self.out_proj(out)
        if self.batch_first:
            out = out.transpose(1, 0, 2)
        if not need_weights:
            return out, None
        weights = weights.reshape(batch, heads, length, src)
        return out, (weights.mean(dim=1) if average_attn_weights else weights)


@register_jittor_module('JittorMultiheadAttention')
class MultiheadAttention(jt.nn.Module):
    """mmcv's ``MultiheadAttention``: ``identity + dropout_layer(proj_drop(attn(query + query_pos,
    key + key_pos, value)))``, same arguments and parameter names (``attn.in_proj_weight`` ...).

    Args:
        embed_dims (int): Model width.
        num_heads (int): Number of heads.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
        dropout_layer (dict, optional): mmcv dropout config on the residual branch.
        batch_first (bool): Inputs are (batch, n, embed_dims). Defaults to False.
        init_cfg: Accepted for config compatibility (initialisation happens torch-side).
        **kwargs: ``dropout`` (mmcv's deprecated alias of ``attn_drop`` and of the dropout layer's
            probability) and ``torch.nn.MultiheadAttention`` arguments (``bias``).
    """

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float = 0.,
                 proj_drop: float = 0., dropout_layer: Optional[dict] = None,
                 init_cfg: Optional[dict] = None, batch_first: bool = False, **kwargs) -> None:
        super().__init__()
        dropout_layer = dict(type='Dropout', drop_prob=0.) if dropout_layer is None \
            else dict(dropout_layer)
        if 'dropout' in kwargs:  # mmcv: deprecated, sets both
            attn_drop = kwargs['dropout']
            dropout_layer['drop_prob'] = kwargs.pop('dropout')
        self.embed_dims, self.num_heads, self.batch_first = embed_dims, num_heads, batch_first
        self.attn = TorchMultiheadAttention(embed_dims, num_heads, attn_drop, **kwargs)
        self.proj_drop = build_dropout(dict(type='Dropout', drop_prob=proj_drop))
        self.dropout_layer = build_dropout(dropout_layer)

    def execute(self, query: jt.Var, key: Optional[jt.Var] = None, value: Optional[jt.Var] = None,
                identity: Optional[jt.Var] = None, query_pos: Optional[jt.Var] = None,
                key_pos: Optional[jt.Var] = None, attn_mask: Optional[jt.Var] = None,
                key_padding_mask: Optional[jt.Var] = None, **kwargs) -> jt.Var:
        key = query if key is None else key
        value = key if value is None else value
        identity = query if identity is None else identity
        if key_pos is None and query_pos is not None:
            if tuple(query_pos.shape) == tuple(key.shape):
                key_pos = query_pos
            else:
                warnings.warn(f'position encoding of key is missing in {type(self).__name__}.')
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        if self.batch_first:  # the inner attention is sequence-first, as torch's
            query, key, value = (x.transpose(1, 0, 2) for x in (query, key, value))
        out = self.attn(query, key, value, key_padding_mask=key_padding_mask,
                        attn_mask=attn_mask)[0]
        if self.batch_first:
            out = out.transpose(1, 0, 2)
        return identity + self.dropout_layer(self.proj_drop(out))
