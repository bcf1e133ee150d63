"""Jittor twin of mmdet 3.3.0's ``BBoxHead``
(``mmdet/models/roi_heads/bbox_heads/bbox_head.py``)."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead
from jt_mm_plugins.models.task_modules import build_jittor_loss, build_jittor_task_module
from jt_mm_plugins.registry import JITTOR_MODELS
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import (accuracy, cfg_get, cfg_require, concat_rows, empty_bbox_results,
                    multiclass_nms, take_rows)

#: Predictor layer types a config may name in ``cls_predictor_cfg``/``reg_predictor_cfg``.
PREDICTOR_TYPES = ('Linear', )


def _pair(value: Union[int, Sequence[int]]) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise InputError(f'roi_feat_size must be a positive int or a pair of them, got {value!r}')
    return pair


def normal_init_(layer: jt.nn.Linear, std: float, mean: float = 0., bias: float = 0.) -> None:
    """mmengine's ``NormalInit``: weight ~ N(mean, std^2), bias = constant."""
    layer.weight.assign(
        jt.array(np.random.normal(mean, std, layer.weight.shape).astype(np.float32)))
    if layer.bias is not None:
        layer.bias.assign(jt.full(layer.bias.shape, bias, dtype='float32'))


def xavier_uniform_init_(layer: jt.nn.Linear, gain: float = 1., bias: float = 0.) -> None:
    """mmengine's ``XavierInit(distribution='uniform')``: U(-a, a) with
    a = gain * sqrt(6 / (fan_in + fan_out)), bias = constant."""
    fan_out, fan_in = layer.weight.shape
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    layer.weight.assign(
        jt.array(np.random.uniform(-bound, bound, layer.weight.shape).astype(np.float32)))
    if layer.bias is not None:
        layer.bias.assign(jt.full(layer.bias.shape, bias, dtype='float32'))


def build_predictor(cfg: dict, in_features: int, out_features: int, owner: str,
                    role: str) -> jt.nn.Linear:
    """Build ``fc_cls``/``fc_reg`` from ``cls_predictor_cfg``/``reg_predictor_cfg``.

    Args:
        cfg (dict): ``dict(type='Linear')`` (optionally with ``bias``).
        in_features (int): Input features.
        out_features (int): Output features.
        owner (str): Class name for error messages.
        role (str): Config key for error messages.

    Returns:
        jt.nn.Linear: The layer.
    """
    if not isinstance(cfg, dict) or cfg.get('type') not in PREDICTOR_TYPES:
        raise NotImplementedError(f'{owner}: {role} {cfg!r} is not supported in Jittor; only '
                                  f'{[dict(type=t) for t in PREDICTOR_TYPES]}')
    return JITTOR_MODELS.build(cfg, default_args=dict(in_features=in_features,
                                                      out_features=out_features))


