"""OLN's box-score R-CNN head (``convfc_bbox_score_head.py`` of zhenyuw16/UniDetector) and its RoI
head, in Jittor / mmdet's StandardRoIHead."""
from typing import Any, Dict, List, Optional

import numpy as np

from mmdet.registry import MODELS

from jt_mm_plugins.bridge import bbox_head as bridge_bbox_head
from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead
from jt_mm_plugins.models.task_modules import build_jittor_loss
from jt_mm_plugins.ops.bbox_overlaps import bbox_overlaps
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .bbox_head import normal_init_
from .convfc_bbox_head import JittorShared2FCBBoxHead
from ..utils import concat_rows


@register_jittor_module(bridge_base=BridgedBBoxHead)
class Shared2FCBBoxScoreHead(JittorShared2FCBBoxHead):
    """OLN's box head: two shared fcs, then ``fc_cls`` (fg / bg softmax, ``num_classes=1``),
    ``fc_reg`` and ``fc_bbox_score`` (one logit: the predicted IoU of the box with its object).

    So that mmdet's own ``StandardRoIHead`` can carry it, the box-score logit travels as the last
    column of ``cls_score`` (n, num_classes + 2); the loss and the scoring split it off.

    Training: the R-CNN losses of :class:`JittorShared2FCBBoxHead` on the class columns, plus
    ``loss_bbox_score``: L1 between ``sigmoid(bbox_score)`` and the IoU of each positive RoI with
    its gt (``bbox_score_type='BoxIoU'``), positives only, averaged over all sampled RoIs (as
    ``loss_bbox``).
    Testing: ``p_fg^alpha * (rpn_score * sigmoid(bbox_score))^(1 - alpha)``, ``rpn_score`` the
    proposal score (``img_meta['proposal_scores']``, set by ``MetaStandardRoIHead`` /
    ``OlnRoIHead``). **[UNCONFIRMED]** in the spec: the original OLN uses ``sqrt(rpn * box)``;
    UniDetector appears to add ``p_fg`` (alpha 0.3).

    Args:
        bbox_score_type (str): Only ``'BoxIoU'``.
        loss_bbox_score (dict): Loss of the box score (``L1Loss``).
        score_alpha (float): ``alpha`` above. Defaults to 0.3.
        **kwargs: :class:`JittorShared2FCBBoxHead`'s.
    """

    def __init__(self, bbox_score_type: str = 'BoxIoU',
                 loss_bbox_score: dict = dict(type='L1Loss', loss_weight=1.0),
                 score_alpha: float = 0.3, **kwargs) -> None:
        if bbox_score_type != 'BoxIoU':
            raise NotImplementedError(f"Shared2FCBBoxScoreHead: bbox_score_type "
                                      f"{bbox_score_type!r}; only 'BoxIoU'")
        self.bbox_score_type = bbox_score_type
        self.score_alpha = score_alpha
        super().__init__(**kwargs)
        if self.with_avg_pool:
            raise NotImplementedError('Shared2FCBBoxScoreHead: with_avg_pool is not supported')
        self.loss_bbox_score = build_jittor_loss(loss_bbox_score)

    def _init_predictors(self, cls_in_features: int, reg_in_features: int) -> None:
        super()._init_predictors(cls_in_features, reg_in_features)
        self.fc_bbox_score = jt.nn.Linear(self.cls_last_dim, 1)

    def init_weights(self) -> None:
        super().init_weights()
        normal_init_(self.fc_bbox_score, std=0.01)

    def execute(self, x: jt.Var):
        """``cls_score`` (n, num_classes + 2: class logits, then the box-score logit) and
        ``bbox_pred``."""
        for conv in self.shared_convs:
            x = conv(x)
        x = self._flatten(x)
        for fc in self.shared_fcs:
            x = jt.nn.relu(fc(x))
        cls_score = jt.concat([self.fc_cls(x), self.fc_bbox_score(x)], dim=1)
        return cls_score, self.fc_reg(x)

    def loss_and_target(self, cls_score, bbox_pred, rois, sampling_results: List[Any],
                        rcnn_train_cfg: Any, concat: bool = True,
                        reduction_override: Optional[str] = None) -> Dict[str, Any]:
        result = super().loss_and_target(cls_score[:, :-1], bbox_pred, rois, sampling_results,
                                         rcnn_train_cfg, concat, reduction_override)
        targets, weights = [], []
        for res in sampling_results:
            num_pos, num_neg = int(res.pos_priors.shape[0]), int(res.neg_priors.shape[0])
            if num_pos:
                targets.append(bbox_overlaps(res.pos_priors, res.pos_gt_bboxes, is_aligned=True))
            targets.append(jt.zeros((num_neg, )))
            weights.append(np.r_[np.ones(num_pos), np.zeros(num_neg)].astype(np.float32))
        if cls_score.shape[0]:
            score = cls_score[:, -1].sigmoid()
            result['loss_bbox']['loss_bbox_score'] = self.loss_bbox_score(
                score, concat_rows(targets, (), 'float32').stop_grad(),
                jt.array(np.concatenate(weights)), avg_factor=int(cls_score.shape[0]),
                reduction_override=reduction_override)
        return result

    def cls_probabilities(self, cls_score: jt.Var, roi: jt.Var, img_meta: dict) -> jt.Var:
        """(n, 2): ``[p_fg^a * (rpn * sigmoid(box_score))^(1-a), 0]``."""
        rpn_score = img_meta.get('proposal_scores')
        if rpn_score is None:
            raise KeyError("Shared2FCBBoxScoreHead needs the proposals' scores in "
                           "img_meta['proposal_scores'] (use OlnRoIHead)")
        if self.num_classes != 1:
            raise InputError('Shared2FCBBoxScoreHead scores one (object) class')
        p_fg = jt.nn.softmax(cls_score[:, :-1], dim=-1)[:, 0]
        score = p_fg.pow(self.score_alpha) * (
            rpn_score.reshape(-1) * cls_score[:, -1].sigmoid()).pow(1 - self.score_alpha)
        return jt.stack([score, jt.zeros_like(score)], dim=1)


if getattr(bridge_bbox_head, 'MetaStandardRoIHead', None) is not None:

    @MODELS.register_module()
    class OlnRoIHead(bridge_bbox_head.MetaStandardRoIHead):
        """OLN's RoI head (UniDetector's first stage): mmdet's ``StandardRoIHead`` (through
        ``MetaStandardRoIHead``, so the proposals' scores reach the box head at test time) with
        :class:`Shared2FCBBoxScoreHead` as its ``bbox_head``."""
