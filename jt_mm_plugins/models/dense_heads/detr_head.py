"""Jittor twin of mmdet 3.3's ``DETRHead`` (``mmdet/models/dense_heads/detr_head.py``): class and
box predictions for every decoder layer, Hungarian-matched losses on every layer (``d{i}.loss_*``
for all but the last), predictions without NMS.

Jittor-native interface (see :mod:`.base_dense_head`): ``hidden_states`` (num_layers, bs,
num_queries, embed_dims) Var, ``batch_gt_instances`` dicts (``bboxes`` xyxy pixels, ``labels``),
``batch_img_metas`` mmdet metainfo dicts, predictions as dicts (``bboxes``, ``scores``,
``labels``). mmdet's detectors reach it through :class:`~jt_mm_plugins.bridge.detr.BridgedDETRHead`.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from jt_mm_plugins.bridge.detr import BridgedDETRHead
from jt_mm_plugins.bridge.registry import register_jittor_module
from jt_mm_plugins.registry import build_jittor_loss, build_jittor_task_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..layers.transformer.ffn import FFN
from ..task_modules.match_cost import bbox_cxcywh_to_xyxy
from ..utils import take_rows

DEFAULT_LOSS_CLS = dict(type='CrossEntropyLoss', bg_cls_weight=0.1, use_sigmoid=False,
                        loss_weight=1.0, class_weight=1.0)
DEFAULT_TRAIN_CFG = dict(assigner=dict(type='HungarianAssigner', match_costs=[
    dict(type='ClassificationCost', weight=1.),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)]))


def reduce_mean(value: float) -> float:
    """mmdet's ``reduce_mean`` of a host number: the mean over the ranks of an initialised
    ``torch.distributed`` group, the value itself otherwise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / torch.distributed.get_world_size()


def _image_factor(img_meta: dict, dtype) -> np.ndarray:
    img_h, img_w = img_meta['img_shape'][:2]
    return np.array([img_w, img_h, img_w, img_h], dtype=dtype)


