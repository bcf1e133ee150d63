"""mmdet's DETR with Jittor parts (mixed mode).

mmdet's ``DETR`` builds its transformer from hard-coded classes and calls its head with keyword
arguments (``bbox_head.loss(hidden_states=..., batch_data_samples=...)``), so the generic adapters
of :mod:`.heads` do not fit. Here:

* :class:`BridgedDETRHead`: mmdet's ``DETRHead`` interface (``forward(hidden_states)``, ``loss``,
  ``loss_and_predict``, ``predict``) over a bridged Jittor DETR head, each call one autograd node;
* :class:`ConfigurableDETR` (registered in mmdet's ``MODELS``): mmdet's ``DETR`` whose
  ``positional_encoding``, ``encoder`` and ``decoder`` configs may name a ``type`` (e.g.
  ``JittorDetrTransformerEncoder``), built from ``MODELS``; without a ``type`` they are mmdet's own
  classes, as in ``DETR``. So one config can put the Jittor transformer, the Jittor head, or both
  inside mmdet's DETR.
"""
import copy
from typing import Dict, List, Tuple

import torch
from mmdet.models.detectors.detr import DETR
from mmdet.models.layers import (DetrTransformerDecoder, DetrTransformerEncoder,
                                 SinePositionalEncoding)
from mmdet.registry import MODELS
from mmengine.structures import InstanceData
from torch import nn

from .data_samples import instances_from_results, losses_for_mmdet, unpack_data_samples
from .module import JittorModuleWrapper


class BridgedDETRHead(JittorModuleWrapper):
    """mmdet's ``DETRHead`` interface over a bridged Jittor DETR head (hidden states of every
    decoder layer in, losses or ``InstanceData`` predictions out)."""

    def forward(self, hidden_states: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.run_jittor(self.jittor_module, hidden_states)

    def loss(self, hidden_states: torch.Tensor, batch_data_samples) -> Dict:
        gts, metas = unpack_data_samples(batch_data_samples, type(self).__name__)
        losses = self.run_jittor(self.jittor_module.loss, hidden_states, gts, metas)
        return losses_for_mmdet(losses, type(self).__name__)

    def loss_and_predict(self, hidden_states: torch.Tensor,
                         batch_data_samples) -> Tuple[Dict, List[InstanceData]]:
        gts, metas = unpack_data_samples(batch_data_samples, type(self).__name__)
        losses, results = self.run_jittor(self.jittor_module.loss_and_predict, hidden_states, gts,
                                          metas)
        return (losses_for_mmdet(losses, type(self).__name__),
                instances_from_results(results, detach=True))

    def predict(self, hidden_states: torch.Tensor, batch_data_samples,
                rescale: bool = True) -> List[InstanceData]:
        _, metas = unpack_data_samples(batch_data_samples, type(self).__name__, with_gt=False)
        results = self.run_jittor(self.jittor_module.predict, hidden_states, metas, rescale)
        return instances_from_results(results, detach=True)


def _build_part(cfg: dict, default_class: type) -> nn.Module:
    """``MODELS.build(cfg)`` when ``cfg`` names a ``type``, else ``default_class(**cfg)`` (mmdet's
    DETR parts are not registered)."""
    cfg = copy.deepcopy(dict(cfg))
    if 'type' in cfg:
        return MODELS.build(cfg)
    return default_class(**cfg)


@MODELS.register_module()
class ConfigurableDETR(DETR):
    """mmdet's ``DETR`` whose positional encoding, encoder and decoder may be any registered
    module with the same interface (a ``type`` in their configs); arguments as ``DETR``."""

    def _init_layers(self) -> None:
        self.positional_encoding = _build_part(self.positional_encoding, SinePositionalEncoding)
        self.encoder = _build_part(self.encoder, DetrTransformerEncoder)
        self.decoder = _build_part(self.decoder, DetrTransformerDecoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(f'embed_dims should be exactly 2 times of num_feats. Found '
                             f'{self.embed_dims} and {num_feats}.')
