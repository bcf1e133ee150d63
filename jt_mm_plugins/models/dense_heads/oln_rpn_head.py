"""OLN's RPN head (`Learning Open-World Object Proposals without Learning to Classify
<https://arxiv.org/abs/2108.06753>`_) as UniDetector's first stage uses it
(``mmdet/models/dense_heads/oln_rpn_head.py`` of zhenyuw16/UniDetector), in Jittor."""
from typing import Dict, List, Optional, Tuple

import numpy as np

from jt_mm_plugins.bridge import BridgedDenseHead, register_jittor_module
from jt_mm_plugins.models.layers.activation import relu
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.task_modules import build_jittor_loss, build_jittor_task_module
from jt_mm_plugins.ops.nms import descending_order
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import anchor_inside_flags, normal_init_convs
from .anchor_head import _as_boxes, _gt_field
from .rpn_head import INIT_STD, JittorRPNHead

#: ``train_cfg`` keys of OLN's second (objectness) assignment.
OBJECTNESS_CFG_KEYS = ('objectness_assigner', 'objectness_sampler')


def centerness_targets(tblr: np.ndarray) -> np.ndarray:
    """OLN's objectness target of (n, 4) (top, bottom, left, right) distances:
    ``sqrt(min(t, b) / max(t, b) * min(l, r) / max(l, r))``."""
    top_bottom, left_right = tblr[:, 0:2], tblr[:, 2:4]
    ratio = (left_right.min(1) / left_right.max(1)) * (top_bottom.min(1) / top_bottom.max(1))
    return np.sqrt(np.clip(ratio, 0, None))


