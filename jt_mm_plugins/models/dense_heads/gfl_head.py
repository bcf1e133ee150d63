"""Jittor twin of mmdet 3.3.0's ``GFLHead`` and ``Integral``
(``mmdet/models/dense_heads/gfl_head.py``)."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from jt_mm_plugins.bridge import BridgedDenseHead, register_jittor_module
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.scale import Scale
from jt_mm_plugins.models.task_modules import build_jittor_loss
from jt_mm_plugins.ops import bbox_overlaps
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.dist import reduce_mean
from jt_mm_plugins.utils.errors import InputError
from ..utils import (concat_rows, filter_scores_and_topk, multi_apply, normal_init_convs,
                     take_rows)
from .anchor_head import JittorAnchorHead

# mmdet's GFLHead init_cfg: Normal(std=0.01) on every Conv2d, gfl_cls bias from prior 0.01
INIT_STD = 0.01
CLS_BIAS_PROB = 0.01


class Integral(jt.nn.Module):
    """The expected value of each side's discretised distance distribution, as mmdet's
    ``Integral``: softmax over the ``reg_max + 1`` bins, then the sum of ``bin * probability``.

    ``project`` (the bins 0..reg_max) keeps mmdet's name so checkpoints match; it never trains and,
    bridged, it is a torch buffer as in mmdet (``_torch_buffers``).

    Args:
        reg_max (int): The largest bin. Defaults to 16.
    """

    _torch_buffers = ('project', )

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.project = jt.array(np.linspace(0, reg_max, reg_max + 1, dtype=np.float32))
        self.project.requires_grad = False

    def execute(self, x: jt.Var) -> jt.Var:
        """(..., 4 * (reg_max + 1)) logits -> (n, 4) distances (in bins)."""
        x = jt.nn.softmax(x.reshape(-1, self.reg_max + 1), dim=1)
        return (x * self.project.stop_grad().astype(x.dtype)).sum(dim=1).reshape(-1, 4)


@register_jittor_module(bridge_base=BridgedDenseHead)
class JittorGFLHead(JittorAnchorHead):
    """Generalized Focal Loss head of `GFL <https://arxiv.org/abs/2006.04388>`_ (v1), in Jittor, as
    mmdet's ``GFLHead``.

    Two towers of ``stacked_convs`` 3x3 ConvModules (GN, ReLU), ``gfl_cls`` predicting the joint
    classification-IoU score (trained with ``QualityFocalLoss``), ``gfl_reg`` predicting for each
    side a distribution over ``reg_max + 1`` distances (``DistributionFocalLoss`` on it, a GIoU loss
    on the box decoded from its expectation, :class:`Integral`), scaled per level by a learnable
    :class:`Scale`. One anchor per location, used for ATSS assignment and as the centre point.
    Parameter names are mmdet's (``cls_convs.0.conv.weight``, ``cls_convs.0.gn.weight``,
    ``gfl_cls.bias``, ``scales.0.scale``, ``integral.project``); ``scales.*.scale`` has shape (1,)
    where mmdet's is 0-d.

    As mmdet's, the loss divisors (positives, box-loss weights) are averaged over the processes of
    a distributed run (:func:`jt_mm_plugins.utils.dist.reduce_mean`).

    Args:
        num_classes (int): Number of categories excluding the background category.
        in_channels (int): Number of channels in the input feature map.
        stacked_convs (int): Convolutions per tower. Defaults to 4.
        conv_cfg (dict, optional): Only None (plain convolutions). Defaults to None.
        norm_cfg (dict): Norm of the tower convolutions. Defaults to GN with 32 groups.
        loss_dfl (dict): Config of the distribution loss. Defaults to ``DistributionFocalLoss``
            with weight 0.25.
        bbox_coder (dict): Defaults to ``DistancePointBBoxCoder``.
        reg_max (int): Largest distance bin (in strides). Defaults to 16.
        **kwargs: :class:`JittorAnchorHead`'s arguments (``feat_channels``, ``anchor_generator``,
            ``loss_cls``, ``loss_bbox``, ``train_cfg``, ``test_cfg``...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 stacked_convs: int = 4,
                 conv_cfg: Optional[Dict] = None,
                 norm_cfg: Dict = dict(type='GN', num_groups=32, requires_grad=True),
                 loss_dfl: Dict = dict(type='DistributionFocalLoss', loss_weight=0.25),
                 bbox_coder: Dict = dict(type='DistancePointBBoxCoder'),
                 reg_max: int = 16,
                 **kwargs) -> None:
        if not isinstance(stacked_convs, int) or stacked_convs < 0:
            raise InputError(f'JittorGFLHead: stacked_convs must be an int >= 0, got '
                             f'{stacked_convs!r}')
        if not isinstance(reg_max, int) or reg_max < 1:
            raise InputError(f'JittorGFLHead: reg_max must be an int >= 1, got {reg_max!r}')
        self.stacked_convs = stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.reg_max = reg_max
        super().__init__(
            num_classes=num_classes, in_channels=in_channels, bbox_coder=bbox_coder, **kwargs)
        self.integral = Integral(self.reg_max)
        self.loss_dfl = build_jittor_loss(loss_dfl)
        self.init_weights()

    def _init_layers(self) -> None:
        """Build the towers, ``gfl_cls``, ``gfl_reg`` and one ``Scale`` per level."""
        if self.num_base_priors != 1:
            raise InputError(f'JittorGFLHead: anchor free version: one anchor per location, got '
                             f'{self.num_base_priors} (use a single ratio and scale)')

        def tower() -> jt.nn.ModuleList:
            return jt.nn.ModuleList([
                ConvModule(
                    self.in_channels if i == 0 else self.feat_channels,
                    self.feat_channels,
                    3,
                    stride=1,
                    padding=1,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg) for i in range(self.stacked_convs)
            ])

        self.cls_convs = tower()
        self.reg_convs = tower()
        self.gfl_cls = Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)
        self.gfl_reg = Conv2d(self.feat_channels, 4 * (self.reg_max + 1), 3, padding=1)
        self.scales = jt.nn.ModuleList([Scale(1.0) for _ in self.prior_generator.strides])

    def init_weights(self) -> None:
        """mmdet's ``init_cfg``: every convolution's weight from N(0, 0.01) and bias 0, then
        ``gfl_cls``'s bias ``-log((1 - 0.01) / 0.01)`` (norm layers keep weight 1, bias 0)."""
        normal_init_convs(self, INIT_STD)
        bias = float(-math.log((1 - CLS_BIAS_PROB) / CLS_BIAS_PROB))
        self.gfl_cls.bias.assign(jt.full(self.gfl_cls.bias.shape, bias, dtype='float32'))

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def execute(self, x: Sequence[jt.Var]) -> Tuple[List[jt.Var], List[jt.Var]]:
        """Forward every level with its own ``Scale``.

        Args:
            x (Sequence[jt.Var]): Features of each level, (N, C, H, W).

        Returns:
            tuple[list[jt.Var], list[jt.Var]]: ``cls_scores`` (N, num_classes, H, W) and
            ``bbox_preds`` (N, 4 * (reg_max + 1), H, W) per level.
        """
        if isinstance(x, jt.Var):
            raise TypeError('JittorGFLHead: expects a list/tuple of per-level features, got a '
                            'single Var')
        if len(x) != len(self.scales):
            raise InputError(f'JittorGFLHead: {len(x)} feature levels, but the anchor generator '
                             f'has {len(self.scales)} strides')
        return multi_apply(self.forward_single, x, list(self.scales))

    def forward_single(self, x: jt.Var, scale: Scale) -> Tuple[jt.Var, jt.Var]:
        """Forward one level.

        Args:
            x (jt.Var): Features (N, in_channels, H, W).
            scale (Scale): The level's learnable scale of the box distribution logits.

        Returns:
            tuple[jt.Var, jt.Var]: ``cls_score`` (N, num_classes, H, W), ``bbox_pred``
            (N, 4 * (reg_max + 1), H, W).
        """
        cls_feat, reg_feat = x, x
        for cls_conv in self.cls_convs:
            cls_feat = cls_conv(cls_feat)
        for reg_conv in self.reg_convs:
            reg_feat = reg_conv(reg_feat)
        bbox_pred = scale(self.gfl_reg(reg_feat)).float32()
        return self._cls_output(cls_feat, bbox_pred), bbox_pred

    def _cls_output(self, cls_feat: jt.Var, bbox_pred: jt.Var) -> jt.Var:
        """The level's classification output from the tower's features: GFL's joint-score logits
        (subclasses may also read the level's ``bbox_pred``)."""
        return self.gfl_cls(cls_feat)

    def _score_probs(self, cls_score: jt.Var) -> jt.Var:
        """Joint-score probabilities of (n, cls_out_channels) outputs: the sigmoid of GFL's
        logits (the positives' box-loss weights are their max)."""
        return cls_score.sigmoid()

    @staticmethod
    def anchor_center(anchors: jt.Var) -> jt.Var:
        """Centres (n, 2) of (n, 4) anchors."""
        return jt.stack([(anchors[:, 2] + anchors[:, 0]) / 2, (anchors[:, 3] + anchors[:, 1]) / 2],
                        dim=-1)

    # ----------------------------------------------------------------------------------------
    # targets
    # ----------------------------------------------------------------------------------------

    def _assign(self, anchors: jt.Var, num_level_anchors: Optional[List[int]], gt_bboxes: jt.Var,
                gt_labels: jt.Var, gt_bboxes_ignore: Optional[jt.Var]):
        """ATSS-style assignment: the assigner also gets the anchors inside the image per level."""
        return self.assigner.assign(anchors, num_level_anchors, gt_bboxes, gt_labels=gt_labels,
                                    gt_bboxes_ignore=gt_bboxes_ignore)

    def _pos_bbox_targets(self, sampling_result) -> jt.Var:
        """GFL regresses the gt boxes themselves (decoded, in strides, in the loss)."""
        return sampling_result.pos_gt_bboxes

    # ----------------------------------------------------------------------------------------
    # losses
    # ----------------------------------------------------------------------------------------

    def loss_by_feat_single(self, anchors: jt.Var, cls_score: jt.Var, bbox_pred: jt.Var,
                            labels: jt.Var, label_weights: jt.Var, bbox_targets: jt.Var,
                            stride: Tuple[int, int], avg_factor: float) -> tuple:
        """Losses of one level (mmdet's signature; :meth:`loss_by_feat` runs the same two steps,
        :meth:`_level_box_losses` and :meth:`_level_cls_loss`, with one host read for all
        levels).

        Args:
            anchors (jt.Var): (N, num_level_anchors, 4).
            cls_score (jt.Var): (N, num_classes, H, W).
            bbox_pred (jt.Var): (N, 4 * (reg_max + 1), H, W).
            labels (jt.Var): (N, num_level_anchors).
            label_weights (jt.Var): (N, num_level_anchors).
            bbox_targets (jt.Var): (N, num_level_anchors, 4), gt boxes in pixels.
            stride (tuple[int, int]): The level's stride (square).
            avg_factor (float): Divisor of the classification loss (number of positives).

        Returns:
            tuple: ``loss_cls``, ``loss_bbox``, ``loss_dfl`` (the last two not yet divided by the
            total weight) and the sum of this level's positive weights.
        """
        terms = self._level_box_losses(anchors, cls_score, bbox_pred, labels.numpy(),
                                       bbox_targets, stride)
        if terms['iou'] is not None:
            jt.sync([terms['iou']])
        loss_cls = self._level_cls_loss(terms, labels, label_weights, avg_factor)
        return loss_cls, terms['loss_bbox'], terms['loss_dfl'], terms['weight_sum']

    def _level_box_losses(self, anchors: jt.Var, cls_score: jt.Var, bbox_pred: jt.Var,
                          labels_np: np.ndarray, bbox_targets: jt.Var,
                          stride: Tuple[int, int]) -> dict:
        """The box side of one level's losses: the positives (read from the host labels), their
        decoded boxes, GIoU and DFL losses, the weight sum and the IoU of each positive with its gt
        (the quality target of the classification loss, still to be read on the host).

        Returns:
            dict: ``cls_score`` (flattened, (n, cls_out_channels)), ``pos_inds`` (host),
            ``iou`` (Var (num_pos,), None without positives), ``loss_bbox``, ``loss_dfl``,
            ``weight_sum``.
        """
        if stride[0] != stride[1]:
            raise InputError(f'JittorGFLHead: h stride is not equal to w stride: {stride}')
        anchors = anchors.reshape(-1, 4)
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4 * (self.reg_max + 1))
        bbox_targets = bbox_targets.reshape(-1, 4)
        labels_np = labels_np.reshape(-1)
        pos_inds = np.nonzero((labels_np >= 0) & (labels_np < self.num_classes))[0]
        terms = dict(cls_score=cls_score, pos_inds=pos_inds, iou=None)
        if len(pos_inds) > 0:
            pos_bbox_targets = take_rows(bbox_targets, pos_inds)
            pos_bbox_pred = take_rows(bbox_pred, pos_inds)
            pos_anchor_centers = self.anchor_center(take_rows(anchors, pos_inds)) / stride[0]
            weight_targets = take_rows(self._score_probs(cls_score.detach()).max(dim=1), pos_inds)
            pos_decode_bbox_pred = self.bbox_coder.decode(pos_anchor_centers,
                                                          self.integral(pos_bbox_pred))
            pos_decode_bbox_targets = pos_bbox_targets / stride[0]
            terms['iou'] = bbox_overlaps(
                pos_decode_bbox_pred.detach(), pos_decode_bbox_targets, is_aligned=True)
            pred_corners = pos_bbox_pred.reshape(-1, self.reg_max + 1)
            target_corners = self.bbox_coder.encode(pos_anchor_centers, pos_decode_bbox_targets,
                                                    self.reg_max).reshape(-1)
            terms['loss_bbox'] = self.loss_bbox(
                pos_decode_bbox_pred, pos_decode_bbox_targets, weight=weight_targets,
                avg_factor=1.0)
            terms['loss_dfl'] = self.loss_dfl(
                pred_corners, target_corners,
                weight=weight_targets.reshape(-1, 1).broadcast((len(pos_inds), 4)).reshape(-1),
                avg_factor=4.0)
            terms['weight_sum'] = weight_targets.sum()
        else:
            terms['loss_bbox'] = bbox_pred.sum() * 0
            terms['loss_dfl'] = bbox_pred.sum() * 0
            terms['weight_sum'] = jt.zeros((1, ), dtype='float32')
        return terms

    def _level_cls_loss(self, terms: dict, labels: jt.Var, label_weights: jt.Var,
                        avg_factor: float) -> jt.Var:
        """One level's QFL, its quality target the positives' IoUs of :meth:`_level_box_losses`
        (``terms['iou']`` must have been executed: reading it is then no graph run)."""
        score = np.zeros((int(terms['cls_score'].shape[0]), ), np.float32)
        if terms['iou'] is not None:
            score[terms['pos_inds']] = terms['iou'].numpy()
        return self.loss_cls(
            terms['cls_score'], (labels.reshape(-1), jt.array(score)),
            weight=label_weights.reshape(-1), avg_factor=avg_factor)

    def loss_by_feat(self, cls_scores: List[jt.Var], bbox_preds: List[jt.Var],
                     batch_gt_instances: List[Dict[str, jt.Var]], batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None) -> dict:
        """Losses from the head's outputs.

        The host reads Jittor twice, once for every level's labels and once for every level's
        quality targets and weight sums (each read runs the pending graph; a read per level and
        value would run it piece by piece).

        Args:
            cls_scores (list[jt.Var]): Per level (N, num_classes, H, W).
            bbox_preds (list[jt.Var]): Per level (N, 4 * (reg_max + 1), H, W).
            batch_gt_instances (list[dict]): Gt boxes and labels per image.
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore (list[dict], optional): Ignored boxes per image.
                Defaults to None.

        Returns:
            dict: ``loss_cls``, ``loss_bbox``, ``loss_dfl``, each a list of one scalar per level.
        """
        anchor_list, targets = self._targets_by_feat(cls_scores, batch_gt_instances,
                                                     batch_img_metas, batch_gt_instances_ignore)
        labels_list, label_weights_list, bbox_targets_list, _, avg_factor = targets
        num_level_anchors = [int(anchors.shape[0]) for anchors in anchor_list[0]]
        # (mmdet's unmapped anchors are zero outside the image, where no positive lies)
        level_anchors = [
            jt.stack([anchor_list[0][level]] * len(batch_img_metas), dim=0)
            for level in range(len(num_level_anchors))
        ]
        jt.sync(list(labels_list))
        level_terms = [
            self._level_box_losses(anchors, cls_score, bbox_pred, labels.numpy(), bbox_targets,
                                   stride)
            for anchors, cls_score, bbox_pred, labels, bbox_targets, stride in zip(
                level_anchors, cls_scores, bbox_preds, labels_list, bbox_targets_list,
                self.prior_generator.strides)
        ]
        jt.sync([t['iou'] for t in level_terms if t['iou'] is not None] +
                [t['weight_sum'] for t in level_terms])
        avg_factor = reduce_mean(float(avg_factor))
        losses_cls = [
            self._level_cls_loss(terms, labels, label_weights, avg_factor)
            for terms, labels, label_weights in zip(level_terms, labels_list, label_weights_list)
        ]
        weight_total = max(reduce_mean(sum(float(t['weight_sum'].item()) for t in level_terms)),
                           1.0)
        return dict(
            loss_cls=losses_cls,
            loss_bbox=[t['loss_bbox'] / weight_total for t in level_terms],
            loss_dfl=[t['loss_dfl'] / weight_total for t in level_terms])

    # ----------------------------------------------------------------------------------------
    # predictions
    # ----------------------------------------------------------------------------------------

    def _predict_by_feat_single(self, cls_score_list: List[jt.Var], bbox_pred_list: List[jt.Var],
                                score_factor_list: List[Optional[jt.Var]],
                                mlvl_priors: List[jt.Var], img_meta: dict, cfg: Optional[Dict],
                                rescale: bool = False, with_nms: bool = True) -> Dict[str, jt.Var]:
        """Predictions of one image: per level the expected distances times the stride, the
        ``score_thr`` / ``nms_pre`` filter, boxes around the anchor centres (clipped to
        ``img_shape``), then :meth:`_bbox_post_process`.

        Args:
            cls_score_list (list[jt.Var]): Per level (num_classes, H, W).
            bbox_pred_list (list[jt.Var]): Per level (4 * (reg_max + 1), H, W).
            score_factor_list (list): Unused (GFL has no score factors).
            mlvl_priors (list[jt.Var]): Anchors per level, (num_level_anchors, 4).
            img_meta (dict): Meta information of the image.
            cfg (dict, optional): Post-processing config (``score_thr`` required); None means
                ``test_cfg``.
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.
            with_nms (bool): Whether to apply NMS. Defaults to True.

        Returns:
            dict: ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,) int64.
        """
        cfg = self._resolve_test_cfg(cfg)
        if 'score_thr' not in cfg:
            raise KeyError(f'JittorGFLHead: the test cfg needs a "score_thr" key, got '
                           f'{sorted(cfg)}')
        nms_pre = cfg.get('nms_pre', -1)
        dtype = str(cls_score_list[0].dtype)
        mlvl_bboxes, mlvl_scores, mlvl_labels = [], [], []
        for level_idx, (cls_score, bbox_pred, stride, priors) in enumerate(
                zip(cls_score_list, bbox_pred_list, self.prior_generator.strides, mlvl_priors)):
            self._check_level_sizes(level_idx, cls_score, bbox_pred)
            if stride[0] != stride[1]:
                raise InputError(f'JittorGFLHead: h stride is not equal to w stride: {stride}')
            bbox_pred = self.integral(bbox_pred.permute(1, 2, 0)) * stride[0]
            scores, labels, _, filtered = filter_scores_and_topk(
                self._level_scores(cls_score), cfg['score_thr'], nms_pre,
                dict(bbox_pred=bbox_pred, priors=priors))
            if scores.shape[0] > 0:
                mlvl_bboxes.append(self.bbox_coder.decode(
                    self.anchor_center(filtered['priors']), filtered['bbox_pred'],
                    max_shape=img_meta['img_shape']))
            mlvl_scores.append(scores)
            mlvl_labels.append(labels)
        results = dict(
            bboxes=concat_rows(mlvl_bboxes, (4, ), dtype),
            scores=concat_rows(mlvl_scores, (), dtype),
            labels=concat_rows(mlvl_labels, (), 'int64'))
        return self._bbox_post_process(
            results=results, cfg=cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)
