"""``NanoDetPlusHead``: NanoDet-Plus's head (``nanodet/model/head/nanodet_plus_head.py``,
../shared/specs/seed-systems.md sections 4.3-4.4) in Jittor, on :class:`JittorBaseDenseHead`.

Per level (nothing shared across levels): ``stacked_convs`` DepthwiseConvModules (``conv_type=
'DWConv'``) or ConvModules (``'Conv'``) of ``kernel_size``, then one 1x1 conv to ``num_classes +
4 * (reg_max + 1)`` channels, split here into ``cls_scores`` and ``bbox_preds`` per level (NanoDet
flattens and concatenates them). Priors are the grid points ``(x * s, y * s)`` without a
half-stride offset.

Losses (NanoDet-Plus's ``loss`` / ``_get_loss_from_assign``): the :class:`DynamicSoftLabelAssigner`
assigns from detached predictions, those of the auxiliary head when ``aux_outs`` are given (AGM)
and then the same assignment supervises both heads; QFL on the logits with the assigned IoU as the
soft label, normalised by the number of positives; GIoU (on pixel boxes) and DFL (distances /
stride clamped to ``reg_max - 0.1``) weighted by each positive's max class probability and
normalised by their sum. Ignored gt boxes are not used (NanoDet-Plus's assigner has none).

Parameter names are NanoDet's: ``cls_convs.<level>.<i>.depthwise.weight``, ``...dwnorm.*``,
``gfl_cls.<level>.weight``, ``distribution_project.project``.
"""
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.bridge import BridgedDenseHead, register_jittor_module
from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.depthwise_conv_module import DepthwiseConvModule
from jt_mm_plugins.models.task_modules import build_jittor_loss, build_jittor_task_module
from jt_mm_plugins.models.task_modules.distance_point_coder import (DistancePointBBoxCoder,
                                                                    distance2bbox)
from jt_mm_plugins.models.task_modules.dynamic_soft_label_assigner import \
    DynamicSoftLabelAssigner  # noqa: F401  (registers the default assigner)
from jt_mm_plugins.models.task_modules.point_generator import MlvlPointGenerator
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.dist import reduce_mean
from jt_mm_plugins.utils.errors import InputError
from ..utils import normal_init_convs, take_rows
from .base_dense_head import JittorBaseDenseHead
from .gfl_head import Integral
from .simple_conv_head import CLS_BIAS

CONV_TYPES = ('DWConv', 'Conv')


