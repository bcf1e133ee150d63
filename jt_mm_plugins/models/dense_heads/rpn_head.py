"""Jittor twin of mmdet 3.3.0's ``RPNHead`` (``mmdet/models/dense_heads/rpn_head.py``)."""
from typing import Dict, List, Optional, Tuple

from jt_mm_plugins.bridge import BridgedDenseHead, register_jittor_module
from jt_mm_plugins.models.layers.activation import relu
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.ops import batched_nms
from jt_mm_plugins.ops.nms import descending_order
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import normal_init_convs
from .anchor_head import JittorAnchorHead

# Keys of an RPN post-processing config (mmdet's ``test_cfg.rpn`` / ``train_cfg.rpn_proposal``).
PROPOSAL_CFG_KEYS = ('nms_pre', 'max_per_img', 'nms', 'min_bbox_size')
REQUIRED_PROPOSAL_CFG_KEYS = ('max_per_img', 'nms')
# mmdet's RPNHead ``init_cfg``: dict(type='Normal', layer='Conv2d', std=0.01) (bias 0).
INIT_STD = 0.01


@register_jittor_module(bridge_base=BridgedDenseHead)
class JittorRPNHead(JittorAnchorHead):
    """Region Proposal Network head of `Faster R-CNN <https://arxiv.org/abs/1506.01497>`_, in
    Jittor.

    Computes what mmdet's ``RPNHead`` computes with the same constructor arguments and the same
    parameter names (``rpn_conv.weight``, ``rpn_cls.weight``, ``rpn_reg.bias``; with
    ``num_convs > 1``: ``rpn_conv.0.conv.weight`` ...), so an mmdet checkpoint's ``rpn_head.*``
    entries load strictly. The Jittor-native methods take and return plain containers of Vars
    (see :mod:`jt_mm_plugins.models.dense_heads.anchor_head`):

    * ``execute(x)`` -> ``(cls_scores, bbox_preds)``, one Var per level each;
    * ``loss(x, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore=None)`` ->
      ``dict(loss_rpn_cls=[...], loss_rpn_bbox=[...])`` (one scalar per level);
    * ``predict(x, batch_img_metas, rescale=False)`` -> per image
      ``{'bboxes', 'scores', 'labels'}`` proposals;
    * ``loss_and_predict(x, batch_gt_instances, batch_img_metas, proposal_cfg)``.

    Weights are initialised as mmdet's default ``init_cfg`` does: every convolution's weight from
    N(0, 0.01), biases zero (the bridged wrapper takes ``init_cfg`` itself).

    Args:
        in_channels (int): Number of channels in the input feature map.
        num_classes (int): Number of categories excluding the background category; must be 1.
            Defaults to 1.
        num_convs (int): Number of 3x3 convolutions before the classifier and regressor.
            Defaults to 1.
        feat_channels (int): Channels of the hidden convolutions. Defaults to 256.
        anchor_generator (dict): Anchor generator config. Defaults to mmdet's AnchorHead default.
        bbox_coder (dict): Box coder config. Defaults to ``DeltaXYWHBBoxCoder``.
        reg_decoded_bbox (bool): Regress decoded boxes instead of deltas. Defaults to False.
        loss_cls (dict): Classification loss config. Defaults to sigmoid ``CrossEntropyLoss``.
        loss_bbox (dict): Regression loss config. Defaults to ``SmoothL1Loss`` (beta 1/9).
        train_cfg (dict, optional): mmdet's ``train_cfg.rpn``. Defaults to None.
        test_cfg (dict, optional): mmdet's ``test_cfg.rpn`` (``nms_pre``, ``max_per_img``,
            ``nms``, ``min_bbox_size``). Defaults to None.

    Example:
        >>> from jt_mm_plugins.runtime import jt
        >>> head = JittorRPNHead(in_channels=8, feat_channels=8, anchor_generator=dict(
        ...     type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[8, 16]))
        >>> cls_scores, bbox_preds = head([jt.rand(1, 8, 8, 8), jt.rand(1, 8, 4, 4)])
        >>> [tuple(c.shape) for c in cls_scores], [tuple(b.shape) for b in bbox_preds]
        ([(1, 3, 8, 8), (1, 3, 4, 4)], [(1, 12, 8, 8), (1, 12, 4, 4)])
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int = 1,
                 num_convs: int = 1,
                 **kwargs) -> None:
        if num_classes != 1:
            raise InputError(f'JittorRPNHead: num_classes must be 1 (object vs background), got '
                             f'{num_classes}')
        if not isinstance(num_convs, int) or num_convs < 1:
            raise InputError(f'JittorRPNHead: num_convs must be an int >= 1, got {num_convs!r}')
        self.num_convs = num_convs
        super().__init__(num_classes=num_classes, in_channels=in_channels, **kwargs)
        if self.test_cfg is not None:
            self._check_proposal_cfg(self.test_cfg, 'test_cfg')
        self.init_weights()

    def _init_layers(self) -> None:
        """Build ``rpn_conv`` (a conv, or a Sequential of ConvModules), ``rpn_cls``, ``rpn_reg``."""
        if self.num_convs > 1:
            self.rpn_conv = jt.nn.Sequential(*[
                ConvModule(
                    self.in_channels if i == 0 else self.feat_channels,
                    self.feat_channels,
                    3,
                    padding=1,
                    inplace=False) for i in range(self.num_convs)
            ])
        else:
            self.rpn_conv = Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        self.rpn_cls = Conv2d(self.feat_channels,
                              self.num_base_priors * self.cls_out_channels, 1)
        self.rpn_reg = Conv2d(self.feat_channels,
                              self.num_base_priors * self.bbox_coder.encode_size, 1)

    def init_weights(self) -> None:
        """Normal(0, 0.01) weights and zero biases for every convolution (mmdet's ``init_cfg``;
        mmdet does not re-run the ConvModules' own Kaiming init inside ``rpn_conv``)."""
        normal_init_convs(self, INIT_STD)

    def forward_single(self, x: jt.Var) -> Tuple[jt.Var, jt.Var]:
        """Forward one level.

        Args:
            x (jt.Var): Features (N, in_channels, H, W).

        Returns:
            tuple[jt.Var, jt.Var]: ``rpn_cls_score`` (N, num_base_priors * cls_out_channels, H, W)
            and ``rpn_bbox_pred`` (N, num_base_priors * 4, H, W).
        """
        x = relu(self.rpn_conv(x))
        return self.rpn_cls(x), self.rpn_reg(x)

    def loss_by_feat(self,
                     cls_scores: List[jt.Var],
                     bbox_preds: List[jt.Var],
                     batch_gt_instances: List[Dict[str, jt.Var]],
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None) -> dict:
        """Losses from the head's outputs (see :meth:`JittorAnchorHead.loss_by_feat`).

        Returns:
            dict: ``loss_rpn_cls`` and ``loss_rpn_bbox``, each a list of one scalar per level.
        """
        losses = super().loss_by_feat(cls_scores, bbox_preds, batch_gt_instances,
                                      batch_img_metas, batch_gt_instances_ignore)
        return dict(loss_rpn_cls=losses['loss_cls'], loss_rpn_bbox=losses['loss_bbox'])

    @staticmethod
    def _check_proposal_cfg(cfg: Dict, name: str) -> Dict:
        """Unknown or missing post-processing keys raise, naming them."""
        if not isinstance(cfg, dict):
            raise TypeError(f'JittorRPNHead: {name} must be a dict, got {cfg!r}')
        unknown = sorted(set(cfg) - set(PROPOSAL_CFG_KEYS))
        if unknown:
            raise KeyError(f'JittorRPNHead: unknown {name} key(s) {unknown}; accepted: '
                           f'{list(PROPOSAL_CFG_KEYS)}')
        missing = [k for k in REQUIRED_PROPOSAL_CFG_KEYS if k not in cfg]
        if missing:
            raise KeyError(f'JittorRPNHead: {name} lacks {missing}, got {dict(cfg)!r}')
        return cfg

    def _predict_by_feat_single(self, cls_score_list: List[jt.Var], bbox_pred_list: List[jt.Var],
                                score_factor_list: List[Optional[jt.Var]],
                                mlvl_priors: List[jt.Var], img_meta: dict, cfg: Optional[Dict],
                                rescale: bool = False, with_nms: bool = True) -> Dict[str, jt.Var]:
        """Proposals of one image: per level the ``nms_pre`` best anchors, decoded and clipped to
        ``img_shape``, then :meth:`_bbox_post_process`.

        Args:
            cls_score_list (list[jt.Var]): Per level (num_base_priors * cls_out_channels, H, W).
            bbox_pred_list (list[jt.Var]): Per level (num_base_priors * 4, H, W).
            score_factor_list (list): Unused (None per level).
            mlvl_priors (list[jt.Var]): Anchors per level, (num_level_anchors, 4).
            img_meta (dict): Meta information of the image.
            cfg (dict, optional): Post-processing config; None means ``test_cfg``.
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.
            with_nms (bool): Must be True. Defaults to True.

        Returns:
            dict: ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,) (all zeros).
        """
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None:
            raise InputError('JittorRPNHead: predicting proposals needs a test_cfg (or a '
                             'proposal_cfg), e.g. dict(nms_pre=1000, max_per_img=1000, '
                             "nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0)")
        cfg = dict(self._check_proposal_cfg(cfg, 'proposal cfg'))
        nms_pre = cfg.get('nms_pre', -1)
        reg_dim = self.bbox_coder.encode_size

        mlvl_bbox_preds, mlvl_valid_priors, mlvl_scores, level_ids = [], [], [], []
        for level_idx, (cls_score, bbox_pred, priors) in enumerate(
                zip(cls_score_list, bbox_pred_list, mlvl_priors)):
            self._check_level_sizes(level_idx, cls_score, bbox_pred)
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, reg_dim)
            # foreground is label 0 (softmax: background is the last channel, mmdet >= 2.0)
            scores = self._level_scores(cls_score).reshape(-1)
            if 0 < nms_pre < scores.shape[0]:
                # mmdet sorts (not topk); ties keep their index order here
                rank_inds, ranked_scores = descending_order(scores)
                topk_inds = rank_inds[:nms_pre]
                scores = ranked_scores[:nms_pre]
                bbox_pred = bbox_pred[topk_inds]
                priors = priors[topk_inds]
            mlvl_bbox_preds.append(bbox_pred)
            mlvl_valid_priors.append(priors)
            mlvl_scores.append(scores)
            # the level id makes NMS separate per level
            level_ids.append(jt.full((scores.shape[0], ), level_idx, dtype='int64'))

        bbox_pred = jt.concat(mlvl_bbox_preds, dim=0)
        priors = jt.concat(mlvl_valid_priors, dim=0)
        bboxes = self.bbox_coder.decode(priors, bbox_pred, max_shape=img_meta['img_shape'])
        results = dict(
            bboxes=bboxes,
            scores=jt.concat(mlvl_scores, dim=0),
            level_ids=jt.concat(level_ids, dim=0))
        return self._bbox_post_process(
            results=results, cfg=cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)

    def _bbox_post_process(self,
                           results: Dict[str, jt.Var],
                           cfg: Dict,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> Dict[str, jt.Var]:
        """Rescale, drop small boxes, NMS per level and keep the ``max_per_img`` best.

        Args:
            results (dict): ``bboxes`` (n, 4), ``scores`` (n,), ``level_ids`` (n,).
            cfg (dict): Post-processing config.
            rescale (bool): Divide the boxes by ``img_meta['scale_factor']``. Defaults to False.
            with_nms (bool): Must be True for RPN. Defaults to True.
            img_meta (dict, optional): Meta information of the image. Defaults to None.

        Returns:
            dict: ``bboxes``, ``scores`` and ``labels`` (int64 zeros).
        """
        if not with_nms:
            raise InputError('JittorRPNHead: `with_nms` must be True')
        if rescale:
            results = self._rescale_results(results, img_meta)
        results = self._filter_min_bbox_size(results, cfg.get('min_bbox_size', -1))
        bboxes, scores, level_ids = results['bboxes'], results['scores'], results['level_ids']

        if bboxes.numel() == 0:
            return dict(
                bboxes=jt.zeros((0, 4), dtype=bboxes.dtype),
                scores=jt.zeros((0, ), dtype=scores.dtype),
                labels=jt.zeros((0, ), dtype='int64'))
        det_bboxes, keep_idxs = batched_nms(bboxes, scores, level_ids, cfg['nms'])
        max_per_img = cfg['max_per_img']
        bboxes = bboxes[keep_idxs][:max_per_img]
        # some NMS variants re-weight the scores
        scores = det_bboxes[:, -1][:max_per_img]
        return dict(
            bboxes=bboxes, scores=scores,
            labels=jt.zeros((scores.shape[0], ), dtype='int64'))
