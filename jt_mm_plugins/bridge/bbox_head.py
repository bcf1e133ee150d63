"""Any Jittor bbox head inside mmdet's own RoI heads (``StandardRoIHead`` and its subclasses).

mmdet's ``StandardRoIHead`` builds its ``bbox_head`` from ``MODELS`` and, besides calling it on RoI
features, calls ``bbox_head.loss_and_target(cls_score, bbox_pred, rois, sampling_results,
rcnn_train_cfg)`` in training and ``bbox_head.predict_by_feat(rois, cls_scores, bbox_preds,
batch_img_metas, rcnn_test_cfg, rescale)`` at test time, and reads ``num_classes`` and
``predict_box_type``. :class:`BridgedBBoxHead` (the ``bridge_base`` of every Jittor bbox head)
answers those calls: mmdet's ``SamplingResult`` objects become dicts of tensors (the Jittor head
sees objects with ``pos_priors``, ``neg_priors``, ``pos_gt_bboxes``, ``pos_gt_labels``,
``pos_is_gt`` and, when the RoI head supplies it, ``img_meta``), the Jittor head's loss and
prediction methods run as one bridged autograd node each (gradients reach ``cls_score`` /
``bbox_pred`` and through them the head's own forward), and results come back as mmdet's
``InstanceData``.

mmdet's ``SamplingResult`` does not know its image. A head whose loss needs per-image information
(the ``dataset_id`` of UniDetector's partitioned head) is used inside :class:`MetaStandardRoIHead`,
mmdet's ``StandardRoIHead`` whose ``bbox_loss`` gives every sampling result its image's metainfo.
"""
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

from .data_samples import _box_tensor, instances_from_results, losses_for_mmdet
from .function import call_jittor
from .module import JittorModuleWrapper

#: What the Jittor side reads of mmdet's ``SamplingResult``.
SAMPLING_RESULT_FIELDS = ('pos_priors', 'neg_priors', 'pos_gt_bboxes', 'pos_gt_labels',
                          'pos_is_gt')


def sampling_results_to_dicts(sampling_results: Sequence[Any]) -> List[Dict[str, Any]]:
    """mmdet's sampling results as dicts of (detached) tensors, plus ``img_meta`` where set."""
    converted = []
    for res in sampling_results:
        item = {}
        for key in SAMPLING_RESULT_FIELDS:
            item[key] = _box_tensor(getattr(res, key)).detach()
        item['pos_gt_labels'] = item['pos_gt_labels'].long()
        if getattr(res, 'img_meta', None) is not None:
            item['img_meta'] = res.img_meta
        converted.append(item)
    return converted


def _as_sampling_results(items: Sequence[Dict[str, Any]]) -> List[SimpleNamespace]:
    """The Jittor-side view of :func:`sampling_results_to_dicts` (attribute access, as the Jittor
    heads read sampling results)."""
    return [SimpleNamespace(**item) for item in items]


