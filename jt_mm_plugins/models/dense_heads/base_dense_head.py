"""Jittor twin of mmdet 3.3.0's ``BaseDenseHead`` (``mmdet/models/dense_heads/base_dense_head.py``).

The Jittor-native interface replaces mmdet's structures by plain containers of Jittor Vars:

* ``batch_img_metas``: list of dicts (mmdet's ``data_sample.metainfo``: ``img_shape``,
  ``pad_shape``, ``scale_factor`` ...);
* ``batch_gt_instances``: list of dicts ``{'bboxes': Var[N, 4], 'labels': Var[N]}``
  (``batch_gt_instances_ignore``: the same with ``bboxes`` only, or None);
* predictions: list of dicts ``{'bboxes': Var[K, 4], 'scores': Var[K], 'labels': Var[K]}``
  (labels int64).

The call graph is mmdet's::

    loss(x, ...)             -> execute(x) -> loss_by_feat(*outs, ...)
    predict(x, ...)          -> execute(x) -> predict_by_feat(*outs, ...)
    loss_and_predict(x, ...) -> execute(x) -> loss_by_feat(*outs, ...), predict_by_feat(*outs, ...)
    predict_by_feat          -> _predict_by_feat_single (per image) -> _bbox_post_process

``execute`` may return any number of per-level outputs (``multi_apply`` over
``forward_single``); all of them reach ``loss_by_feat``, and ``predict_by_feat`` takes
``(cls_scores, bbox_preds, score_factors=None, ...)`` as mmdet's does (heads whose outputs mean
something else override it).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from jt_mm_plugins.ops.nms import batched_nms
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import (concat_rows, filter_scores_and_topk, get_box_wh, inverse_scale_factor,
                     multi_apply, select_single_mlvl, take_rows)

Results = Dict[str, jt.Var]


class JittorBaseDenseHead(jt.nn.Module):
    """Base class of the Jittor dense heads, as mmdet's ``BaseDenseHead``.

    Subclasses implement ``forward_single`` (or ``execute``) and ``loss_by_feat``; the prediction
    path works as is for any head that sets ``prior_generator``, ``bbox_coder``,
    ``cls_out_channels``, ``use_sigmoid_cls`` and ``test_cfg`` (anchor-based heads: see
    :class:`JittorAnchorHead`), and is overridden piecewise where a head post-processes
    differently (``_predict_by_feat_single`` of RPN, GFL...). This class is not registered:
    mmdet's ``BaseDenseHead`` is abstract.

    Post-processing config keys (``test_cfg`` or the ``cfg`` argument; mmdet's names):
    ``nms_pre`` (candidates kept per level before NMS, by score; <= 0 keeps all),
    ``score_thr`` (default 0), ``min_bbox_size`` (default -1: no filter), ``nms`` (mmcv's
    ``batched_nms`` cfg: ``type='nms'``, ``iou_threshold``, ``class_agnostic``, ``split_thr``,
    ``max_num``...), ``max_per_img``.
    """

    def __init__(self) -> None:
        super().__init__()

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def forward_single(self, x: jt.Var) -> tuple:
        """Forward one level's features (subclasses)."""
        raise NotImplementedError(f'{type(self).__name__} must implement forward_single')

    def execute(self, x: Sequence[jt.Var]) -> Tuple[List[jt.Var], ...]:
        """Forward features from the upstream network, one level at a time.

        Args:
            x (Sequence[jt.Var]): Features of each level, (N, C, H, W).

        Returns:
            tuple[list[jt.Var]]: One list per output of :meth:`forward_single` (usually
            ``cls_scores`` and ``bbox_preds``), one Var per level each.
        """
        if isinstance(x, jt.Var):
            raise TypeError(f'{type(self).__name__}: expects a list/tuple of per-level features, '
                            'got a single Var')
        if len(x) == 0:
            raise InputError(f'{type(self).__name__}: got no feature levels')
        return multi_apply(self.forward_single, x)

    def _forward_outputs(self, x: Sequence[jt.Var]) -> tuple:
        """``self(x)`` as a tuple of per-level outputs (a subclass may return a list)."""
        outs = self(x)
        if not isinstance(outs, (tuple, list)):
            raise TypeError(f'{type(self).__name__}: execute must return a tuple of per-level '
                            f'outputs, got {type(outs).__name__}')
        return tuple(outs)

    # ----------------------------------------------------------------------------------------
    # the BaseDenseHead interface
    # ----------------------------------------------------------------------------------------

    def loss(self,
             x: Sequence[jt.Var],
             batch_gt_instances: List[Dict[str, jt.Var]],
             batch_img_metas: List[dict],
             batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None) -> dict:
        """Forward, then compute the losses (mmdet's ``loss`` with unpacked data samples).

        Args:
            x (Sequence[jt.Var]): Features of each level.
            batch_gt_instances (list[dict]): Per image ``{'bboxes', 'labels'}``.
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore (list[dict], optional): Per image ``{'bboxes'}`` to ignore.
                Defaults to None.

        Returns:
            dict: Loss components.
        """
        outs = self._forward_outputs(x)
        return self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas,
                                 batch_gt_instances_ignore)

    def loss_by_feat(self, *args, **kwargs) -> dict:
        """Losses from the head's outputs: ``loss_by_feat(*outs, batch_gt_instances,
        batch_img_metas, batch_gt_instances_ignore=None)`` (subclasses)."""
        raise NotImplementedError(f'{type(self).__name__} must implement loss_by_feat')

    def loss_and_predict(
        self,
        x: Sequence[jt.Var],
        batch_gt_instances: List[Dict[str, jt.Var]],
        batch_img_metas: List[dict],
        proposal_cfg: Optional[Dict] = None,
        batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None
    ) -> Tuple[dict, List[Results]]:
        """Forward once, then compute the losses and the (detached) predictions.

        Args:
            x (Sequence[jt.Var]): Features of each level.
            batch_gt_instances (list[dict]): Per image ``{'bboxes', 'labels'}``.
            batch_img_metas (list[dict]): Meta information of each image.
            proposal_cfg (dict, optional): Post-processing config; None means ``test_cfg``.
                Defaults to None.
            batch_gt_instances_ignore (list[dict], optional): Per image boxes to ignore.
                Defaults to None.

        Returns:
            tuple[dict, list[dict]]: The losses and the predictions of each image.
        """
        outs = self._forward_outputs(x)
        losses = self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas,
                                   batch_gt_instances_ignore)
        predictions = self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, cfg=proposal_cfg)
        return losses, predictions

    def predict(self,
                x: Sequence[jt.Var],
                batch_img_metas: List[dict],
                rescale: bool = False) -> List[Results]:
        """Forward, then post-process into per-image predictions.

        Args:
            x (Sequence[jt.Var]): Features of each level.
            batch_img_metas (list[dict]): Meta information of each image.
            rescale (bool): Whether to map boxes back to the original image
                (divide by ``scale_factor``). Defaults to False.

        Returns:
            list[dict]: Per image ``{'bboxes', 'scores', 'labels'}``.
        """
        outs = self._forward_outputs(x)
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)

    # ----------------------------------------------------------------------------------------
    # predictions
    # ----------------------------------------------------------------------------------------

    def predict_by_feat(self,
                        cls_scores: List[jt.Var],
                        bbox_preds: List[jt.Var],
                        score_factors: Optional[List[jt.Var]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: Optional[Dict] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> List[Results]:
        """Turn the head's outputs into per-image predictions (no gradient flows into them).

        With ``score_factors`` (centerness, IoU branch...), the classification scores are
        multiplied by the sigmoid of the factors before NMS (after ``nms_pre`` and ``score_thr``
        chose the candidates by classification score alone), as mmdet does.

        Args:
            cls_scores (list[jt.Var]): Per level (N, num_priors * cls_out_channels, H, W).
            bbox_preds (list[jt.Var]): Per level (N, num_priors * encode_size, H, W).
            score_factors (list[jt.Var], optional): Per level (N, num_priors, H, W), logits.
                Defaults to None.
            batch_img_metas (list[dict]): Meta information of each image.
            cfg (dict, optional): Post-processing config; None means ``test_cfg``.
                Defaults to None.
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.
            with_nms (bool): Whether to apply NMS. Defaults to True.

        Returns:
            list[dict]: Per image ``{'bboxes', 'scores', 'labels'}``.
        """
        owner = type(self).__name__
        if len(cls_scores) != len(bbox_preds):
            raise InputError(f'{owner}: {len(cls_scores)} cls_scores levels but '
                             f'{len(bbox_preds)} bbox_preds levels')
        if score_factors is not None and len(score_factors) != len(cls_scores):
            raise InputError(f'{owner}: {len(score_factors)} score_factors levels but '
                             f'{len(cls_scores)} cls_scores levels')
        if batch_img_metas is None:
            raise InputError(f'{owner}.predict_by_feat needs batch_img_metas')
        num_levels = len(cls_scores)
        featmap_sizes = [tuple(int(s) for s in cls_scores[i].shape[-2:]) for i in range(num_levels)]
        mlvl_priors = self.prior_generator.grid_priors(
            featmap_sizes, dtype=str(cls_scores[0].dtype))

        result_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            if score_factors is None:
                score_factor_list = [None] * num_levels
            else:
                score_factor_list = select_single_mlvl(score_factors, img_id, detach=True)
            result_list.append(
                self._predict_by_feat_single(
                    cls_score_list=select_single_mlvl(cls_scores, img_id, detach=True),
                    bbox_pred_list=select_single_mlvl(bbox_preds, img_id, detach=True),
                    score_factor_list=score_factor_list,
                    mlvl_priors=mlvl_priors,
                    img_meta=img_meta,
                    cfg=cfg,
                    rescale=rescale,
                    with_nms=with_nms))
        return result_list

    def _resolve_test_cfg(self, cfg: Optional[Dict]) -> Dict:
        """``cfg``, else ``test_cfg``, as a copied dict; a clear error when there is neither."""
        cfg = getattr(self, 'test_cfg', None) if cfg is None else cfg
        if cfg is None:
            raise InputError(f'{type(self).__name__}: predicting needs a test_cfg (or a cfg), e.g. '
                             "dict(nms_pre=1000, score_thr=0.05, nms=dict(type='nms', "
                             'iou_threshold=0.6), max_per_img=100)')
        if not isinstance(cfg, dict):
            raise TypeError(f'{type(self).__name__}: the post-processing cfg must be a dict, got '
                            f'{cfg!r}')
        return copy.deepcopy(dict(cfg))

    def _check_level_sizes(self, level_idx: int, cls_score: jt.Var, bbox_pred: jt.Var) -> None:
        """One level's outputs of one image must cover the same (H, W) grid."""
        if tuple(cls_score.shape[-2:]) != tuple(bbox_pred.shape[-2:]):
            raise InputError(f'{type(self).__name__}: level {level_idx} cls_score '
                             f'{tuple(cls_score.shape)} and bbox_pred {tuple(bbox_pred.shape)} '
                             'differ in size')

    def _level_scores(self, cls_score: jt.Var) -> jt.Var:
        """Class probabilities (num_priors, num_classes) of one level's (C, H, W) logits: sigmoid,
        or softmax without the background column (foreground labels 0..num_classes-1)."""
        cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
        if self.use_sigmoid_cls:
            return cls_score.sigmoid()
        return jt.nn.softmax(cls_score, dim=-1)[:, :-1]

    def _predict_by_feat_single(self,
                                cls_score_list: List[jt.Var],
                                bbox_pred_list: List[jt.Var],
                                score_factor_list: List[Optional[jt.Var]],
                                mlvl_priors: List[jt.Var],
                                img_meta: dict,
                                cfg: Optional[Dict],
                                rescale: bool = False,
                                with_nms: bool = True) -> Results:
        """Predictions of one image: per level the ``score_thr``/``nms_pre`` filter on the class
        scores, decoding (clipped to ``img_shape``), then :meth:`_bbox_post_process`.

        Args:
            cls_score_list (list[jt.Var]): Per level (num_priors * cls_out_channels, H, W).
            bbox_pred_list (list[jt.Var]): Per level (num_priors * encode_size, H, W).
            score_factor_list (list[jt.Var | None]): Per level (num_priors, H, W) logits, or None
                for every level.
            mlvl_priors (list[jt.Var]): Priors per level, (num_level_priors, 4).
            img_meta (dict): Meta information of the image.
            cfg (dict, optional): Post-processing config; None means ``test_cfg``.
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.
            with_nms (bool): Whether to apply NMS. Defaults to True.

        Returns:
            dict: ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,) int64.
        """
        with_score_factors = score_factor_list[0] is not None
        cfg = self._resolve_test_cfg(cfg)
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0)
        dim = self.bbox_coder.encode_size

        mlvl_bbox_preds, mlvl_valid_priors, mlvl_scores, mlvl_labels = [], [], [], []
        mlvl_score_factors = []
        for level_idx, (cls_score, bbox_pred, score_factor, priors) in enumerate(
                zip(cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors)):
            self._check_level_sizes(level_idx, cls_score, bbox_pred)
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, dim)
            scores = self._level_scores(cls_score)
            scores, labels, keep_idxs, filtered = filter_scores_and_topk(
                scores, score_thr, nms_pre, dict(bbox_pred=bbox_pred, priors=priors))
            mlvl_bbox_preds.append(filtered['bbox_pred'])
            mlvl_valid_priors.append(filtered['priors'])
            mlvl_scores.append(scores)
            mlvl_labels.append(labels)
            if with_score_factors:
                score_factor = score_factor.permute(1, 2, 0).reshape(-1).sigmoid()
                mlvl_score_factors.append(take_rows(score_factor, keep_idxs))

        score_dtype = str(cls_score_list[0].dtype)
        bbox_pred = concat_rows(mlvl_bbox_preds, (dim, ), score_dtype)
        priors = concat_rows(mlvl_valid_priors, tuple(mlvl_priors[0].shape[1:]), score_dtype)
        if bbox_pred.shape[0] > 0:
            bboxes = self.bbox_coder.decode(priors, bbox_pred, max_shape=img_meta['img_shape'])
        else:  # every candidate was below score_thr
            bboxes = jt.zeros((0, 4), dtype=score_dtype)
        results = dict(
            bboxes=bboxes,
            scores=concat_rows(mlvl_scores, (), score_dtype),
            labels=concat_rows(mlvl_labels, (), 'int64'))
        if with_score_factors:
            results['score_factors'] = concat_rows(mlvl_score_factors, (), score_dtype)
        return self._bbox_post_process(
            results=results, cfg=cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)

    # ----------------------------------------------------------------------------------------
    # post-processing steps (shared by the subclasses' own ``_bbox_post_process``)
    # ----------------------------------------------------------------------------------------

    def _rescale_results(self, results: Results, img_meta: Optional[dict]) -> Results:
        """Map ``results['bboxes']`` back to the original image (divide by ``scale_factor``)."""
        if img_meta is None or img_meta.get('scale_factor') is None:
            raise KeyError(f'{type(self).__name__}: rescale=True needs img_meta["scale_factor"]')
        results = dict(results)
        results['bboxes'] = results['bboxes'] * inverse_scale_factor(img_meta['scale_factor'],
                                                                     type(self).__name__)
        return results

    @staticmethod
    def _filter_min_bbox_size(results: Results, min_bbox_size: float) -> Results:
        """Keep the boxes wider and taller than ``min_bbox_size`` (a negative size keeps all)."""
        if min_bbox_size < 0:
            return results
        w, h = get_box_wh(results['bboxes'])
        valid = jt.logical_and(w > min_bbox_size, h > min_bbox_size).numpy()
        if valid.all():
            return results
        keep = np.nonzero(valid)[0]
        return {key: take_rows(value, keep) for key, value in results.items()}

    def _bbox_post_process(self,
                           results: Results,
                           cfg: Dict,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> Results:
        """Rescale, apply the score factors, drop small boxes, class-aware NMS and keep the
        ``max_per_img`` best, as mmdet's ``BaseDenseHead._bbox_post_process``.

        Args:
            results (dict): ``bboxes`` (n, 4), ``scores`` (n,), ``labels`` (n,) and optionally
                ``score_factors`` (n,).
            cfg (dict): Post-processing config (``min_bbox_size``, ``nms``, ``max_per_img``).
            rescale (bool): Divide the boxes by ``img_meta['scale_factor']``. Defaults to False.
            with_nms (bool): Whether to apply NMS (without it every candidate is returned, in
                candidate order). Defaults to True.
            img_meta (dict, optional): Meta information of the image. Defaults to None.

        Returns:
            dict: ``bboxes``, ``scores`` and ``labels``.
        """
        if rescale:
            results = self._rescale_results(results, img_meta)
        results = dict(results)
        score_factors = results.pop('score_factors', None)
        if score_factors is not None:
            results['scores'] = results['scores'] * score_factors
        results = self._filter_min_bbox_size(results, cfg.get('min_bbox_size', -1))

        if with_nms and results['bboxes'].numel() > 0:
            owner = type(self).__name__
            if 'nms' not in cfg or 'max_per_img' not in cfg:
                raise KeyError(f'{owner}: the post-processing cfg needs "nms" and "max_per_img" '
                               f'keys, got {sorted(cfg)}')
            det_bboxes, keep_idxs = batched_nms(results['bboxes'], results['scores'],
                                                results['labels'], cfg['nms'])
            keep = keep_idxs.numpy()[:cfg['max_per_img']]
            results = {key: take_rows(value, keep) for key, value in results.items()}
            # some NMS variants re-weight the scores
            results['scores'] = det_bboxes[:, -1][:cfg['max_per_img']]
        return results