@register_jittor_module('JittorDETRHead', bridge_base=BridgedDETRHead)
class DETRHead(jt.nn.Module):
    """DETR's head: ``fc_cls`` (num_classes + 1 with softmax), ``reg_ffn`` -> ReLU -> ``fc_reg``
    -> sigmoid (normalised cx, cy, w, h); arguments and parameter names as mmdet's ``DETRHead``.

    Args:
        num_classes (int): Number of object classes (without background).
        embed_dims (int): Width of the hidden states. Defaults to 256.
        num_reg_fcs (int): Linear layers of ``reg_ffn``. Defaults to 2.
        sync_cls_avg_factor (bool): Average the classification normaliser over distributed ranks.
        loss_cls (dict): Classification loss; ``bg_cls_weight`` and a float ``class_weight`` give
            the background and object class weights (CrossEntropyLoss). Defaults to mmdet's.
        loss_bbox (dict): Box L1 loss on normalised cxcywh. Defaults to L1Loss(5.0).
        loss_iou (dict): IoU loss on pixel boxes. Defaults to GIoULoss(2.0).
        train_cfg (dict): ``assigner`` (HungarianAssigner config). No sampler.
        test_cfg (dict): ``max_per_img``. Defaults to 100.
        init_cfg: Accepted for config compatibility.
    """

    def __init__(self, num_classes: int, embed_dims: int = 256, num_reg_fcs: int = 2,
                 sync_cls_avg_factor: bool = False, loss_cls: Optional[dict] = None,
                 loss_bbox: Optional[dict] = None, loss_iou: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__()
        loss_cls = copy.deepcopy(DEFAULT_LOSS_CLS if loss_cls is None else dict(loss_cls))
        train_cfg = copy.deepcopy(DEFAULT_TRAIN_CFG) if train_cfg is None else train_cfg
        self.bg_cls_weight = 0
        self.sync_cls_avg_factor = sync_cls_avg_factor
        class_weight = loss_cls.get('class_weight', None)
        if class_weight is not None and type(self) is DETRHead:
            if not isinstance(class_weight, float):
                raise InputError(f'DETRHead: expected loss_cls.class_weight to have type float. '
                                 f'Found {type(class_weight)}.')
            bg_cls_weight = loss_cls.pop('bg_cls_weight', class_weight)
            if not isinstance(bg_cls_weight, float):
                raise InputError(f'DETRHead: expected loss_cls.bg_cls_weight to have type float. '
                                 f'Found {type(bg_cls_weight)}.')
            loss_cls['class_weight'] = [class_weight] * num_classes + [bg_cls_weight]
            self.bg_cls_weight = bg_cls_weight
        if train_cfg:
            if 'assigner' not in train_cfg:
                raise InputError('DETRHead: assigner should be provided when train_cfg is set.')
            self.assigner = build_jittor_task_module(train_cfg['assigner'])
            if train_cfg.get('sampler', None) is not None:
                raise RuntimeError('DETR do not build sampler.')
        self.num_classes, self.embed_dims, self.num_reg_fcs = num_classes, embed_dims, num_reg_fcs
        self.train_cfg = train_cfg
        self.test_cfg = dict(max_per_img=100) if test_cfg is None else test_cfg
        self.loss_cls = build_jittor_loss(loss_cls)
        self.loss_bbox = build_jittor_loss(dict(type='L1Loss', loss_weight=5.0)
                                           if loss_bbox is None else loss_bbox)
        self.loss_iou = build_jittor_loss(dict(type='GIoULoss', loss_weight=2.0)
                                          if loss_iou is None else loss_iou)
        if type(self.loss_cls).__name__ == 'QualityFocalLoss':
            raise NotImplementedError('DETRHead (Jittor): QualityFocalLoss as loss_cls is not '
                                      'implemented')
        self.cls_out_channels = num_classes if self.loss_cls.use_sigmoid else num_classes + 1
        self.fc_cls = jt.nn.Linear(embed_dims, self.cls_out_channels)
        self.activate = jt.nn.ReLU()
        self.reg_ffn = FFN(embed_dims, embed_dims, num_reg_fcs, dict(type='ReLU', inplace=True),
                           ffn_drop=0.0, add_identity=False)
        self.fc_reg = jt.nn.Linear(embed_dims, 4)

    def execute(self, hidden_states: jt.Var) -> Tuple[jt.Var, jt.Var]:
        """(num_layers, bs, num_queries, dim) -> class logits (..., cls_out_channels) and
        sigmoid-normalised boxes (..., 4) cxcywh."""
        cls_scores = self.fc_cls(hidden_states)
        bbox_preds = self.fc_reg(self.activate(self.reg_ffn(hidden_states))).sigmoid()
        return cls_scores, bbox_preds

    # ------------------------------------------------------------------------------------------
    # losses
    # ------------------------------------------------------------------------------------------
    def loss(self, hidden_states: jt.Var, batch_gt_instances: List[Dict],
             batch_img_metas: List[dict]) -> Dict[str, jt.Var]:
        outs = self(hidden_states)
        return self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas)

    def loss_and_predict(self, hidden_states: jt.Var, batch_gt_instances: List[Dict],
                         batch_img_metas: List[dict]) -> Tuple[Dict, List[Dict]]:
        outs = self(hidden_states)
        losses = self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas)
        return losses, self.predict_by_feat(*outs, batch_img_metas=batch_img_metas)

    def loss_by_feat(self, all_layers_cls_scores: jt.Var, all_layers_bbox_preds: jt.Var,
                     batch_gt_instances: List[Dict], batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[list] = None) -> Dict[str, jt.Var]:
        """Losses of every decoder layer: the last as ``loss_cls`` / ``loss_bbox`` /
        ``loss_iou``, layer ``i`` of the others as ``d{i}.loss_*``."""
        if batch_gt_instances_ignore is not None:
            raise InputError(f'{type(self).__name__} only supports for batch_gt_instances_ignore '
                             'setting to None.')
        num_layers, num_imgs = all_layers_cls_scores.shape[0], all_layers_cls_scores.shape[1]
        if len(batch_gt_instances) != num_imgs or len(batch_img_metas) != num_imgs:
            raise InputError(f'{type(self).__name__}: {num_imgs} images of predictions but '
                             f'{len(batch_gt_instances)} gt instances and {len(batch_img_metas)} '
                             'image metas')
        # Every layer's matching at once: one Jittor sync for all the cost matrices.
        assignments = self._assign(
            [(all_layers_cls_scores[layer, i], all_layers_bbox_preds[layer, i],
              batch_gt_instances[i], batch_img_metas[i])
             for layer in range(num_layers) for i in range(num_imgs)])
        losses = [self.loss_by_feat_single(all_layers_cls_scores[layer],
                                           all_layers_bbox_preds[layer], batch_gt_instances,
                                           batch_img_metas,
                                           assignments[layer * num_imgs:(layer + 1) * num_imgs])
                  for layer in range(num_layers)]
        loss_dict = dict(zip(('loss_cls', 'loss_bbox', 'loss_iou'), losses[-1]))
        for layer, layer_losses in enumerate(losses[:-1]):
            for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'), layer_losses):
                loss_dict[f'd{layer}.{name}'] = value
        return loss_dict

    def _assign(self, items: Sequence[Tuple[jt.Var, jt.Var, Dict, dict]]) -> list:
        """Hungarian assignments of (cls_score, bbox_pred, gt_instances, img_meta) items."""
        costs = []
        for cls_score, bbox_pred, gt, img_meta in items:
            if gt['labels'].shape[0] == 0 or bbox_pred.shape[0] == 0:
                costs.append(None)
                continue
            factor = jt.array(_image_factor(img_meta, 'float32')).cast(bbox_pred.dtype)
            preds = dict(scores=cls_score, bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
            costs.append(self.assigner.cost_matrix(preds, gt, img_meta))
        jt.sync([c for c in costs if c is not None])
        return [self.assigner.assign_from_cost(None if cost is None else cost.numpy(),
                                               int(bbox_pred.shape[0]),
                                               gt['labels'].numpy().astype(np.int64))
                for cost, (_, bbox_pred, gt, _) in zip(costs, items)]

    def get_targets(self, cls_scores_list: List[jt.Var], bbox_preds_list: List[jt.Var],
                    batch_gt_instances: List[Dict], batch_img_metas: List[dict],
                    assign_results: Optional[list] = None) -> tuple:
        """mmdet's ``get_targets``: per-image labels, label weights, box targets (normalised
        cxcywh), box weights, and the numbers of positive and negative queries."""
        if assign_results is None:
            assign_results = self._assign(list(zip(cls_scores_list, bbox_preds_list,
                                                   batch_gt_instances, batch_img_metas)))
        targets = [self._get_targets_single(bbox_pred, gt, img_meta, result)
                   for bbox_pred, gt, img_meta, result in zip(bbox_preds_list, batch_gt_instances,
                                                               batch_img_metas, assign_results)]
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = zip(*targets)
        return (list(labels), list(label_weights), list(bbox_targets), list(bbox_weights),
                sum(len(p) for p in pos_inds), sum(len(n) for n in neg_inds))

    def _get_targets_single(self, bbox_pred: jt.Var, gt_instances: Dict, img_meta: dict,
                            assign_result) -> tuple:
        num_bboxes = int(bbox_pred.shape[0])
        gt_bboxes = gt_instances['bboxes'].numpy().reshape(-1, 4)
        gt_labels = gt_instances['labels'].numpy().astype(np.int64)
        gt_inds = assign_result.gt_inds.numpy()
        pos_inds = np.nonzero(gt_inds > 0)[0]
        neg_inds = np.nonzero(gt_inds == 0)[0]
        assigned = gt_inds[pos_inds] - 1
        labels = np.full((num_bboxes, ), self.num_classes, dtype=np.int32)
        labels[pos_inds] = gt_labels[assigned]
        label_weights = np.ones((num_bboxes, ), dtype=gt_bboxes.dtype)
        bbox_targets = np.zeros((num_bboxes, 4), dtype=gt_bboxes.dtype)
        bbox_weights = np.zeros((num_bboxes, 4), dtype=gt_bboxes.dtype)
        bbox_weights[pos_inds] = 1.0
        # The same float operations as mmdet: / factor, then xyxy -> cxcywh.
        pos_gt = gt_bboxes[assigned] / _image_factor(img_meta, gt_bboxes.dtype)
        x1, y1, x2, y2 = pos_gt.T
        bbox_targets[pos_inds] = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)
        return (jt.array(labels), jt.array(label_weights), jt.array(bbox_targets),
                jt.array(bbox_weights), pos_inds, neg_inds)

    def loss_by_feat_single(self, cls_scores: jt.Var, bbox_preds: jt.Var,
                            batch_gt_instances: List[Dict], batch_img_metas: List[dict],
                            assign_results: Optional[list] = None) -> Tuple[jt.Var, ...]:
        """One decoder layer's (loss_cls, loss_bbox, loss_iou); ``cls_scores`` (bs, queries,
        cls_out_channels), ``bbox_preds`` (bs, queries, 4)."""
        num_imgs = cls_scores.shape[0]
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos,
         num_total_neg) = self.get_targets([cls_scores[i] for i in range(num_imgs)],
                                           [bbox_preds[i] for i in range(num_imgs)],
                                           batch_gt_instances, batch_img_metas, assign_results)
        labels = jt.concat(labels_list, 0)
        label_weights = jt.concat(label_weights_list, 0).cast(cls_scores.dtype)
        bbox_targets = jt.concat(bbox_targets_list, 0).cast(bbox_preds.dtype)
        bbox_weights = jt.concat(bbox_weights_list, 0).cast(bbox_preds.dtype)
        cls_scores = cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_total_pos * 1.0 + num_total_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_avg_factor)
        cls_avg_factor = max(cls_avg_factor, 1)
        loss_cls = self.loss_cls(cls_scores, labels, label_weights, avg_factor=cls_avg_factor)
        num_total_pos = max(reduce_mean(num_total_pos), 1)
        factors = np.concatenate([np.tile(_image_factor(meta, 'float32'), (bbox_preds.shape[1], 1))
                                  for meta in batch_img_metas[:num_imgs]], 0)
        factors = jt.array(factors).cast(bbox_preds.dtype)
        bbox_preds = bbox_preds.reshape(-1, 4)
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        bboxes_gt = bbox_cxcywh_to_xyxy(bbox_targets) * factors
        loss_iou = self.loss_iou(bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(bbox_preds, bbox_targets, bbox_weights,
                                   avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    # ------------------------------------------------------------------------------------------
    # predictions
    # ------------------------------------------------------------------------------------------
    def predict(self, hidden_states: jt.Var, batch_img_metas: List[dict],
                rescale: bool = True) -> List[Dict[str, jt.Var]]:
        """Predictions from the last decoder layer."""
        outs = self(hidden_states[-1].unsqueeze(0))
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)

    def predict_by_feat(self, layer_cls_scores: jt.Var, layer_bbox_preds: jt.Var,
                        batch_img_metas: List[dict], rescale: bool = True) -> List[Dict]:
        cls_scores, bbox_preds = layer_cls_scores[-1], layer_bbox_preds[-1]
        return [self._predict_by_feat_single(cls_scores[i], bbox_preds[i], img_meta, rescale)
                for i, img_meta in enumerate(batch_img_metas)]

    def _predict_by_feat_single(self, cls_score: jt.Var, bbox_pred: jt.Var, img_meta: dict,
                                rescale: bool = True) -> Dict[str, jt.Var]:
        """The ``max_per_img`` best queries by score, boxes in pixels (clamped to the image),
        divided by ``scale_factor`` with ``rescale``."""
        num_queries = int(cls_score.shape[0])
        max_per_img = self.test_cfg.get('max_per_img', num_queries)
        if self.loss_cls.use_sigmoid:
            flat = cls_score.sigmoid().reshape(-1)
            order = np.argsort(-flat.numpy(), kind='stable')[:max_per_img]
            scores = take_rows(flat, order)
            det_labels = jt.array((order % self.num_classes).astype(np.int32))
            bbox_pred = take_rows(bbox_pred, order // self.num_classes)
        else:
            probs = jt.nn.softmax(cls_score, dim=-1)[:, :-1]
            labels, best = jt.argmax(probs, dim=-1)
            order = np.argsort(-best.numpy(), kind='stable')[:max_per_img]
            scores = take_rows(best, order)
            det_labels = take_rows(labels, order)
            bbox_pred = take_rows(bbox_pred, order)
        img_h, img_w = img_meta['img_shape'][:2]
        size = jt.array(np.array([img_w, img_h, img_w, img_h], np.float32)).cast(bbox_pred.dtype)
        det_bboxes = jt.minimum(jt.maximum(bbox_cxcywh_to_xyxy(bbox_pred) * size, 0), size)
        if rescale:
            if img_meta.get('scale_factor') is None:
                raise InputError(f'{type(self).__name__}: rescale needs img_meta["scale_factor"]')
            scale = np.tile(np.asarray(img_meta['scale_factor'], np.float32), 2)
            det_bboxes = det_bboxes / jt.array(scale).cast(det_bboxes.dtype)
        return dict(bboxes=det_bboxes, scores=scores, labels=det_labels.int32())