@register_jittor_module(bridge_base=BridgedBBoxHead)
class JittorBBoxHead(jt.nn.Module):
    """Simplest RoI head, with only two fc layers for classification and regression respectively,
    in Jittor (mmdet's ``BBoxHead``, the box head of
    `Fast R-CNN <https://arxiv.org/abs/1504.08083>`_).

    The Jittor-native interface replaces mmdet's structures by plain containers: sampling results
    are :class:`jt_mm_plugins.models.task_modules.SamplingResult`, ``rcnn_train_cfg`` and
    ``rcnn_test_cfg`` are dicts or ConfigDicts, and results are dicts with ``bboxes``, ``scores``
    and ``labels`` Vars. Parameter names (``fc_cls.weight``, ``fc_reg.bias`` ...) are mmdet's.

    Args:
        with_avg_pool (bool): Whether to average-pool the RoI features first. Defaults to False.
        with_cls (bool): Whether there is a classification branch. Defaults to True.
        with_reg (bool): Whether there is a regression branch. Defaults to True.
        roi_feat_size (int | tuple[int, int]): Size of the RoI features. Defaults to 7.
        in_channels (int): Channels of the RoI features. Defaults to 256.
        num_classes (int): Number of foreground classes. Defaults to 80.
        bbox_coder (dict): Box coder config (Jittor task-module registry). Defaults to
            ``DeltaXYWHBBoxCoder`` with stds (0.1, 0.1, 0.2, 0.2).
        predict_box_type (str): Only ``'hbox'``. Defaults to 'hbox'.
        reg_class_agnostic (bool): Whether the regression is class agnostic. Defaults to False.
        reg_decoded_bbox (bool): Whether the regression loss is computed on decoded boxes (IoU
            losses). Defaults to False.
        reg_predictor_cfg (dict): Config of ``fc_reg``. Defaults to ``dict(type='Linear')``.
        cls_predictor_cfg (dict): Config of ``fc_cls``. Defaults to ``dict(type='Linear')``.
        loss_cls (dict): Classification loss config (Jittor loss registry). Defaults to softmax
            ``CrossEntropyLoss``.
        loss_bbox (dict): Regression loss config. Defaults to ``SmoothL1Loss(beta=1.0)``.
    """

    def __init__(self,
                 with_avg_pool: bool = False,
                 with_cls: bool = True,
                 with_reg: bool = True,
                 roi_feat_size: Union[int, Tuple[int, int]] = 7,
                 in_channels: int = 256,
                 num_classes: int = 80,
                 bbox_coder: dict = dict(
                     type='DeltaXYWHBBoxCoder',
                     clip_border=True,
                     target_means=[0., 0., 0., 0.],
                     target_stds=[0.1, 0.1, 0.2, 0.2]),
                 predict_box_type: str = 'hbox',
                 reg_class_agnostic: bool = False,
                 reg_decoded_bbox: bool = False,
                 reg_predictor_cfg: dict = dict(type='Linear'),
                 cls_predictor_cfg: dict = dict(type='Linear'),
                 loss_cls: dict = dict(
                     type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox: dict = dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)) -> None:
        super().__init__()
        owner = type(self).__name__
        if not (with_cls or with_reg):
            raise InputError(f'{owner}: at least one of with_cls and with_reg must be True')
        if predict_box_type != 'hbox':
            raise NotImplementedError(f'{owner}: predict_box_type {predict_box_type!r} is not '
                                      "supported; only 'hbox'")
        self.with_avg_pool = with_avg_pool
        self.with_cls = with_cls
        self.with_reg = with_reg
        self.roi_feat_size = _pair(roi_feat_size)
        self.roi_feat_area = self.roi_feat_size[0] * self.roi_feat_size[1]
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.predict_box_type = predict_box_type
        self.reg_class_agnostic = reg_class_agnostic
        self.reg_decoded_bbox = reg_decoded_bbox
        self.reg_predictor_cfg = reg_predictor_cfg
        self.cls_predictor_cfg = cls_predictor_cfg
        self.debug_imgs = None  # mmdet's BBoxHead sets it (legacy); kept for code that reads it

        self.bbox_coder = build_jittor_task_module(bbox_coder)
        self.loss_cls = build_jittor_loss(loss_cls)
        self.loss_bbox = build_jittor_loss(loss_bbox)
        if self.custom_cls_channels or self.custom_activation:
            raise NotImplementedError(f'{owner}: losses with custom class channels or activation '
                                      '(Seesaw loss ...) are not supported')

        in_features = self.in_channels * (1 if self.with_avg_pool else self.roi_feat_area)
        self._init_predictors(in_features, in_features)
        self.init_weights()

    # ------------------------------------------------------------------ layers
    @property
    def custom_cls_channels(self) -> bool:
        """bool: Whether the classification loss decides the channels of ``fc_cls``."""
        return getattr(self.loss_cls, 'custom_cls_channels', False)

    @property
    def custom_activation(self) -> bool:
        """bool: Whether the classification loss has its own activation."""
        return getattr(self.loss_cls, 'custom_activation', False)

    @property
    def custom_accuracy(self) -> bool:
        """bool: Whether the classification loss computes its own accuracy."""
        return getattr(self.loss_cls, 'custom_accuracy', False)

    def _init_predictors(self, cls_in_features: int, reg_in_features: int) -> None:
        """Build ``fc_cls`` (num_classes + 1 outputs) and ``fc_reg`` (4 or 4 * num_classes)."""
        owner = type(self).__name__
        if self.with_cls:
            self.fc_cls = build_predictor(self.cls_predictor_cfg, cls_in_features,
                                          self.num_classes + 1, owner, 'cls_predictor_cfg')
        else:
            self.fc_cls = None
        if self.with_reg:
            box_dim = self.bbox_coder.encode_size
            out_dim_reg = box_dim if self.reg_class_agnostic else box_dim * self.num_classes
            self.fc_reg = build_predictor(self.reg_predictor_cfg, reg_in_features, out_dim_reg,
                                          owner, 'reg_predictor_cfg')
        else:
            self.fc_reg = None

    def init_weights(self) -> None:
        """mmdet's default ``init_cfg``: ``fc_cls`` ~ N(0, 0.01^2), ``fc_reg`` ~ N(0, 0.001^2),
        zero biases."""
        if self.with_cls:
            normal_init_(self.fc_cls, std=0.01)
        if self.with_reg:
            normal_init_(self.fc_reg, std=0.001)

    @staticmethod
    def _flatten(x: jt.Var) -> jt.Var:
        """``x.flatten(1)`` that also works with zero rows."""
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def _avg_pool(self, x: jt.Var) -> jt.Var:
        """``AvgPool2d(roi_feat_size)`` on RoI features of exactly that size: a spatial mean."""
        if tuple(x.shape[2:]) != self.roi_feat_size:
            raise InputError(f'{type(self).__name__}: with_avg_pool expects RoI features of size '
                             f'{self.roi_feat_size}, got {tuple(x.shape[2:])}')
        return x.mean(dims=(2, 3), keepdims=True)

    def execute(self, x: jt.Var) -> Tuple[Optional[jt.Var], Optional[jt.Var]]:
        """Classification scores and box deltas of RoI features.

        Args:
            x (jt.Var): RoI features (n, C, h, w).

        Returns:
            tuple: ``cls_score`` (n, num_classes + 1) and ``bbox_pred`` (n, 4 * num_classes or 4);
            either is None without its branch.
        """
        if self.with_avg_pool:
            x = self._avg_pool(x)
        x = self._flatten(x)
        cls_score = self.fc_cls(x) if self.with_cls else None
        bbox_pred = self.fc_reg(x) if self.with_reg else None
        return cls_score, bbox_pred

    # ------------------------------------------------------------------ targets
    def _get_targets_single(self, pos_priors: jt.Var, neg_priors: jt.Var, pos_gt_bboxes: jt.Var,
                            pos_gt_labels: jt.Var, cfg: Any) -> Tuple[jt.Var, ...]:
        """Targets of one image's sampled RoIs (positives first, then negatives).

        Args:
            pos_priors (jt.Var): Positive boxes (num_pos, 4).
            neg_priors (jt.Var): Negative boxes (num_neg, 4).
            pos_gt_bboxes (jt.Var): Gt box of each positive (num_pos, 4).
            pos_gt_labels (jt.Var): Gt label of each positive (num_pos,).
            cfg (dict): ``train_cfg`` of the R-CNN, read for ``pos_weight``.

        Returns:
            tuple[jt.Var]: ``labels`` (n,) int32 (background = num_classes), ``label_weights``
            (n,), ``bbox_targets`` (n, reg_dim) and ``bbox_weights`` (n, reg_dim).
        """
        num_pos, num_neg = int(pos_priors.shape[0]), int(neg_priors.shape[0])
        num_samples = num_pos + num_neg
        reg_dim = pos_gt_bboxes.shape[-1] if self.reg_decoded_bbox else self.bbox_coder.encode_size

        labels = np.full((num_samples, ), self.num_classes, np.int32)
        label_weights = np.zeros((num_samples, ), np.float32)
        bbox_weights = np.zeros((num_samples, reg_dim), np.float32)
        bbox_target_parts = []
        if num_pos > 0:
            labels[:num_pos] = pos_gt_labels.numpy().astype(np.int32)
            pos_weight = cfg_require(cfg, 'pos_weight', type(self).__name__ + ' rcnn_train_cfg')
            label_weights[:num_pos] = 1.0 if pos_weight <= 0 else pos_weight
            if not self.reg_decoded_bbox:
                pos_bbox_targets = self.bbox_coder.encode(pos_priors, pos_gt_bboxes)
            else:
                pos_bbox_targets = pos_gt_bboxes
            bbox_target_parts.append(pos_bbox_targets.float32())
            bbox_weights[:num_pos, :] = 1
        if num_neg > 0:
            label_weights[-num_neg:] = 1.0
            bbox_target_parts.append(jt.zeros((num_neg, reg_dim), dtype='float32'))
        bbox_targets = concat_rows(bbox_target_parts, (reg_dim, ), 'float32')
        return (jt.array(labels), jt.array(label_weights), bbox_targets, jt.array(bbox_weights))

    def get_targets(self, sampling_results: List[Any], rcnn_train_cfg: Any,
                    concat: bool = True) -> Tuple[Union[jt.Var, List[jt.Var]], ...]:
        """Targets of all images' sampled RoIs.

        Args:
            sampling_results (list[SamplingResult]): Sampling results of each image.
            rcnn_train_cfg (dict): ``train_cfg`` of the R-CNN.
            concat (bool): Whether to concatenate the images' targets. Defaults to True.

        Returns:
            tuple: ``labels``, ``label_weights``, ``bbox_targets``, ``bbox_weights``: Vars (or
            lists of Vars per image when ``concat=False``).
        """
        per_image = [
            self._get_targets_single(res.pos_priors, res.neg_priors, res.pos_gt_bboxes,
                                     res.pos_gt_labels, rcnn_train_cfg) for res in sampling_results
        ]
        labels, label_weights, bbox_targets, bbox_weights = (list(t) for t in zip(*per_image))
        if concat:
            reg_dim = bbox_targets[0].shape[-1]
            labels = concat_rows(labels, (), 'int32')
            label_weights = concat_rows(label_weights, (), 'float32')
            bbox_targets = concat_rows(bbox_targets, (reg_dim, ), 'float32')
            bbox_weights = concat_rows(bbox_weights, (reg_dim, ), 'float32')
        return labels, label_weights, bbox_targets, bbox_weights

    # ------------------------------------------------------------------ losses
    def loss_and_target(self,
                        cls_score: Optional[jt.Var],
                        bbox_pred: Optional[jt.Var],
                        rois: jt.Var,
                        sampling_results: List[Any],
                        rcnn_train_cfg: Any,
                        concat: bool = True,
                        reduction_override: Optional[str] = None) -> Dict[str, Any]:
        """Targets, then losses, of the sampled RoIs.

        Args:
            cls_score (jt.Var): Classification scores (n, num_classes + 1).
            bbox_pred (jt.Var): Box deltas (n, 4 * num_classes or 4).
            rois (jt.Var): RoIs (n, 5).
            sampling_results (list[SamplingResult]): Sampling results of each image.
            rcnn_train_cfg (dict): ``train_cfg`` of the R-CNN.
            concat (bool): Whether to concatenate the targets. Defaults to True.
            reduction_override (str, optional): Overrides the losses' reduction. Defaults to None.

        Returns:
            dict: ``loss_bbox`` (the loss dict) and ``bbox_targets`` (the targets tuple).
        """
        cls_reg_targets = self.get_targets(sampling_results, rcnn_train_cfg, concat=concat)
        losses = self.loss(
            cls_score, bbox_pred, rois, *cls_reg_targets, reduction_override=reduction_override)
        return dict(loss_bbox=losses, bbox_targets=cls_reg_targets)

    def loss(self,
             cls_score: Optional[jt.Var],
             bbox_pred: Optional[jt.Var],
             rois: jt.Var,
             labels: jt.Var,
             label_weights: jt.Var,
             bbox_targets: jt.Var,
             bbox_weights: jt.Var,
             reduction_override: Optional[str] = None) -> Dict[str, jt.Var]:
        """Classification and regression losses, as mmdet's ``BBoxHead.loss``.

        ``loss_cls`` averages over RoIs with a positive label weight (at least 1); ``loss_bbox``
        regresses the positive RoIs' deltas of their gt class, averaged over all sampled RoIs.
        Without RoIs there is neither ``loss_cls`` nor ``acc``; without positives ``loss_bbox`` is
        a zero that keeps ``bbox_pred`` in the graph (as in mmdet).

        Args:
            cls_score (jt.Var): Classification scores (n, num_classes + 1).
            bbox_pred (jt.Var): Box deltas (n, 4 * num_classes or 4).
            rois (jt.Var): RoIs (n, 5).
            labels (jt.Var): Targets (n,), background = num_classes.
            label_weights (jt.Var): Weights (n,).
            bbox_targets (jt.Var): Regression targets (n, 4).
            bbox_weights (jt.Var): Regression weights (n, 4).
            reduction_override (str, optional): Overrides the losses' reduction. Defaults to None.

        Returns:
            dict[str, jt.Var]: ``loss_cls``, ``acc``, ``loss_bbox``.
        """
        losses = dict()
        if cls_score is not None:
            avg_factor = max(float((label_weights.numpy() > 0).sum()), 1.)
            if cls_score.numel() > 0:
                loss_cls_ = self.loss_cls(
                    cls_score,
                    labels,
                    label_weights,
                    avg_factor=avg_factor,
                    reduction_override=reduction_override)
                if isinstance(loss_cls_, dict):
                    losses.update(loss_cls_)
                else:
                    losses['loss_cls'] = loss_cls_
                losses['acc'] = accuracy(cls_score, labels)
        if bbox_pred is not None:
            labels_np = labels.numpy()
            bg_class_ind = self.num_classes
            pos_inds = np.nonzero((labels_np >= 0) & (labels_np < bg_class_ind))[0]
            if len(pos_inds) > 0:
                if self.reg_decoded_bbox:
                    bbox_pred = self.bbox_coder.decode(rois[:, 1:], bbox_pred)
                pos_bbox_pred = self._select_pos_pred(bbox_pred, pos_inds, labels_np[pos_inds])
                losses['loss_bbox'] = self.loss_bbox(
                    pos_bbox_pred,
                    take_rows(bbox_targets, pos_inds),
                    take_rows(bbox_weights, pos_inds),
                    avg_factor=bbox_targets.shape[0],
                    reduction_override=reduction_override)
            else:
                losses['loss_bbox'] = bbox_pred.sum() * 0
        return losses

    def _select_pos_pred(self, bbox_pred: jt.Var, pos_inds: np.ndarray,
                         pos_labels: np.ndarray) -> jt.Var:
        """Rows of ``bbox_pred`` for the positives: their gt class's deltas unless class
        agnostic."""
        num_rois = bbox_pred.shape[0]
        if self.reg_class_agnostic:
            return take_rows(bbox_pred.reshape(num_rois, -1), pos_inds)
        per_class = bbox_pred.reshape(num_rois * self.num_classes, -1)
        return take_rows(per_class, pos_inds * self.num_classes + pos_labels.astype(np.int64))

    # ------------------------------------------------------------------ inference
    def predict_by_feat(self,
                        rois: Sequence[jt.Var],
                        cls_scores: Sequence[jt.Var],
                        bbox_preds: Sequence[Optional[jt.Var]],
                        batch_img_metas: List[dict],
                        rcnn_test_cfg: Optional[Any] = None,
                        rescale: bool = False) -> List[Dict[str, jt.Var]]:
        """Turn per-image head outputs into detections.

        Args:
            rois (Sequence[jt.Var]): RoIs of each image (n_i, 5).
            cls_scores (Sequence[jt.Var]): Scores of each image (n_i, num_classes + 1).
            bbox_preds (Sequence[jt.Var]): Deltas of each image (n_i, 4 * num_classes), or None.
            batch_img_metas (list[dict]): Image meta information.
            rcnn_test_cfg (dict, optional): ``test_cfg`` of the R-CNN (``score_thr``, ``nms``,
                ``max_per_img``); None returns raw per-class results without NMS.
                Defaults to None.
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.

        Returns:
            list[dict]: Per image ``bboxes`` (k, 4), ``scores`` (k,), ``labels`` (k,) int64.
        """
        if not len(cls_scores) == len(bbox_preds) == len(rois) == len(batch_img_metas):
            raise InputError(f'{type(self).__name__}.predict_by_feat: got {len(rois)} rois, '
                             f'{len(cls_scores)} cls_scores, {len(bbox_preds)} bbox_preds for '
                             f'{len(batch_img_metas)} images')
        return [
            self._predict_by_feat_single(
                roi=rois[i],
                cls_score=cls_scores[i],
                bbox_pred=bbox_preds[i],
                img_meta=batch_img_metas[i],
                rescale=rescale,
                rcnn_test_cfg=rcnn_test_cfg) for i in range(len(batch_img_metas))
        ]

    def cls_probabilities(self, cls_score: jt.Var, roi: jt.Var, img_meta: dict) -> jt.Var:
        """Scores (n, num_classes + 1) of one image's ``cls_score``: the softmax. Heads scoring
        otherwise (UniDetector's sigmoid CLIP heads) override this."""
        return jt.nn.softmax(cls_score, dim=-1)

    def _predict_by_feat_single(self,
                                roi: jt.Var,
                                cls_score: jt.Var,
                                bbox_pred: Optional[jt.Var],
                                img_meta: dict,
                                rescale: bool = False,
                                rcnn_test_cfg: Optional[Any] = None) -> Dict[str, jt.Var]:
        """Detections of one image: softmax, box decoding, rescaling, multi-class NMS.

        Args:
            roi (jt.Var): RoIs (n, 5).
            cls_score (jt.Var): Scores (n, num_classes + 1).
            bbox_pred (jt.Var, optional): Deltas (n, 4 * num_classes or 4).
            img_meta (dict): Image meta information (``img_shape``, ``scale_factor``).
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.
            rcnn_test_cfg (dict, optional): ``test_cfg`` of the R-CNN. Defaults to None.

        Returns:
            dict: ``bboxes``, ``scores``, ``labels`` (without ``rcnn_test_cfg``: ``bboxes``
            (n, 4 * num_classes) and ``scores`` (n, num_classes + 1), no NMS).
        """
        if roi.shape[0] == 0:
            return empty_bbox_results(self.num_classes, score_per_cls=rcnn_test_cfg is None)

        scores = self.cls_probabilities(cls_score, roi, img_meta) if cls_score is not None \
            else None
        img_shape = img_meta.get('img_shape')
        num_rois = roi.shape[0]
        if bbox_pred is not None:
            bboxes = self.bbox_coder.decode(roi[:, 1:], bbox_pred, max_shape=img_shape)
        else:
            # mmdet 3.3.0 means to clip these to the image but its in-place clamp acts on a copy
            # (``bboxes[:, [0, 2]].clamp_``), so the RoIs come out unclipped; so do they here.
            bboxes = roi[:, 1:]

        if rescale and bboxes.shape[0] > 0:
            scale_factor = img_meta.get('scale_factor')
            if scale_factor is None:
                raise KeyError(f'{type(self).__name__}: rescale=True needs '
                               'img_meta["scale_factor"]')
            inverse = np.array([1 / s for s in scale_factor], np.float32)
            inverse = np.tile(inverse, 2)  # (w, h) -> (w, h, w, h)
            box_dim = 4
            bboxes = (bboxes.reshape(-1, box_dim) * jt.array(inverse)).reshape(num_rois, -1)
        bboxes = bboxes.reshape(num_rois, -1)

        if rcnn_test_cfg is None:
            # raw results without NMS (test-time augmentation)
            return dict(bboxes=bboxes, scores=scores)
        det_bboxes, det_labels = multiclass_nms(
            bboxes, scores, cfg_require(rcnn_test_cfg, 'score_thr', 'rcnn_test_cfg'),
            cfg_require(rcnn_test_cfg, 'nms', 'rcnn_test_cfg'),
            cfg_get(rcnn_test_cfg, 'max_per_img', -1))
        return dict(bboxes=det_bboxes[:, :-1], scores=det_bboxes[:, -1], labels=det_labels)
