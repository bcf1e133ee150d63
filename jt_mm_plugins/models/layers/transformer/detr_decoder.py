"""DETR's transformer decoder in Jittor (mmdet's ``DetrTransformerDecoderLayer`` /
``DetrTransformerDecoder``: post-norm self-attention, cross-attention and FFN; every layer's output
through the shared final norm)."""
import copy
from typing import Optional

from jt_mm_plugins.bridge.registry import register_jittor_module
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from .detr_encoder import DEFAULT_FFN, batch_first_attention_cfg, norms
from .ffn import FFN
from .multihead_attention import MultiheadAttention

DEFAULT_ATTENTION = dict(embed_dims=256, num_heads=8, dropout=0.0, batch_first=True)


@register_jittor_module('JittorDetrTransformerDecoderLayer')
class DetrTransformerDecoderLayer(jt.nn.Module):
    """Self-attention, ``norms[0]``, cross-attention to the memory, ``norms[1]``, FFN,
    ``norms[2]`` (mmdet's ``DetrTransformerDecoderLayer``, same arguments)."""

    def __init__(self, self_attn_cfg: Optional[dict] = None, cross_attn_cfg: Optional[dict] = None,
                 ffn_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.self_attn_cfg = batch_first_attention_cfg(self_attn_cfg, DEFAULT_ATTENTION)
        self.cross_attn_cfg = batch_first_attention_cfg(cross_attn_cfg, DEFAULT_ATTENTION)
        self.ffn_cfg = copy.deepcopy(DEFAULT_FFN if ffn_cfg is None else dict(ffn_cfg))
        self.norm_cfg = dict(type='LN') if norm_cfg is None else norm_cfg
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.cross_attn = MultiheadAttention(**self.cross_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = norms(self.norm_cfg, self.embed_dims, 3)

    def execute(self, query: jt.Var, key: Optional[jt.Var] = None, value: Optional[jt.Var] = None,
                query_pos: Optional[jt.Var] = None, key_pos: Optional[jt.Var] = None,
                self_attn_mask: Optional[jt.Var] = None, cross_attn_mask: Optional[jt.Var] = None,
                key_padding_mask: Optional[jt.Var] = None, **kwargs) -> jt.Var:
        query = self.self_attn(query=query, key=query, value=query, query_pos=query_pos,
                               key_pos=query_pos, attn_mask=self_attn_mask, **kwargs)
        query = self.norms[0](query)
        query = self.cross_attn(query=query, key=key, value=value, query_pos=query_pos,
                                key_pos=key_pos, attn_mask=cross_attn_mask,
                                key_padding_mask=key_padding_mask, **kwargs)
        query = self.norms[1](query)
        return self.norms[2](self.ffn(query))


@register_jittor_module('JittorDetrTransformerDecoder')
class DetrTransformerDecoder(jt.nn.Module):
    """``num_layers`` :class:`DetrTransformerDecoderLayer` and a final ``post_norm`` (mmdet's
    ``DetrTransformerDecoder``): returns (num_layers, bs, num_queries, dim), every layer's output
    through ``post_norm``, with ``return_intermediate``; else (1, bs, num_queries, dim).

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): Arguments of every layer.
        post_norm_cfg (dict): Final norm config. Defaults to ``LN``.
        return_intermediate (bool): Return every layer's output. Defaults to True.
        init_cfg: Accepted for config compatibility.
    """

    def __init__(self, num_layers: int, layer_cfg: dict, post_norm_cfg: Optional[dict] = None,
                 return_intermediate: bool = True, init_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.layer_cfg, self.num_layers = layer_cfg, num_layers
        self.post_norm_cfg = dict(type='LN') if post_norm_cfg is None else post_norm_cfg
        self.return_intermediate = return_intermediate
        self.layers = jt.nn.Sequential(*[DetrTransformerDecoderLayer(**copy.deepcopy(layer_cfg))
                                         for _ in range(num_layers)])
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = build_norm_layer(self.post_norm_cfg, self.embed_dims)[1]

    def execute(self, query: jt.Var, key: jt.Var, value: jt.Var, query_pos: jt.Var,
                key_pos: jt.Var, key_padding_mask: Optional[jt.Var], **kwargs) -> jt.Var:
        intermediate = []
        for layer in self.layers:
            query = layer(query, key=key, value=value, query_pos=query_pos, key_pos=key_pos,
                          key_padding_mask=key_padding_mask, **kwargs)
            if self.return_intermediate:
                intermediate.append(self.post_norm(query))
        if self.return_intermediate:
            return jt.stack(intermediate)
        return self.post_norm(query).unsqueeze(0)
