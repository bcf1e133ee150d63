"""DETR with every part in Jittor: the twin of mmdet 3.3's ``DETR`` (``mmdet/models/detectors/
detr.py`` and ``base_detr.py``), bridged once at the detector boundary."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList

from jt_mm_plugins.bridge import JITTOR_MODELS, build_jittor_module
from jt_mm_plugins.bridge.data_samples import unpack_data_samples
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..layers.transformer import (DetrTransformerDecoder, DetrTransformerEncoder,
                                  SinePositionalEncoding)
from .base import JittorDetector, JittorDetectorCore


def nearest_resize_index(in_size: int, out_size: int) -> np.ndarray:
    """Source rows of torch's ``F.interpolate(mode='nearest')``: floor(dst * (in / out)) in float32,
    capped at in - 1."""
    scale = np.float32(in_size / out_size)
    index = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, in_size - 1)


def padding_masks(batch_img_metas: Sequence[dict],
                  feat_shape: Tuple[int, int]) -> Optional[np.ndarray]:
    """mmdet's DETR masks: True where the (batch_input_shape) input is padding, nearest-resized to
    the feature map; None when no image is padded."""
    input_h, input_w = batch_img_metas[0]['batch_input_shape']
    shapes = [meta['img_shape'][:2] for meta in batch_img_metas]
    if all(h == input_h and w == input_w for h, w in shapes):
        return None
    masks = np.ones((len(shapes), input_h, input_w), dtype=bool)
    for i, (h, w) in enumerate(shapes):
        masks[i, :h, :w] = False
    rows = nearest_resize_index(input_h, feat_shape[0])
    cols = nearest_resize_index(input_w, feat_shape[1])
    return masks[:, rows][:, :, cols]


@JITTOR_MODELS.register_module()
class JittorDETRCore(JittorDetectorCore):
    """The Jittor side of DETR: backbone, neck, sine positional encoding, transformer encoder and
    decoder, ``query_embedding`` and the DETR head; mmdet's ``DetectionTransformer`` flow
    (``pre_transformer`` -> encoder -> ``pre_decoder`` -> decoder -> head).

    ``query_embedding`` is ``dict(num_queries=...)`` (the mmdet-facing :class:`JittorDETR` takes
    ``num_queries``).
    """

    def __init__(self, backbone: dict, bbox_head: dict, encoder: dict, decoder: dict,
                 positional_encoding: dict, query_embedding: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, neck, train_cfg, test_cfg)
        bbox_head = copy.deepcopy(bbox_head)
        bbox_head.update(train_cfg=train_cfg, test_cfg=test_cfg)
        self.bbox_head = build_jittor_module(bbox_head)
        self.positional_encoding = SinePositionalEncoding(**positional_encoding)
        self.encoder = DetrTransformerEncoder(**encoder)
        self.decoder = DetrTransformerDecoder(**decoder)
        self.embed_dims = self.encoder.embed_dims
        self.num_queries = query_embedding['num_queries']
        self.query_embedding = jt.nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise InputError(f'embed_dims should be exactly 2 times of num_feats. Found '
                             f'{self.embed_dims} and {num_feats}.')

    def forward_transformer(self, img_feats: Sequence[jt.Var],
                            batch_img_metas: List[dict]) -> jt.Var:
        """The decoder's hidden states (num_layers, bs, num_queries, embed_dims)."""
        if not batch_img_metas:
            raise InputError('JittorDETR: an empty batch (no image metas)')
        feat = img_feats[-1]
        batch, dims, height, width = feat.shape
        masks = padding_masks(batch_img_metas, (height, width))
        if masks is None:
            pos = self.positional_encoding(None, input=feat)
        else:
            masks = jt.array(masks)
            pos = self.positional_encoding(masks)
            masks = masks.reshape(batch, -1)
        feat = feat.reshape(batch, dims, -1).transpose(0, 2, 1)
        pos = pos.reshape(batch, dims, -1).transpose(0, 2, 1).cast(feat.dtype)
        memory = self.encoder(query=feat, query_pos=pos, key_padding_mask=masks)
        query_pos = self.query_embedding.weight.unsqueeze(0).broadcast(
            (batch, self.num_queries, self.embed_dims))
        query = jt.zeros_like(query_pos)
        return self.decoder(query=query, key=memory, value=memory, query_pos=query_pos,
                            key_pos=pos, key_padding_mask=masks)

    def execute(self, inputs: jt.Var, batch_img_metas: List[dict]) -> Tuple[jt.Var, jt.Var]:
        """The head's raw outputs for every decoder layer (mmdet's ``mode='tensor'``)."""
        return self.bbox_head(self.forward_transformer(self.extract_feat(inputs), batch_img_metas))

    def loss(self, inputs: jt.Var, batch_gt_instances: List[Dict],
             batch_img_metas: List[dict]) -> Dict:
        hidden_states = self.forward_transformer(self.extract_feat(inputs), batch_img_metas)
        return self.bbox_head.loss(hidden_states, batch_gt_instances, batch_img_metas)

    def predict(self, inputs: jt.Var, batch_img_metas: List[dict],
                rescale: bool = True) -> List[Dict]:
        hidden_states = self.forward_transformer(self.extract_feat(inputs), batch_img_metas)
        return self.bbox_head.predict(hidden_states, batch_img_metas, rescale=rescale)


