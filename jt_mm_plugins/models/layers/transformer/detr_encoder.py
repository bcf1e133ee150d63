"""DETR's transformer encoder in Jittor (mmdet's ``DetrTransformerEncoderLayer`` /
``DetrTransformerEncoder``: post-norm self-attention and FFN, batch-first)."""
import copy
from typing import Optional

from jt_mm_plugins.bridge.registry import register_jittor_module
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from .ffn import FFN
from .multihead_attention import MultiheadAttention

DEFAULT_FFN = dict(embed_dims=256, feedforward_channels=1024, num_fcs=2, ffn_drop=0.,
                   act_cfg=dict(type='ReLU', inplace=True))


def batch_first_attention_cfg(cfg: Optional[dict], default: dict) -> dict:
    """An attention config with ``batch_first=True`` (mmdet's DETR layers refuse anything else)."""
    cfg = copy.deepcopy(default if cfg is None else dict(cfg))
    if not cfg.setdefault('batch_first', True):
        raise ValueError('First dimension of all DETRs in mmdet is `batch`, please set '
                         '`batch_first` flag.')
    return cfg


def norms(norm_cfg: Optional[dict], embed_dims: int, count: int) -> jt.nn.Sequential:
    """``count`` norm layers (mmdet's ``norms`` ModuleList: ``norms.0.weight`` ...)."""
    cfg = dict(type='LN') if norm_cfg is None else norm_cfg
    return jt.nn.Sequential(*[build_norm_layer(cfg, embed_dims)[1] for _ in range(count)])


@register_jittor_module('JittorDetrTransformerEncoderLayer')
class DetrTransformerEncoderLayer(jt.nn.Module):
    """``norms[1](ffn(norms[0](self_attn(query + pos, query + pos, query) + query)))``.

    Args:
        self_attn_cfg (dict): :class:`MultiheadAttention` arguments (``batch_first`` forced True).
        ffn_cfg (dict): :class:`FFN` arguments.
        norm_cfg (dict): Norm config. Defaults to ``LN``.
        init_cfg: Accepted for config compatibility.
    """

    def __init__(self, self_attn_cfg: Optional[dict] = None, ffn_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.self_attn_cfg = batch_first_attention_cfg(
            self_attn_cfg, dict(embed_dims=256, num_heads=8, dropout=0.0))
        self.ffn_cfg = copy.deepcopy(DEFAULT_FFN if ffn_cfg is None else dict(ffn_cfg))
        self.norm_cfg = dict(type='LN') if norm_cfg is None else norm_cfg
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = norms(self.norm_cfg, self.embed_dims, 2)

    def execute(self, query: jt.Var, query_pos: jt.Var, key_padding_mask: Optional[jt.Var],
                **kwargs) -> jt.Var:
        query = self.self_attn(query=query, key=query, value=query, query_pos=query_pos,
                               key_pos=query_pos, key_padding_mask=key_padding_mask, **kwargs)
        query = self.norms[0](query)
        return self.norms[1](self.ffn(query))


@register_jittor_module('JittorDetrTransformerEncoder')
class DetrTransformerEncoder(jt.nn.Module):
    """``num_layers`` :class:`DetrTransformerEncoderLayer` of one config (mmdet's
    ``DetrTransformerEncoder``; ``forward(query, query_pos, key_padding_mask)`` with (bs, n, dim)
    queries and a (bs, n) boolean mask, True at padding).

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): Arguments of every layer.
        num_cp (int): mmdet's activation checkpointing (fairscale); only -1 / 0 (none) here.
        init_cfg: Accepted for config compatibility.
    """

    def __init__(self, num_layers: int, layer_cfg: dict, num_cp: int = -1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if num_cp > 0:
            raise NotImplementedError('DetrTransformerEncoder: activation checkpointing '
                                      '(num_cp > 0) '
                                      'is not implemented in Jittor')
        self.num_layers, self.layer_cfg, self.num_cp = num_layers, layer_cfg, num_cp
        self.layers = jt.nn.Sequential(*[DetrTransformerEncoderLayer(**copy.deepcopy(layer_cfg))
                                         for _ in range(num_layers)])
        self.embed_dims = self.layers[0].embed_dims

    def execute(self, query: jt.Var, query_pos: jt.Var, key_padding_mask: Optional[jt.Var],
                **kwargs) -> jt.Var:
        for layer in self.layers:
            query = layer(query, query_pos, key_padding_mask, **kwargs)
        return query
