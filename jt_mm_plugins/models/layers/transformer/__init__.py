"""Transformer components in Jittor (DETR's encoder and decoder, attention, FFN, LayerNorm,
positional encoding) with mmcv's / mmdet's arguments and parameter names."""
from .detr_decoder import DetrTransformerDecoder, DetrTransformerDecoderLayer
from .detr_encoder import DetrTransformerEncoder, DetrTransformerEncoderLayer
from .dropout import Dropout, build_dropout
from .ffn import FFN
from .layer_norm import LayerNorm
from .multihead_attention import MultiheadAttention, TorchMultiheadAttention
from .positional_encoding import SinePositionalEncoding

__all__ = [
    'DetrTransformerDecoder', 'DetrTransformerDecoderLayer', 'DetrTransformerEncoder',
    'DetrTransformerEncoderLayer', 'Dropout', 'build_dropout', 'FFN', 'LayerNorm',
    'MultiheadAttention', 'TorchMultiheadAttention', 'SinePositionalEncoding'
]