class BridgedBBoxHead(JittorModuleWrapper):
    """mmdet's ``BBoxHead`` interface over a bridged Jittor bbox head (see the module docs).

    ``forward`` (inherited) returns the Jittor head's outputs (``cls_score, bbox_pred``) as torch
    tensors. Public data attributes (``num_classes``, ``reg_class_agnostic``,
    ``predict_box_type``, ``custom_cls_channels`` ...) read through to the Jittor head.
    """

    def _run_on_outputs(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` of the Jittor head on its outputs: differentiable w.r.t. the tensors in
        ``args`` (the head's outputs, through which its parameters get their gradients), not
        w.r.t. the parameters themselves (targets, losses and decoding do not read them)."""
        self._push_state_to_jittor()
        return call_jittor(fn, args)

    def loss_and_target(self,
                        cls_score: Any,
                        bbox_pred: Optional[torch.Tensor],
                        rois: torch.Tensor,
                        sampling_results: Sequence[Any],
                        rcnn_train_cfg: Any,
                        concat: bool = True,
                        reduction_override: Optional[str] = None) -> dict:
        """mmdet's ``BBoxHead.loss_and_target``: ``dict(loss_bbox=<losses>,
        bbox_targets=<targets>)``, the losses differentiable w.r.t. ``cls_score`` and
        ``bbox_pred``."""
        items = sampling_results_to_dicts(sampling_results)
        head = self.jittor_module

        def run(cls_score, bbox_pred, rois, items):
            return head.loss_and_target(cls_score, bbox_pred, rois, _as_sampling_results(items),
                                        rcnn_train_cfg, concat=concat,
                                        reduction_override=reduction_override)

        result = self._run_on_outputs(run, cls_score, bbox_pred, rois, items)
        result['loss_bbox'] = losses_for_mmdet(result['loss_bbox'], type(self).__name__)
        # mmdet's targets are constants with int64 labels
        targets = [t.detach() if torch.is_tensor(t) else [v.detach() for v in t]
                   for t in result['bbox_targets']]
        labels = targets[0]
        targets[0] = labels.long() if torch.is_tensor(labels) else [t.long() for t in labels]
        result['bbox_targets'] = tuple(targets)
        return result

    def predict_by_feat(self,
                        rois: Sequence[torch.Tensor],
                        cls_scores: Sequence[Any],
                        bbox_preds: Sequence[Optional[torch.Tensor]],
                        batch_img_metas: List[dict],
                        rcnn_test_cfg: Any = None,
                        rescale: bool = False) -> List[InstanceData]:
        """mmdet's ``BBoxHead.predict_by_feat``: per-image ``InstanceData`` (``bboxes``,
        ``scores``, ``labels``; without ``rcnn_test_cfg`` the raw per-class boxes and scores)."""
        results = self._run_on_outputs(self.jittor_module.predict_by_feat, list(rois),
                                  list(cls_scores), list(bbox_preds), batch_img_metas,
                                  rcnn_test_cfg, rescale)
        return instances_from_results(results, detach=True)

    def refine_bboxes(self, *args: Any, **kwargs: Any) -> Any:
        """Cascade R-CNN's box refinement: the Jittor head's, where it has one."""
        if not hasattr(self.jittor_module, 'refine_bboxes'):
            raise NotImplementedError(f'{type(self).__name__} (Jittor) has no refine_bboxes: it '
                                      'cannot be a stage of a cascade RoI head')
        return self.run_jittor(self.jittor_module.refine_bboxes, *args, **kwargs)


try:  # mmdet's model zoo needs mmcv's compiled ops; the rest of the bridge does not
    from mmdet.models.roi_heads import StandardRoIHead
except ImportError:  # pragma: no cover
    StandardRoIHead = None

if StandardRoIHead is not None:

    @MODELS.register_module()
    class MetaStandardRoIHead(StandardRoIHead):
        """mmdet's ``StandardRoIHead`` whose sampling results carry their image's metainfo
        (``sampling_result.img_meta``), for bbox heads whose loss needs it (UniDetector's
        ``BBoxHeadCLIPPartitioned`` reads ``dataset_id``), and whose ``predict_by_feat`` metas
        carry the proposals' scores (``proposal_scores``). Everything else is mmdet's."""

        def loss(self, x, rpn_results_list, batch_data_samples) -> dict:
            self._batch_img_metas = [sample.metainfo for sample in batch_data_samples]
            try:
                return super().loss(x, rpn_results_list, batch_data_samples)
            finally:
                self._batch_img_metas = None

        def bbox_loss(self, x, sampling_results) -> dict:
            metas = getattr(self, '_batch_img_metas', None)
            if metas is not None:
                for res, meta in zip(sampling_results, metas):
                    res.img_meta = meta
            return super().bbox_loss(x, sampling_results)

        def predict_bbox(self, x, batch_img_metas, rpn_results_list, rcnn_test_cfg,
                         rescale: bool = False):
            """mmdet's, with each image's proposal scores in its metainfo
            (``proposal_scores``, read by UniDetector's ``BBoxHeadCLIPInference``)."""
            metas = []
            for meta, proposals in zip(batch_img_metas, rpn_results_list):
                meta = dict(meta)
                if 'scores' in proposals:
                    meta['proposal_scores'] = proposals.scores
                metas.append(meta)
            return super().predict_bbox(x, metas, rpn_results_list, rcnn_test_cfg, rescale)
