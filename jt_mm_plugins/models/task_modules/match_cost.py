"""Jittor twins of mmdet's match costs (``mmdet/models/task_modules/assigners/match_cost.py``):
``(num_preds, num_gts)`` cost matrices for :class:`~.hungarian_assigner.HungarianAssigner`.

Predictions and ground truths come as dicts of Vars (``pred_instances``: ``scores`` (n, C) logits,
``bboxes`` (n, 4) xyxy in pixels; ``gt_instances``: ``bboxes`` (k, 4), ``labels`` (k,)), the image
meta as mmdet's ``metainfo`` dict (``img_shape``).
"""
from typing import Dict, Optional, Union

from jt_mm_plugins.ops.bbox_overlaps import bbox_overlaps
from jt_mm_plugins.registry import JITTOR_TASK_UTILS
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


def bbox_xyxy_to_cxcywh(bboxes: jt.Var) -> jt.Var:
    """(x1, y1, x2, y2) -> (cx, cy, w, h), as mmdet's."""
    x1, y1, x2, y2 = (bboxes[..., i] for i in range(4))
    return jt.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def bbox_cxcywh_to_xyxy(bboxes: jt.Var) -> jt.Var:
    """(cx, cy, w, h) -> (x1, y1, x2, y2), as mmdet's."""
    cx, cy, w, h = (bboxes[..., i] for i in range(4))
    return jt.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def _columns(values: jt.Var, labels: jt.Var) -> jt.Var:
    """``values[:, labels]``."""
    return values.transpose(1, 0)[labels.int32()].transpose(1, 0)


class BaseMatchCost:
    """A weighted cost; subclasses compute ``__call__(pred_instances, gt_instances, img_meta)``."""

    def __init__(self, weight: Union[float, int] = 1.) -> None:
        self.weight = weight

    def __call__(self, pred_instances: Dict, gt_instances: Dict, img_meta: Optional[dict] = None,
                 **kwargs) -> jt.Var:
        raise NotImplementedError


@JITTOR_TASK_UTILS.register_module()
class BBoxL1Cost(BaseMatchCost):
    """L1 distance between boxes normalised by the image size (``box_format`` 'xyxy' or 'xywh':
    the boxes are compared as (cx, cy, w, h))."""

    def __init__(self, box_format: str = 'xyxy', weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        if box_format not in ('xyxy', 'xywh'):
            raise InputError(f"BBoxL1Cost: box_format must be 'xyxy' or 'xywh', got {box_format!r}")
        self.box_format = box_format

    def __call__(self, pred_instances: Dict, gt_instances: Dict, img_meta: Optional[dict] = None,
                 **kwargs) -> jt.Var:
        pred_bboxes, gt_bboxes = pred_instances['bboxes'], gt_instances['bboxes']
        if self.box_format == 'xywh':
            pred_bboxes = bbox_xyxy_to_cxcywh(pred_bboxes)
            gt_bboxes = bbox_xyxy_to_cxcywh(gt_bboxes)
        img_h, img_w = img_meta['img_shape'][:2]
        factor = jt.array([img_w, img_h, img_w, img_h]).cast(pred_bboxes.dtype).reshape(1, 4)
        pred_bboxes, gt_bboxes = pred_bboxes / factor, gt_bboxes / factor
        cost = (pred_bboxes.unsqueeze(1) - gt_bboxes.unsqueeze(0)).abs().sum(-1)
        return cost * self.weight


@JITTOR_TASK_UTILS.register_module()
class IoUCost(BaseMatchCost):
    """``-overlap`` (``iou_mode`` 'iou', 'iof' or 'giou') between predicted and gt boxes."""

    def __init__(self, iou_mode: str = 'giou', weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.iou_mode = iou_mode

    def __call__(self, pred_instances: Dict, gt_instances: Dict, img_meta: Optional[dict] = None,
                 **kwargs) -> jt.Var:
        overlaps = bbox_overlaps(pred_instances['bboxes'], gt_instances['bboxes'],
                                 mode=self.iou_mode, is_aligned=False)
        return -overlaps * self.weight


@JITTOR_TASK_UTILS.register_module()
class ClassificationCost(BaseMatchCost):
    """``-softmax(scores)[:, gt_labels]``."""

    def __call__(self, pred_instances: Dict, gt_instances: Dict, img_meta: Optional[dict] = None,
                 **kwargs) -> jt.Var:
        probs = jt.nn.softmax(pred_instances['scores'], dim=-1)
        return -_columns(probs, gt_instances['labels']) * self.weight


@JITTOR_TASK_UTILS.register_module()
class FocalLossCost(BaseMatchCost):
    """Focal-loss cost of the sigmoid scores (box form; mmdet's ``binary_input`` mask form is not
    implemented)."""

    def __init__(self, alpha: Union[float, int] = 0.25, gamma: Union[float, int] = 2,
                 eps: float = 1e-12, binary_input: bool = False,
                 weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        if binary_input:
            raise NotImplementedError('FocalLossCost (Jittor): binary_input (mask costs) is not '
                                      'implemented')
        self.alpha, self.gamma, self.eps, self.binary_input = alpha, gamma, eps, binary_input

    def __call__(self, pred_instances: Dict, gt_instances: Dict, img_meta: Optional[dict] = None,
                 **kwargs) -> jt.Var:
        prob = pred_instances['scores'].sigmoid()
        neg_cost = -(1 - prob + self.eps).log() * (1 - self.alpha) * prob.pow(self.gamma)
        pos_cost = -(prob + self.eps).log() * self.alpha * (1 - prob).pow(self.gamma)
        labels = gt_instances['labels']
        return (_columns(pos_cost, labels) - _columns(neg_cost, labels)) * self.weight