@MODELS.register_module()
class JittorDETR(JittorDetector):
    """`DETR <https://arxiv.org/abs/2005.12872>`_ computed in Jittor, bridged once per step: the
    twin of mmdet's ``DETR`` (same arguments; an mmdet DETR state dict loads strictly).

    Args:
        backbone, neck (dict): Jittor backbone / neck configs (``JittorResNet``, ``ChannelMapper``
            twins...).
        encoder, decoder (dict): ``DetrTransformerEncoder`` / ``DetrTransformerDecoder`` arguments
            (``num_layers``, ``layer_cfg``...), as in mmdet's configs.
        bbox_head (dict): A Jittor DETR head config (``JittorDETRHead``; mmdet's ``DETRHead``
            name resolves to it).
        positional_encoding (dict): ``SinePositionalEncoding`` arguments.
        num_queries (int): Number of object queries. Defaults to 100.
        train_cfg, test_cfg, data_preprocessor, init_cfg: As for mmdet's ``DETR``.
    """
    jittor_class = JittorDETRCore

    def __init__(self, backbone: dict, neck: Optional[dict] = None, encoder: Optional[dict] = None,
                 decoder: Optional[dict] = None, bbox_head: Optional[dict] = None,
                 positional_encoding: Optional[dict] = None, num_queries: int = 100,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        for name, cfg in (('encoder', encoder), ('decoder', decoder), ('bbox_head', bbox_head),
                          ('positional_encoding', positional_encoding)):
            if cfg is None:
                raise InputError(f'JittorDETR: {name} config is required')
        super().__init__(dict(backbone=backbone, neck=neck, encoder=encoder, decoder=decoder,
                              bbox_head=bbox_head, positional_encoding=positional_encoding,
                              query_embedding=dict(num_queries=num_queries)),
                         train_cfg, test_cfg, data_preprocessor, init_cfg)

    @property
    def num_queries(self) -> int:
        return self.jittor_module.num_queries

    def init_weights(self) -> None:
        """mmdet's DETR initialisation: the parts' own, then Xavier-uniform for every encoder and
        decoder parameter with more than one dimension (on the torch-owned parameters)."""
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for p in coder.parameters():
                if p.dim() > 1:
                    torch.nn.init.xavier_uniform_(p)

    def _forward(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList = None) -> Tuple:
        if batch_data_samples is None:
            raise InputError('JittorDETR: mode="tensor" needs batch_data_samples (the padding '
                             'masks come from their img_shape / batch_input_shape)')
        _, metas = unpack_data_samples(batch_data_samples, type(self).__name__, with_gt=False)
        return self.run_jittor(self.jittor_module, batch_inputs, metas)
