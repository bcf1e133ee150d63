"""``EffiDeHead``, YOLOv6 3.0's / Gold-YOLO's efficient decoupled head
(``yolov6/models/effidehead.py`` ``Detect`` and ``build_effidehead_layer``, losses of
``yolov6/models/losses/loss.py`` ``ComputeLoss``), in Jittor on :class:`JittorBaseDenseHead`,
with YOLOv6's parameter names.

Per level i: ``stems[i]`` (Conv 1x1, BN, SiLU), then ``cls_convs[i]`` / ``reg_convs[i]`` (Conv 3x3,
BN, SiLU) and ``cls_preds[i]`` (1x1 -> num_classes) / ``reg_preds[i]`` (1x1 -> 4 (reg_max + 1)).
``proj`` (0..reg_max) and ``proj_conv`` (the same values as a 1x1 conv) are fixed: the expected
distance of each side's softmax distribution. Without DFL (``use_dfl=False``, ``reg_max=0``,
Gold-YOLO-N's and YOLOv6-N's setting) ``reg_preds`` give the 4 distances directly. Initialisation (YOLOv6's ``initialize_biases``):
prediction weights 0, class bias ``-log((1 - 0.01) / 0.01)``, box bias 1.

Outputs of :meth:`execute`: per level the class logits (N, num_classes, H, W) and the distance
distributions (N, 4 (reg_max + 1), H, W). :meth:`predict_raw` is YOLOv6's eval output
``(N, anchors, [cx, cy, w, h, 1, class scores])`` in pixels.

Loss (:meth:`loss_by_feat`, YOLOv6's ``ComputeLoss``): anchor points at cell centres; boxes
decoded from the expected distances (in stride units); while :attr:`epoch` <
``atss_warmup_epoch`` YOLOv6's ATSS (:class:`YOLOv6ATSSAssigner`, topk 9, on anchor boxes of
``grid_cell_size`` x stride), from then on its :class:`TaskAlignedAssigner` (topk 13, alpha 1,
beta 6) on the detached probabilities and pixel boxes; varifocal loss (alpha 0.75, gamma 2) / the
target-score sum, GIoU or SIoU loss (``iou_type``) and DFL (with ``use_dfl``; 0 without) on the
positives weighted by their target-score sums / the same sum; weights class 1.0, IoU 2.5, DFL 0.5.
The epoch comes from :class:`~jt_mm_plugins.engine.SetEpochHook` (:meth:`set_epoch`); Gold-YOLO's
configs set ``atss_warmup_epoch=0`` (TAL throughout), YOLOv6's P6 models 4.

Predictions (:meth:`predict_by_feat`): the decoded boxes (xyxy pixels, all levels) and class
probabilities go through mmdet's post-processing (``score_thr``, ``nms_pre``, class-aware NMS,
``max_per_img``; Gold-YOLO evaluates with ``score_thr`` 0.03 and NMS IoU 0.65), not YOLOv6's own
``non_max_suppression`` (not compared with it); the kept boxes are clipped to the image (to
``ori_shape`` with ``rescale``), as YOLOv6's ``scale_coords`` does after its NMS.

Not built (yet): YOLOv6's CIoU / DIoU losses, the anchor-based ``fuse_ab`` branch,
distillation.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from jt_mm_plugins.bridge import BridgedDenseHead, register_jittor_module
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.sim_conv import Conv
from jt_mm_plugins.models.losses.yolov6_losses import (IOU_LOSSES, yolov6_dfl, yolov6_iou_loss,
                                                       yolov6_varifocal_loss)
from jt_mm_plugins.models.task_modules.task_aligned_assigner import TaskAlignedAssigner
from jt_mm_plugins.models.task_modules.yolov6_atss_assigner import YOLOv6ATSSAssigner
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

from ..utils import filter_scores_and_topk
from .base_dense_head import JittorBaseDenseHead

DEFAULT_LOSS_WEIGHT = {'class': 1.0, 'iou': 2.5, 'dfl': 0.5}


@register_jittor_module(bridge_base=BridgedDenseHead)
class EffiDeHead(JittorBaseDenseHead):
    """YOLOv6 / Gold-YOLO decoupled head (see the module docstring).

    Args:
        num_classes (int): Classes. Defaults to 80.
        in_channels (Sequence[int]): Channels of each level (Gold-YOLO-S: 64, 128, 256).
        strides (Sequence[int]): Level strides. Defaults to (8, 16, 32).
        reg_max (int): Largest distance bin (>= 1 with DFL, 0 without). Defaults to 16.
        use_dfl (bool): Distance distributions with DFL (True), or 4 plain distances (False, with
            ``reg_max=0``). Defaults to True.
        prior_prob (float): Initial class probability. Defaults to 0.01.
        grid_cell_offset (float): Anchor points at ``(i + offset) * stride``. Defaults to 0.5.
        grid_cell_size (float): ATSS anchor boxes are this many strides wide. Defaults to 5.0.
        atss_warmup_epoch (int): Epochs assigned by ATSS before TAL. Defaults to 0.
        iou_type (str): ``'giou'`` or ``'siou'``. Defaults to ``'giou'``.
        loss_weight (dict): ``class``, ``iou``, ``dfl`` weights.
        tal_topk (int): TAL positives per ground truth. Defaults to 13.
        atss_topk (int): ATSS candidates per level and ground truth. Defaults to 9.
        norm_cfg (dict, optional): Norm of the convs (``None``: YOLOv6's BatchNorm).
        train_cfg, test_cfg (dict, optional): Kept for mmdet's detectors.
    """

    def __init__(self, num_classes: int = 80, in_channels: Sequence[int] = (64, 128, 256),
                 strides: Sequence[int] = (8, 16, 32), reg_max: int = 16, use_dfl: bool = True,
                 prior_prob: float = 1e-2, grid_cell_offset: float = 0.5,
                 grid_cell_size: float = 5.0, atss_warmup_epoch: int = 0,
                 iou_type: str = 'giou', loss_weight: Optional[Dict[str, float]] = None,
                 tal_topk: int = 13, atss_topk: int = 9, norm_cfg: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise InputError(f'EffiDeHead: {len(in_channels)} in_channels for {len(strides)} '
                             f'strides')
        if use_dfl and reg_max < 1:
            raise InputError(f'EffiDeHead: use_dfl=True needs reg_max >= 1, got {reg_max}')
        if not use_dfl and reg_max != 0:
            raise InputError(f'EffiDeHead: use_dfl=False needs reg_max=0 (YOLOv6 decodes the 4 '
                             f'raw outputs as distances), got reg_max={reg_max}')
        if not isinstance(atss_warmup_epoch, int) or atss_warmup_epoch < 0:
            raise InputError(f'EffiDeHead: atss_warmup_epoch must be an int >= 0, got '
                             f'{atss_warmup_epoch!r}')
        if iou_type not in IOU_LOSSES:
            raise NotImplementedError(f'EffiDeHead: iou_type={iou_type!r}: built are '
                                      f'{sorted(IOU_LOSSES)}')
        self.num_classes = self.nc = num_classes
        self.in_channels, self.strides = list(in_channels), list(strides)
        self.nl = len(strides)
        self.reg_max, self.use_dfl, self.prior_prob = reg_max, use_dfl, prior_prob
        self.grid_cell_offset, self.grid_cell_size = grid_cell_offset, grid_cell_size
        self.atss_warmup_epoch, self.iou_type = atss_warmup_epoch, iou_type
        self.epoch = 0  # the training epoch (set_epoch): ATSS before atss_warmup_epoch
        self.loss_weight = dict(DEFAULT_LOSS_WEIGHT, **(loss_weight or {}))
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.assigner = TaskAlignedAssigner(tal_topk, num_classes, alpha=1.0, beta=6.0)
        self.warmup_assigner = YOLOv6ATSSAssigner(atss_topk, num_classes)
        self.stems, self.cls_convs, self.reg_convs = (jt.nn.ModuleList() for _ in range(3))
        self.cls_preds, self.reg_preds = jt.nn.ModuleList(), jt.nn.ModuleList()
        for c in self.in_channels:
            self.stems.append(Conv(c, c, 1, 1, norm_cfg=norm_cfg))
            self.cls_convs.append(Conv(c, c, 3, 1, norm_cfg=norm_cfg))
            self.reg_convs.append(Conv(c, c, 3, 1, norm_cfg=norm_cfg))
            self.cls_preds.append(Conv2d(c, num_classes, 1))
            self.reg_preds.append(Conv2d(c, 4 * (reg_max + 1), 1))
        self.proj_conv = jt.nn.Module()
        bins = np.linspace(0, reg_max, reg_max + 1, dtype=np.float32)
        self.proj_conv.weight = jt.array(bins.reshape(1, reg_max + 1, 1, 1)).stop_grad()
        self.proj = jt.array(bins).stop_grad()
        self.initialize_biases()

    def initialize_biases(self) -> None:
        """YOLOv6's: prediction weights 0, class bias from ``prior_prob``, box bias 1."""
        cls_bias = -math.log((1 - self.prior_prob) / self.prior_prob)
        for conv, bias in [(c, cls_bias) for c in self.cls_preds] + \
                [(c, 1.0) for c in self.reg_preds]:
            conv.weight.assign(jt.zeros(conv.weight.shape, 'float32'))
            conv.bias.assign(jt.full(conv.bias.shape, bias, 'float32'))

    def set_epoch(self, epoch: int) -> None:
        """The training epoch (:class:`~jt_mm_plugins.engine.SetEpochHook`, through the
        detector): ATSS assigns while it is below ``atss_warmup_epoch``."""
        self.epoch = int(epoch)

    # ----------------------------------------------------------------------------------------
    def forward_single(self, x: jt.Var, i: int) -> Tuple[jt.Var, jt.Var]:
        x = self.stems[i](x)
        return self.cls_preds[i](self.cls_convs[i](x)), self.reg_preds[i](self.reg_convs[i](x))

    def execute(self, x: Sequence[jt.Var]) -> Tuple[List[jt.Var], List[jt.Var]]:
        if isinstance(x, jt.Var) or len(x) != self.nl:
            raise InputError(f'EffiDeHead expects {self.nl} feature levels, got '
                             f'{1 if isinstance(x, jt.Var) else len(x)}')
        outs = [self.forward_single(feat, i) for i, feat in enumerate(x)]
        return [o[0] for o in outs], [o[1] for o in outs]

    def anchor_points(self, sizes: Sequence[Tuple[int, int]]) -> Tuple[jt.Var, jt.Var]:
        """Anchor points (L, 2) in pixels (cell centres, row-major per level) and strides (L, 1)."""
        points, strides = [], []
        for (h, w), s in zip(sizes, self.strides):
            ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + self.grid_cell_offset,
                                 np.arange(w, dtype=np.float32) + self.grid_cell_offset,
                                 indexing='ij')
            points.append(np.stack([xs, ys], -1).reshape(-1, 2) * s)
            strides.append(np.full((h * w, 1), s, np.float32))
        return jt.array(np.concatenate(points)), jt.array(np.concatenate(strides))

    def anchor_boxes(self, sizes: Sequence[Tuple[int, int]]) -> jt.Var:
        """YOLOv6's ATSS anchor boxes (L, 4): ``grid_cell_size`` x stride squares centred on the
        anchor points (pixels)."""
        points, strides = self.anchor_points(sizes)
        half = strides * (self.grid_cell_size * 0.5)
        return jt.concat([points - half, points + half], dim=-1)

    def _flatten(self, cls_scores: List[jt.Var], reg_distris: List[jt.Var]):
        """(N, L, num_classes) logits and (N, L, 4 (reg_max + 1)) distributions."""
        n = cls_scores[0].shape[0]
        cls = jt.concat([c.reshape(n, c.shape[1], -1).transpose(0, 2, 1) for c in cls_scores], 1)
        reg = jt.concat([r.reshape(n, r.shape[1], -1).transpose(0, 2, 1) for r in reg_distris], 1)
        return cls, reg

    def _expected_distances(self, reg: jt.Var) -> jt.Var:
        if not self.use_dfl:
            return reg
        n, num_anchors = reg.shape[:2]
        prob = jt.nn.softmax(reg.reshape(n, num_anchors, 4, self.reg_max + 1), dim=-1)
        return (prob * self.proj.astype(prob.dtype)).sum(dim=-1)

    @staticmethod
    def _dist2bbox(dist: jt.Var, points: jt.Var) -> jt.Var:
        return jt.concat([points - dist[..., :2], points + dist[..., 2:]], dim=-1)

    def predict_raw(self, x: Sequence[jt.Var]) -> jt.Var:
        """YOLOv6's eval output: (N, anchors, 5 + num_classes) with ``cx, cy, w, h`` in pixels,
        a 1, and the class probabilities."""
        cls_scores, reg_distris = self(x)
        cls, reg = self._flatten(cls_scores, reg_distris)
        points, strides = self.anchor_points([tuple(c.shape[2:]) for c in cls_scores])
        boxes = self._dist2bbox(self._expected_distances(reg), points / strides)
        xywh = jt.concat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]],
                         dim=-1) * strides
        ones = jt.ones(xywh.shape[:2] + (1, ), xywh.dtype)
        return jt.concat([xywh, ones, cls.sigmoid()], dim=-1)

    def predict_by_feat(self, cls_scores: List[jt.Var], bbox_preds: List[jt.Var],
                        score_factors=None, batch_img_metas: Optional[List[dict]] = None,
                        cfg: Optional[Dict] = None, rescale: bool = False,
                        with_nms: bool = True) -> List[Dict[str, jt.Var]]:
        """Per image ``{'bboxes', 'scores', 'labels'}`` (see the module docstring)."""
        if batch_img_metas is None:
            raise InputError('EffiDeHead.predict_by_feat needs batch_img_metas')
        cfg = self._resolve_test_cfg(cfg)
        cls, reg = self._flatten([c.detach() for c in cls_scores], [r.detach() for r in bbox_preds])
        points, strides = self.anchor_points([tuple(c.shape[2:]) for c in cls_scores])
        boxes = self._dist2bbox(self._expected_distances(reg), points / strides) * strides
        results = []
        for i, img_meta in enumerate(batch_img_metas):
            scores, labels, _, kept = filter_scores_and_topk(
                cls[i].sigmoid(), cfg.get('score_thr', 0.0), cfg.get('nms_pre', -1),
                dict(bboxes=boxes[i]))
            found = dict(bboxes=kept['bboxes'], scores=scores, labels=labels)
            found = self._bbox_post_process(found, cfg, rescale, with_nms, img_meta)
            h, w = img_meta['ori_shape' if rescale else 'img_shape'][:2]
            found['bboxes'] = jt.concat([found['bboxes'][:, 0::2].clamp(0, w),  # x1, x2
                                         found['bboxes'][:, 1::2].clamp(0, h)], dim=1)[
                :, [0, 2, 1, 3]]
            results.append(found)
        return results

    # ----------------------------------------------------------------------------------------
    def loss_by_feat(self, cls_scores: List[jt.Var], bbox_preds: List[jt.Var],
                     batch_gt_instances: List[Dict[str, jt.Var]], batch_img_metas: List[dict],
                     batch_gt_instances_ignore=None) -> Dict[str, jt.Var]:
        """YOLOv6's ``ComputeLoss`` (TAL); returns ``loss_cls``, ``loss_iou``, ``loss_dfl`` (each
        already multiplied by its weight)."""
        if batch_gt_instances_ignore is not None and any(
                g is not None and g['bboxes'].shape[0] for g in batch_gt_instances_ignore):
            raise NotImplementedError('EffiDeHead: ignored ground truths are not supported '
                                      '(YOLOv6 has none)')
        if len(batch_gt_instances) != cls_scores[0].shape[0]:
            raise InputError(f'EffiDeHead: {len(batch_gt_instances)} ground-truth sets for '
                             f'{cls_scores[0].shape[0]} images')
        cls, reg = self._flatten(cls_scores, bbox_preds)
        scores = cls.sigmoid()
        sizes = [tuple(c.shape[2:]) for c in cls_scores]
        points, strides = self.anchor_points(sizes)
        points_s = points / strides
        pred_bboxes = self._dist2bbox(self._expected_distances(reg), points_s)  # stride units
        targets = self._assign(scores, pred_bboxes, sizes, batch_gt_instances)
        target_scores = jt.stack([t['scores'] for t in targets])
        one_hot = jt.stack([jt.nn.one_hot(t['labels'], self.num_classes + 1)[:, :-1]
                            for t in targets]).astype(scores.dtype)
        loss_cls = yolov6_varifocal_loss(scores, target_scores, one_hot)
        score_sum = float(target_scores.sum().item())
        if score_sum > 0:
            loss_cls = loss_cls / score_sum

        fg = np.stack([t['fg_mask'].numpy() for t in targets])
        if fg.any():
            img, anchor = (jt.array(a) for a in np.nonzero(fg))
            target_bboxes = jt.stack([t['bboxes'] for t in targets]) / strides
            weight = target_scores.sum(dim=-1)[img, anchor].unsqueeze(-1)
            divisor = score_sum if score_sum > 0 else 1.0
            loss_iou = (yolov6_iou_loss(pred_bboxes[img, anchor], target_bboxes[img, anchor],
                                        self.iou_type) * weight).sum() / divisor
            if self.use_dfl:
                pos_points = points_s[anchor]
                pos_targets = target_bboxes[img, anchor]
                ltrb = jt.concat([pos_points - pos_targets[:, :2],
                                  pos_targets[:, 2:] - pos_points],
                                 dim=-1).clamp(0, self.reg_max - 0.01)
                pos_dist = reg[img, anchor].reshape(-1, 4, self.reg_max + 1)
                loss_dfl = (yolov6_dfl(pos_dist, ltrb) * weight).sum() / divisor
            else:
                loss_dfl = reg.sum() * 0.0
        else:
            loss_iou = loss_dfl = reg.sum() * 0.0
        w = self.loss_weight
        return dict(loss_cls=loss_cls * w['class'], loss_iou=loss_iou * w['iou'],
                    loss_dfl=loss_dfl * w['dfl'])

    def _assign(self, scores: jt.Var, pred_bboxes: jt.Var, sizes: Sequence[Tuple[int, int]],
                batch_gt_instances: List[Dict[str, jt.Var]]) -> List[Dict[str, jt.Var]]:
        """Per image, ATSS while :attr:`epoch` < ``atss_warmup_epoch``, else TAL (``scores``
        probabilities (N, L, C), ``pred_bboxes`` in stride units (N, L, 4))."""
        points, strides = self.anchor_points(sizes)
        boxes = pred_bboxes * strides
        if self.epoch < self.atss_warmup_epoch:
            anchors = self.anchor_boxes(sizes)
            counts = [h * w for h, w in sizes]
            return [self.warmup_assigner.assign(anchors, counts, gt['labels'],
                                                gt['bboxes'].astype(scores.dtype), boxes[i])
                    for i, gt in enumerate(batch_gt_instances)]
        return [self.assigner.assign(scores[i], boxes[i], points, gt['labels'],
                                     gt['bboxes'].astype(scores.dtype))
                for i, gt in enumerate(batch_gt_instances)]

    def assign(self, cls_scores: List[jt.Var], bbox_preds: List[jt.Var],
               batch_gt_instances: List[Dict[str, jt.Var]]) -> List[Dict[str, jt.Var]]:
        """The assignment of each image that :meth:`loss_by_feat` uses (ATSS in the warm-up
        epochs, TAL after)."""
        cls, reg = self._flatten(cls_scores, bbox_preds)
        sizes = [tuple(c.shape[2:]) for c in cls_scores]
        points, strides = self.anchor_points(sizes)
        pred_bboxes = self._dist2bbox(self._expected_distances(reg), points / strides)
        return self._assign(cls.sigmoid(), pred_bboxes, sizes, batch_gt_instances)