@register_jittor_module(bridge_base=BridgedDenseHead)
class OlnRPNHead(JittorRPNHead):
    """OLN's RPN head: :class:`JittorRPNHead` whose features are L2-normalised over channels after
    ``rpn_conv`` + ReLU, with a third 1x1 output ``rpn_obj`` (one objectness logit per anchor).

    Training: the classification and box losses are the RPN's (UniDetector's config: a
    ``TBLRBBoxCoder(normalizer=1)``, ``reg_decoded_bbox=True``, ``IoULoss(linear=True)`` weight 10
    and a classification weight of 0); the objectness target of the anchors that a second
    assignment (``train_cfg.objectness_assigner`` / ``objectness_sampler``) samples is the
    centerness of the anchor's centre in its gt box (:func:`centerness_targets`, 0 for sampled
    negatives); ``loss_objectness`` (L1 on the sigmoid) is averaged over the sampled anchors.

    Testing: the score is ``sigmoid(objectness)``; each level keeps its ``nms_pre`` best anchors,
    decoded and clipped; there is no NMS (the original returns before it), only ``max_per_img``
    over all levels.

    Args:
        loss_objectness (dict): Loss of the objectness branch (``L1Loss``).
        objectness_type (str): Only ``'Centerness'``.
        **kwargs: :class:`JittorRPNHead`'s.
    """

    def __init__(self, loss_objectness: dict = dict(type='L1Loss', loss_weight=1.0),
                 objectness_type: str = 'Centerness', **kwargs) -> None:
        if objectness_type != 'Centerness':
            raise NotImplementedError(f"OlnRPNHead: objectness_type {objectness_type!r}; only "
                                      "'Centerness'")
        self.objectness_type = objectness_type
        super().__init__(**kwargs)
        self.loss_objectness = build_jittor_loss(loss_objectness)

    def _check_train_cfg(self, train_cfg: Optional[Dict]) -> Optional[Dict]:
        if not train_cfg:
            return train_cfg
        missing = [k for k in OBJECTNESS_CFG_KEYS if k not in train_cfg]
        if missing:
            raise KeyError(f'OlnRPNHead: train_cfg lacks {missing} (the objectness assignment)')
        super()._check_train_cfg({k: v for k, v in train_cfg.items()
                                  if k not in OBJECTNESS_CFG_KEYS})
        return train_cfg

    def _build_train_modules(self, train_cfg: Dict) -> None:
        super()._build_train_modules(train_cfg)
        self.objectness_assigner = build_jittor_task_module(train_cfg['objectness_assigner'])
        self.objectness_sampler = build_jittor_task_module(train_cfg['objectness_sampler'],
                                                           default_args=dict(context=self))

    def _init_layers(self) -> None:
        super()._init_layers()
        self.rpn_obj = Conv2d(self.feat_channels, self.num_base_priors, 1)

    def init_weights(self) -> None:
        normal_init_convs(self, INIT_STD)

    def forward_single(self, x: jt.Var) -> Tuple[jt.Var, jt.Var, jt.Var]:
        """``rpn_cls_score``, ``rpn_bbox_pred`` and ``objectness_pred`` of one level."""
        x = relu(self.rpn_conv(x))
        x = x / jt.maximum((x * x).sum(dim=1, keepdims=True).sqrt(), 1e-12)
        return self.rpn_cls(x), self.rpn_reg(x), self.rpn_obj(x)

    # ------------------------------------------------------------------ training
    def objectness_targets_single(self, flat_anchors: jt.Var, valid_flags: jt.Var,
                                  gt_instances: Dict[str, jt.Var],
                                  img_meta: dict) -> Tuple[np.ndarray, np.ndarray]:
        """One image's objectness targets and weights over all its anchors (numpy, (n,))."""
        owner = type(self).__name__
        inside = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                     self.train_cfg['allowed_border']).numpy()
        inside_inds = np.nonzero(inside)[0]
        num_anchors = int(flat_anchors.shape[0])
        targets = np.zeros(num_anchors, np.float32)
        weights = np.zeros(num_anchors, np.float32)
        if len(inside_inds) == 0:
            return targets, weights
        anchors = flat_anchors[jt.array(inside_inds.astype(np.int32))]
        gt_bboxes = _as_boxes(_gt_field(gt_instances, 'bboxes', owner))
        gt_labels = _gt_field(gt_instances, 'labels', owner).reshape(-1)
        assign_result = self.objectness_assigner.assign(anchors, gt_bboxes, gt_labels=gt_labels)
        result = self.objectness_sampler.sample(assign_result, anchors, gt_bboxes,
                                                gt_labels=gt_labels)
        pos, neg = result.pos_inds_np, result.neg_inds_np
        if len(pos):
            tblr = self.bbox_coder.encode(result.pos_priors, result.pos_gt_bboxes).numpy()
            targets[inside_inds[pos]] = centerness_targets(tblr)
            weights[inside_inds[pos]] = 1
        weights[inside_inds[neg]] = 1
        return targets, weights

    def loss_by_feat(self,
                     cls_scores: List[jt.Var],
                     bbox_preds: List[jt.Var],
                     objectness_scores: List[jt.Var],
                     batch_gt_instances: List[Dict[str, jt.Var]],
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None) -> dict:
        """``loss_rpn_cls``, ``loss_rpn_bbox`` (per level) and ``loss_rpn_obj``."""
        losses = super().loss_by_feat(cls_scores, bbox_preds, batch_gt_instances,
                                      batch_img_metas, batch_gt_instances_ignore)
        featmap_sizes = [tuple(int(s) for s in f.shape[-2:]) for f in cls_scores]
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas)
        targets, weights = [], []
        for anchors, flags, gts, meta in zip(anchor_list, valid_flag_list, batch_gt_instances,
                                             batch_img_metas):
            t, w = self.objectness_targets_single(jt.concat(list(anchors), dim=0),
                                                  jt.concat(list(flags), dim=0), gts, meta)
            targets.append(t)
            weights.append(w)
        # (images, anchors) in the anchors' order: per image, levels, then (h, w, prior)
        preds = jt.concat([jt.concat([o[i].permute(1, 2, 0).reshape(-1)
                                      for o in objectness_scores])
                           for i in range(len(batch_img_metas))])
        targets, weights = np.concatenate(targets), np.concatenate(weights)
        losses['loss_rpn_obj'] = self.loss_objectness(
            preds.sigmoid(), jt.array(targets), jt.array(weights),
            avg_factor=max(float(weights.sum()), 1.0))
        return losses

    # ------------------------------------------------------------------ testing
    def _predict_by_feat_single(self, cls_score_list, bbox_pred_list, score_factor_list,
                                mlvl_priors, img_meta, cfg, rescale=False,
                                with_nms=True) -> Dict[str, jt.Var]:
        """Proposals of one image scored by ``sigmoid(objectness)`` (``score_factor_list``),
        ``nms_pre`` per level, no NMS."""
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None or 'max_per_img' not in cfg:
            raise InputError('OlnRPNHead: predicting proposals needs a test_cfg with '
                             'max_per_img (and nms_pre)')
        nms_pre = cfg.get('nms_pre', -1)
        boxes, scores = [], []
        for level, (bbox_pred, objectness, priors) in enumerate(
                zip(bbox_pred_list, score_factor_list, mlvl_priors)):
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, self.bbox_coder.encode_size)
            level_scores = objectness.permute(1, 2, 0).reshape(-1).sigmoid()
            if 0 < nms_pre < level_scores.shape[0]:
                order, ranked = descending_order(level_scores)
                keep = order[:nms_pre]
                level_scores, bbox_pred, priors = ranked[:nms_pre], bbox_pred[keep], priors[keep]
            boxes.append(self.bbox_coder.decode(priors, bbox_pred,
                                                max_shape=img_meta['img_shape']))
            scores.append(level_scores)
        results = dict(bboxes=jt.concat(boxes), scores=jt.concat(scores))
        if rescale:
            results = self._rescale_results(results, img_meta)
        order, ranked = descending_order(results['scores'])
        keep = order[:cfg['max_per_img']]
        return dict(bboxes=results['bboxes'][keep], scores=ranked[:cfg['max_per_img']],
                    labels=jt.zeros((int(keep.shape[0]), ), dtype='int64'))