@register_jittor_module(bridge_base=BridgedDenseHead)
class NanoDetPlusHead(JittorBaseDenseHead):
    """NanoDet-Plus's detection head with the assign guidance module's loss.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Input channels of every level (NanoDet's ``input_channel``, also
            accepted under that name).
        feat_channels (int): Tower channels. Defaults to 96.
        stacked_convs (int): Convs per tower. Defaults to 2.
        kernel_size (int): Kernel of the tower convs. Defaults to 5.
        strides (Sequence[int]): One per level. Defaults to (8, 16, 32).
        conv_type (str): ``'DWConv'`` or ``'Conv'``. Defaults to ``'DWConv'``.
        norm_cfg (dict, optional): Norm of the towers. Defaults to ``dict(type='BN')``.
        reg_max (int): Largest bin of the box distributions. Defaults to 7.
        activation (str | dict | None): NanoDet activation name or mmcv ``act_cfg``. Defaults to
            ``'LeakyReLU'`` (slope 0.1).
        loss_cls, loss_bbox, loss_dfl (dict): QFL (beta 2, weight 1), GIoU (weight 2), DFL
            (weight 0.25) by default, NanoDet-Plus's.
        train_cfg (dict, optional): ``assigner`` (default
            ``dict(type='DynamicSoftLabelAssigner', topk=13)``).
        test_cfg (dict, optional): Post-processing (``score_thr``, ``nms``, ``max_per_img``,
            ``nms_pre``); NanoDet's is ``score_thr=0.05``, NMS IoU 0.6, 100 per image.
        input_channel (int, optional): NanoDet's name of ``in_channels``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: Optional[int] = None,
                 feat_channels: int = 96,
                 stacked_convs: int = 2,
                 kernel_size: int = 5,
                 strides: Sequence[int] = (8, 16, 32),
                 conv_type: str = 'DWConv',
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 reg_max: int = 7,
                 activation: Union[str, dict, None] = 'LeakyReLU',
                 loss_cls: dict = dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
                                       loss_weight=1.0),
                 loss_bbox: dict = dict(type='GIoULoss', loss_weight=2.0),
                 loss_dfl: dict = dict(type='DistributionFocalLoss', loss_weight=0.25),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 input_channel: Optional[int] = None) -> None:
        super().__init__()
        in_channels = input_channel if in_channels is None else in_channels
        if in_channels is None:
            raise InputError('NanoDetPlusHead: in_channels (NanoDet: input_channel) is required')
        if conv_type not in CONV_TYPES:
            raise InputError(f'NanoDetPlusHead: conv_type must be one of {CONV_TYPES}, got '
                             f'{conv_type!r}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.kernel_size = kernel_size
        self.strides = list(strides)
        self.conv_type = conv_type
        self.norm_cfg = norm_cfg
        self.reg_max = reg_max
        self.activation = activation
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.cls_out_channels = num_classes
        self.use_sigmoid_cls = True
        self.prior_generator = MlvlPointGenerator(self.strides, offset=0.)
        self.bbox_coder = DistancePointBBoxCoder()
        assigner = (train_cfg or {}).get('assigner',
                                         dict(type='DynamicSoftLabelAssigner', topk=13))
        self.assigner = build_jittor_task_module(assigner)
        self.loss_cls = build_jittor_loss(loss_cls)
        self.loss_bbox = build_jittor_loss(loss_bbox)
        self.loss_dfl = build_jittor_loss(loss_dfl)
        self.distribution_project = Integral(reg_max)
        self._init_layers()
        self.init_weights()

    def _init_layers(self) -> None:
        act_cfg = act_cfg_from_name(self.activation, 'NanoDetPlusHead')
        pad = self.kernel_size // 2
        self.cls_convs = jt.nn.ModuleList()
        for _ in self.strides:
            tower = jt.nn.ModuleList()
            for i in range(self.stacked_convs):
                chn = self.in_channels if i == 0 else self.feat_channels
                if self.conv_type == 'DWConv':
                    tower.append(DepthwiseConvModule(
                        chn, self.feat_channels, self.kernel_size, padding=pad,
                        norm_cfg=self.norm_cfg, bias=self.norm_cfg is None,
                        activation=self.activation))
                else:
                    tower.append(ConvModule(
                        chn, self.feat_channels, self.kernel_size, padding=pad,
                        norm_cfg=self.norm_cfg, bias=self.norm_cfg is None, act_cfg=act_cfg))
            self.cls_convs.append(tower)
        self.gfl_cls = jt.nn.ModuleList([
            Conv2d(self.feat_channels, self.num_classes + 4 * (self.reg_max + 1), 1)
            for _ in self.strides
        ])

    def init_weights(self) -> None:
        """NanoDet's: the towers' convs N(0, 0.01) with zero biases, ``gfl_cls`` N(0, 0.01) with
        every bias -4.595 (the box channels' too, as NanoDet's ``normal_init``)."""
        normal_init_convs(self.cls_convs, std=0.01)
        for conv in self.gfl_cls:
            normal_init_convs(conv, std=0.01)
            conv.bias.assign(jt.full(conv.bias.shape, CLS_BIAS, dtype='float32'))

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def execute(self, x: Sequence[jt.Var]) -> Tuple[List[jt.Var], List[jt.Var]]:
        """Per level ``cls_scores`` (N, num_classes, H, W) and ``bbox_preds``
        (N, 4 * (reg_max + 1), H, W), each level through its own tower."""
        if isinstance(x, jt.Var) or len(x) != len(self.strides):
            got = 'a single Var' if isinstance(x, jt.Var) else f'{len(x)} levels'
            raise InputError(f'NanoDetPlusHead: expects {len(self.strides)} feature levels (one '
                             f'per stride {self.strides}), got {got}')
        cls_scores, bbox_preds = [], []
        for feat, tower, gfl_cls in zip(x, self.cls_convs, self.gfl_cls):
            if feat.ndim != 4 or feat.shape[1] != self.in_channels:
                raise InputError(f'NanoDetPlusHead: expects (N, {self.in_channels}, H, W) '
                                 f'features, got {tuple(feat.shape)}')
            for conv in tower:
                feat = conv(feat)
            out = gfl_cls(feat)
            cls_scores.append(out[:, :self.num_classes])
            bbox_preds.append(out[:, self.num_classes:])
        return cls_scores, bbox_preds

    # ----------------------------------------------------------------------------------------
    # losses
    # ----------------------------------------------------------------------------------------

    def loss(self, x: Sequence[jt.Var], batch_gt_instances: List[Dict[str, jt.Var]],
             batch_img_metas: List[dict],
             batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None,
             aux_outs: Optional[Tuple[List[jt.Var], List[jt.Var]]] = None) -> dict:
        """Forward, then :meth:`loss_by_feat` (``aux_outs``: the auxiliary head's outputs)."""
        cls_scores, bbox_preds = self(x)
        return self.loss_by_feat(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                                 batch_gt_instances_ignore, aux_outs=aux_outs)

    def _flatten(self, preds: List[jt.Var], channels: int) -> jt.Var:
        """Per-level (N, C, H, W) -> (N * num_priors, C), levels concatenated (NanoDet's order)."""
        num_imgs = int(preds[0].shape[0])
        return jt.concat([p.reshape(num_imgs, channels, -1) for p in preds],
                         dim=2).permute(0, 2, 1).reshape(-1, channels)

    def _decode(self, priors: jt.Var, reg: jt.Var, num_imgs: int) -> jt.Var:
        """Boxes (N * num_priors, 4) in pixels from flattened distributions."""
        all_priors = jt.concat([priors] * num_imgs, dim=0)
        distances = self.distribution_project(reg) * all_priors[:, 2:3]
        return distance2bbox(all_priors[:, :2], distances)

    def loss_by_feat(self, cls_scores: List[jt.Var], bbox_preds: List[jt.Var],
                     batch_gt_instances: List[Dict[str, jt.Var]], batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None,
                     aux_outs: Optional[Tuple[List[jt.Var], List[jt.Var]]] = None) -> dict:
        """Losses of the head, and of the auxiliary head when ``aux_outs`` are given.

        Args:
            cls_scores (list[jt.Var]): Per level (N, num_classes, H, W).
            bbox_preds (list[jt.Var]): Per level (N, 4 * (reg_max + 1), H, W).
            batch_gt_instances (list[dict]): Gt ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore: Not used (NanoDet-Plus's assigner has no ignored boxes).
            aux_outs (tuple, optional): The auxiliary head's ``(cls_scores, bbox_preds)``, same
                shapes; when given they (detached) drive the assignment of both heads.

        Returns:
            dict: ``loss_cls``, ``loss_bbox``, ``loss_dfl`` and, with ``aux_outs``, ``aux_``
            prefixed ones.
        """
        num_imgs = len(batch_img_metas)
        if len(batch_gt_instances) != num_imgs or int(cls_scores[0].shape[0]) != num_imgs:
            raise InputError(f'NanoDetPlusHead: {len(batch_gt_instances)} gt instances and '
                             f'{int(cls_scores[0].shape[0])} images of features for {num_imgs} '
                             'image metas')
        featmap_sizes = [tuple(int(s) for s in c.shape[-2:]) for c in cls_scores]
        priors = jt.concat(self.prior_generator.grid_priors(featmap_sizes, with_stride=True))
        reg_channels = 4 * (self.reg_max + 1)
        cls_flat = self._flatten(cls_scores, self.num_classes)
        reg_flat = self._flatten(bbox_preds, reg_channels)
        decoded = self._decode(priors, reg_flat, num_imgs)
        heads = [('', cls_flat, reg_flat, decoded)]
        if aux_outs is not None:
            aux_cls, aux_reg = (self._flatten(aux_outs[0], self.num_classes),
                                self._flatten(aux_outs[1], reg_channels))
            if tuple(aux_cls.shape) != tuple(cls_flat.shape):
                raise InputError(f'NanoDetPlusHead: the auxiliary outputs cover '
                                 f'{tuple(aux_cls.shape)} (priors, classes), the head '
                                 f'{tuple(cls_flat.shape)}')
            heads.append(('aux_', aux_cls, aux_reg, self._decode(priors, aux_reg, num_imgs)))
        _, assign_cls, _, assign_boxes = heads[-1]
        targets = self._targets(priors, assign_cls.detach(), assign_boxes.detach(),
                                batch_gt_instances)
        losses = {}
        for prefix, cls, reg, boxes in heads:
            for name, value in self._loss_from_targets(cls, reg, boxes, targets).items():
                losses[prefix + name] = value
        return losses

    def _targets(self, priors: jt.Var, cls: jt.Var, boxes: jt.Var,
                 batch_gt_instances: List[Dict[str, jt.Var]]) -> dict:
        """Assign every image (host side) and build the flattened targets.

        Returns:
            dict: ``labels`` (N * n,) with ``num_classes`` for the background, ``scores`` (the
            positives' IoUs), ``pos_inds`` and per positive ``bbox_targets`` (pixels) and
            ``dist_targets`` (strides, clamped to [0, reg_max - 0.1]).
        """
        num_priors = int(priors.shape[0])
        priors_np = priors.numpy()
        labels, scores, pos_inds, bbox_targets, dist_targets = [], [], [], [], []
        for img_id, gts in enumerate(batch_gt_instances):
            rows = slice(img_id * num_priors, (img_id + 1) * num_priors)
            gt_bboxes = gts['bboxes'].reshape(-1, 4)
            img_labels = np.full((num_priors, ), self.num_classes, np.int32)
            img_scores = np.zeros((num_priors, ), np.float32)
            if int(gt_bboxes.shape[0]) > 0:
                result = self.assigner.assign(
                    SimpleNamespace(priors=priors, bboxes=boxes[rows], scores=cls[rows]),
                    dict(bboxes=gt_bboxes, labels=gts['labels']))
                gt_inds = result.gt_inds.numpy().astype(np.int64)
                pos = np.nonzero(gt_inds > 0)[0]
                gt_np = gt_bboxes.numpy().astype(np.float32)
                gt_labels = gts['labels'].numpy().reshape(-1).astype(np.int32)
                assigned = gt_np[gt_inds[pos] - 1]
                img_labels[pos] = gt_labels[gt_inds[pos] - 1]
                img_scores[pos] = result.max_overlaps.numpy()[pos]
                centers, strides = priors_np[pos, :2], priors_np[pos, 2:3]
                dist = np.concatenate([centers - assigned[:, :2], assigned[:, 2:] - centers],
                                      axis=1) / strides
                pos_inds.append(pos + img_id * num_priors)
                bbox_targets.append(assigned)
                dist_targets.append(np.clip(dist, 0, self.reg_max - 0.1).astype(np.float32))
            labels.append(img_labels)
            scores.append(img_scores)
        pos_inds = np.concatenate(pos_inds) if pos_inds else np.zeros((0, ), np.int64)
        return dict(
            labels=np.concatenate(labels), scores=np.concatenate(scores), pos_inds=pos_inds,
            bbox_targets=(np.concatenate(bbox_targets) if bbox_targets else
                          np.zeros((0, 4), np.float32)),
            dist_targets=(np.concatenate(dist_targets) if dist_targets else
                          np.zeros((0, 4), np.float32)))

    def _loss_from_targets(self, cls: jt.Var, reg: jt.Var, boxes: jt.Var,
                           targets: dict) -> dict:
        """NanoDet-Plus's ``_get_loss_from_assign`` for one head's flattened outputs."""
        pos_inds = targets['pos_inds']
        num_pos = max(reduce_mean(float(len(pos_inds))), 1.0)
        loss_cls = self.loss_cls(
            cls, (jt.array(targets['labels']), jt.array(targets['scores'])), avg_factor=num_pos)
        if len(pos_inds) == 0:
            zero = reg.sum() * 0
            return dict(loss_cls=loss_cls, loss_bbox=zero, loss_dfl=zero)
        weight_targets = take_rows(cls.detach().sigmoid().max(dim=1), pos_inds)
        bbox_avg_factor = max(reduce_mean(float(weight_targets.sum().item())), 1.0)
        loss_bbox = self.loss_bbox(
            take_rows(boxes, pos_inds), jt.array(targets['bbox_targets']),
            weight=weight_targets, avg_factor=bbox_avg_factor)
        loss_dfl = self.loss_dfl(
            take_rows(reg, pos_inds).reshape(-1, self.reg_max + 1),
            jt.array(targets['dist_targets']).reshape(-1),
            weight=weight_targets.reshape(-1, 1).broadcast((len(pos_inds), 4)).reshape(-1),
            avg_factor=4.0 * bbox_avg_factor)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_dfl=loss_dfl)

    # ----------------------------------------------------------------------------------------
    # predictions
    # ----------------------------------------------------------------------------------------

    def predict_by_feat(self, cls_scores: List[jt.Var], bbox_preds: List[jt.Var],
                        score_factors: Optional[List[jt.Var]] = None,
                        batch_img_metas: Optional[List[dict]] = None, cfg: Optional[Dict] = None,
                        rescale: bool = False, with_nms: bool = True) -> List[Dict[str, jt.Var]]:
        """NanoDet-Plus's post-processing: sigmoid scores, the expected distances times the stride
        around the priors (clipped to ``img_shape``), the ``score_thr`` / ``nms_pre`` filter and
        class-aware NMS (NanoDet's ``multiclass_nms``): the base class's path on the decoded
        distances (N, 4, H, W) of each level."""
        distances = []
        for bbox_pred, stride in zip(bbox_preds, self.prior_generator.strides):
            num_imgs, _, height, width = (int(s) for s in bbox_pred.shape)
            dist = self.distribution_project(bbox_pred.permute(0, 2, 3, 1)) * stride[0]
            distances.append(dist.reshape(num_imgs, height, width, 4).permute(0, 3, 1, 2))
        return super().predict_by_feat(cls_scores, distances, None, batch_img_metas, cfg,
                                       rescale, with_nms)
