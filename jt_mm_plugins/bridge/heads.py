"""Bridged Jittor heads that speak mmdet's head interface, so that mmdet's own detectors can use them.

A pure-Jittor detector (``JittorTwoStageDetector``) crosses to torch once per step. In mixed mode an
mmdet ``TwoStageDetector`` (``FasterRCNN``...) holds a Jittor RPN or RoI head and calls it with
mmdet's structures: ``rpn_head.loss_and_predict(x, data_samples, proposal_cfg)``,
``rpn_head.predict(x, data_samples, rescale)``, ``roi_head.loss(x, rpn_results_list, data_samples)``,
``roi_head.predict(x, rpn_results_list, data_samples, rescale)``. These wrappers translate those
calls to the Jittor heads' dict interface and run each as one bridged autograd node.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.structures import InstanceData

from .data_samples import (instances_from_results, losses_for_mmdet, proposals_from_instances,
                           unpack_data_samples)
from .module import JittorModuleWrapper


class BridgedDenseHead(JittorModuleWrapper):
    """mmdet's ``BaseDenseHead`` interface over a bridged Jittor dense head."""

    def loss(self, x: Sequence[torch.Tensor], batch_data_samples: Sequence, **kwargs) -> Dict:
        """mmdet's ``loss(x, batch_data_samples)``; extra keyword inputs of the Jittor head's
        ``loss`` (e.g. NanoDet-Plus's ``aux_outs``) pass through, their tensors as Vars with
        gradients flowing back."""
        gts, metas = unpack_data_samples(batch_data_samples, type(self).__name__)
        losses = self.run_jittor(self.jittor_module.loss, list(x), gts, metas, **kwargs)
        return losses_for_mmdet(losses, type(self).__name__)

    def loss_and_predict(self, x: Sequence[torch.Tensor], batch_data_samples: Sequence,
                         proposal_cfg: Optional[Dict] = None) -> Tuple[Dict, List[InstanceData]]:
        gts, metas = unpack_data_samples(batch_data_samples, type(self).__name__)
        cfg = None if proposal_cfg is None else dict(proposal_cfg)
        losses, results = self.run_jittor(self.jittor_module.loss_and_predict, list(x), gts,
                                          metas, cfg)
        # Predictions are detached, as mmdet's heads return them (proposals carry no gradient).
        return (losses_for_mmdet(losses, type(self).__name__),
                instances_from_results(results, detach=True))

    def predict(self, x: Sequence[torch.Tensor], batch_data_samples: Sequence,
                rescale: bool = False) -> List[InstanceData]:
        _, metas = unpack_data_samples(batch_data_samples, type(self).__name__, with_gt=False)
        results = self.run_jittor(self.jittor_module.predict, list(x), metas, rescale)
        return instances_from_results(results, detach=True)


class BridgedRoIHead(JittorModuleWrapper):
    """mmdet's ``BaseRoIHead`` interface (``loss`` / ``predict``) over a bridged Jittor RoI head."""

    # What mmdet's detectors ask of a RoI head before using it.
    @property
    def with_bbox(self) -> bool:
        return getattr(self.jittor_module, 'bbox_head', None) is not None

    @property
    def with_mask(self) -> bool:
        return getattr(self.jittor_module, 'mask_head', None) is not None

    @property
    def with_shared_head(self) -> bool:
        return getattr(self.jittor_module, 'shared_head', None) is not None

    def loss(self, x: Sequence[torch.Tensor], rpn_results_list: Sequence[InstanceData],
             batch_data_samples: Sequence) -> Dict:
        gts, metas = unpack_data_samples(batch_data_samples, type(self).__name__)
        losses = self.run_jittor(self.jittor_module.loss, list(x),
                                 proposals_from_instances(rpn_results_list), gts, metas)
        return losses_for_mmdet(losses, type(self).__name__)

    def predict(self, x: Sequence[torch.Tensor], rpn_results_list: Sequence[InstanceData],
                batch_data_samples: Sequence, rescale: bool = False) -> List[InstanceData]:
        _, metas = unpack_data_samples(batch_data_samples, type(self).__name__, with_gt=False)
        results = self.run_jittor(self.jittor_module.predict, list(x),
                                  proposals_from_instances(rpn_results_list), metas, rescale)
        return instances_from_results(results, detach=True)
