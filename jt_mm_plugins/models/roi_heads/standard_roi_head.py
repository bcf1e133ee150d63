"""Jittor twin of mmdet 3.3.0's ``StandardRoIHead``
(``mmdet/models/roi_heads/standard_roi_head.py``, ``base_roi_head.py``), bbox branch only."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jt_mm_plugins.bridge import BridgedRoIHead, register_jittor_module
from jt_mm_plugins.models.task_modules import build_jittor_task_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
# Importing the children registers them, so configs can name them.
from . import convfc_bbox_head, single_roi_extractor  # noqa: F401
from ..utils import (bbox2roi, build_jittor_child, cfg_get, cfg_require, empty_bbox_results,
                    split_rows)


@register_jittor_module(bridge_base=BridgedRoIHead)
class JittorStandardRoIHead(jt.nn.Module):
    """Simplest base RoI head with one bbox head, in Jittor: the second stage of
    `Faster R-CNN <https://arxiv.org/abs/1506.01497>`_ (mmdet's ``StandardRoIHead``).

    The constructor takes mmdet's arguments. ``bbox_roi_extractor`` and ``bbox_head`` are built in
    the Jittor model registry and may name mmdet's types (``'SingleRoIExtractor'``,
    ``'Shared2FCBBoxHead'``): they resolve to their Jittor twins (see
    :func:`jt_mm_plugins.bridge.jittor_type`). The assigner and the sampler of
    ``train_cfg`` are built in the Jittor task-module registry. Parameter names are mmdet's
    (``bbox_head.shared_fcs.0.weight`` ...), so an mmdet Faster R-CNN checkpoint's ``roi_head.*``
    keys load strictly.

    As mmdet's ``StandardRoIHead`` under :class:`~jt_mm_plugins.bridge.bbox_head.MetaStandardRoIHead`,
    every sampling result carries its image's metainfo (``img_meta``, where UniDetector's
    ``BBoxHeadCLIPPartitioned`` reads ``dataset_id``) and the metas given to the box head's
    ``predict_by_feat`` carry the proposals' ``scores`` as ``proposal_scores`` (read by
    ``BBoxHeadCLIPInference``).

    Methods use the Jittor-native interface: features are a tuple of Vars, proposals and results
    are dicts of Vars (``bboxes``, ``scores``, ``labels``), gt instances are dicts with ``bboxes``
    and ``labels``, image metas are mmdet's metainfo dicts.

    Args:
        bbox_roi_extractor (dict): Config of the box RoI extractor.
        bbox_head (dict): Config of the box head.
        mask_roi_extractor (dict, optional): Not supported (mask branch). Defaults to None.
        mask_head (dict, optional): Not supported (mask branch). Defaults to None.
        shared_head (dict, optional): Config of a Jittor module applied to the RoI features
            before the box head (mmdet's ``shared_head``, e.g. UniDetector's ``CLIPResLayer``;
            its parameters are ``shared_head.*``). Defaults to None.
        train_cfg (dict, optional): R-CNN training config (``assigner``, ``sampler``,
            ``pos_weight``). Defaults to None.
        test_cfg (dict, optional): R-CNN testing config (``score_thr``, ``nms``,
            ``max_per_img``). Defaults to None.
    """

    def __init__(self,
                 bbox_roi_extractor: Optional[dict] = None,
                 bbox_head: Optional[dict] = None,
                 mask_roi_extractor: Optional[dict] = None,
                 mask_head: Optional[dict] = None,
                 shared_head: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        owner = type(self).__name__
        if mask_head is not None or mask_roi_extractor is not None:
            raise NotImplementedError(f'{owner}: the mask branch (mask_head / mask_roi_extractor) '
                                      'is not implemented in Jittor; only the bbox branch is')
        if bbox_head is None or bbox_roi_extractor is None:
            # TypeError as mmdet's (its MODELS.build refuses the None config)
            raise TypeError(f'{owner}: needs both bbox_roi_extractor and bbox_head configs (got '
                            f'bbox_roi_extractor={bbox_roi_extractor!r}, bbox_head={bbox_head!r})')
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if shared_head is not None:
            self.shared_head = build_jittor_child(shared_head, owner, 'shared_head')
        self.init_bbox_head(bbox_roi_extractor, bbox_head)
        self.init_assigner_sampler()

    @property
    def with_bbox(self) -> bool:
        """bool: Whether the RoI head has a ``bbox_head`` (always, here)."""
        return getattr(self, 'bbox_head', None) is not None

    @property
    def with_mask(self) -> bool:
        """bool: Whether the RoI head has a ``mask_head`` (never, here)."""
        return False

    @property
    def with_shared_head(self) -> bool:
        """bool: Whether the RoI head has a ``shared_head``."""
        return getattr(self, 'shared_head', None) is not None

    def init_bbox_head(self, bbox_roi_extractor: dict, bbox_head: dict) -> None:
        """Build ``bbox_roi_extractor`` and ``bbox_head`` in the Jittor model registry.

        Args:
            bbox_roi_extractor (dict): Config of the box RoI extractor.
            bbox_head (dict): Config of the box head.
        """
        owner = type(self).__name__
        self.bbox_roi_extractor = build_jittor_child(bbox_roi_extractor, owner,
                                                     'bbox_roi_extractor')
        self.bbox_head = build_jittor_child(bbox_head, owner, 'bbox_head')

    def init_assigner_sampler(self) -> None:
        """Build the assigner and sampler of ``train_cfg`` (None without a ``train_cfg``)."""
        self.bbox_assigner = None
        self.bbox_sampler = None
        if self.train_cfg:
            owner = f'{type(self).__name__} train_cfg'
            self.bbox_assigner = build_jittor_task_module(
                cfg_require(self.train_cfg, 'assigner', owner))
            self.bbox_sampler = build_jittor_task_module(
                cfg_require(self.train_cfg, 'sampler', owner), default_args=dict(context=self))

    # ------------------------------------------------------------------ forward
    def execute(self, x: Sequence[jt.Var], rpn_results_list: List[Dict[str, jt.Var]],
                batch_img_metas: Optional[List[dict]] = None) -> Tuple[jt.Var, jt.Var]:
        """Box-head outputs for all proposals, without post-processing (mmdet's ``forward``).

        Args:
            x (Sequence[jt.Var]): Multi-level features.
            rpn_results_list (list[dict]): Proposals of each image (``bboxes`` (n_i, 4)).
            batch_img_metas (list[dict], optional): Unused (mmdet's ``batch_data_samples``).

        Returns:
            tuple: ``cls_score`` (sum n_i, num_classes + 1) and ``bbox_pred``.
        """
        rois = bbox2roi([self._proposal_boxes(res, i) for i, res in enumerate(rpn_results_list)])
        bbox_results = self._bbox_forward(x, rois)
        return bbox_results['cls_score'], bbox_results['bbox_pred']

    def _bbox_forward(self, x: Sequence[jt.Var], rois: jt.Var) -> Dict[str, jt.Var]:
        """RoI features, the shared head (if any), then the box head.

        Args:
            x (Sequence[jt.Var]): Multi-level features.
            rois (jt.Var): RoIs (n, 5).

        Returns:
            dict: ``cls_score``, ``bbox_pred``, ``bbox_feats``.
        """
        bbox_feats = self.bbox_roi_extractor(tuple(x)[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    # ------------------------------------------------------------------ training
    def loss(self,
             x: Sequence[jt.Var],
             rpn_results_list: List[Dict[str, jt.Var]],
             batch_gt_instances: List[Dict[str, jt.Var]],
             batch_img_metas: List[dict],
             batch_gt_instances_ignore: Optional[List[Optional[Dict[str, jt.Var]]]] = None
             ) -> Dict[str, jt.Var]:
        """Assign gts to proposals, sample them, and compute the box head's losses.

        As mmdet, the sampler's ``add_gt_as_proposals`` prepends each image's gt boxes to its
        proposals (so an image without proposals still trains on its gts), and the caller's
        proposal dicts are left untouched.

        Args:
            x (Sequence[jt.Var]): Multi-level features, each (N, C, H_i, W_i).
            rpn_results_list (list[dict]): Proposals of each image (``bboxes`` (n_i, 4)).
            batch_gt_instances (list[dict]): Gts of each image (``bboxes`` (k_i, 4), ``labels``
                (k_i,)).
            batch_img_metas (list[dict]): Image meta information.
            batch_gt_instances_ignore (list[dict | None], optional): Boxes to ignore of each image.
                Defaults to None.

        Returns:
            dict[str, jt.Var]: ``loss_cls``, ``acc``, ``loss_bbox``.
        """
        owner = type(self).__name__
        if self.bbox_assigner is None or self.bbox_sampler is None:
            raise RuntimeError(f'{owner}.loss needs a train_cfg with an assigner and a sampler '
                               '(the head was built without train_cfg)')
        num_imgs = len(rpn_results_list)
        if len(batch_gt_instances) != num_imgs or len(batch_img_metas) != num_imgs:
            raise InputError(f'{owner}.loss: got {num_imgs} proposal lists, '
                             f'{len(batch_gt_instances)} gt instance lists and '
                             f'{len(batch_img_metas)} image metas')
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs

        sampling_results = []
        for i in range(num_imgs):
            priors = self._proposal_boxes(rpn_results_list[i], i)
            gt_bboxes, gt_labels = self._gt_fields(batch_gt_instances[i], i)
            ignore = batch_gt_instances_ignore[i]
            gt_bboxes_ignore = None if ignore is None else ignore['bboxes']
            assign_result = self.bbox_assigner.assign(priors, gt_bboxes, gt_labels,
                                                      gt_bboxes_ignore)
            sampling_result = self.bbox_sampler.sample(assign_result, priors, gt_bboxes, gt_labels)
            sampling_result.img_meta = batch_img_metas[i]
            sampling_results.append(sampling_result)

        bbox_results = self.bbox_loss(x, sampling_results)
        return dict(bbox_results['loss_bbox'])

    def bbox_loss(self, x: Sequence[jt.Var], sampling_results: List[Any]) -> Dict[str, Any]:
        """Box-head forward and losses of sampled RoIs.

        Args:
            x (Sequence[jt.Var]): Multi-level features.
            sampling_results (list[SamplingResult]): Sampling results of each image.

        Returns:
            dict: ``cls_score``, ``bbox_pred``, ``bbox_feats`` and ``loss_bbox`` (the loss dict).
        """
        rois = bbox2roi([res.priors for res in sampling_results])
        bbox_results = self._bbox_forward(x, rois)
        bbox_loss_and_target = self.bbox_head.loss_and_target(
            cls_score=bbox_results['cls_score'],
            bbox_pred=bbox_results['bbox_pred'],
            rois=rois,
            sampling_results=sampling_results,
            rcnn_train_cfg=self.train_cfg)
        bbox_results.update(loss_bbox=bbox_loss_and_target['loss_bbox'])
        return bbox_results

    # ------------------------------------------------------------------ inference
    def predict(self,
                x: Sequence[jt.Var],
                rpn_results_list: List[Dict[str, jt.Var]],
                batch_img_metas: List[dict],
                rescale: bool = False) -> List[Dict[str, jt.Var]]:
        """Detections of each image from its proposals.

        Args:
            x (Sequence[jt.Var]): Multi-level features.
            rpn_results_list (list[dict]): Proposals of each image (``bboxes`` (n_i, 4)).
            batch_img_metas (list[dict]): Image meta information (``img_shape``,
                ``scale_factor``).
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.

        Returns:
            list[dict]: Per image ``bboxes`` (k, 4), ``scores`` (k,), ``labels`` (k,) int64.
        """
        return self.predict_bbox(x, batch_img_metas, rpn_results_list, self.test_cfg, rescale)

    def predict_bbox(self,
                     x: Sequence[jt.Var],
                     batch_img_metas: List[dict],
                     rpn_results_list: List[Dict[str, jt.Var]],
                     rcnn_test_cfg: Optional[Any],
                     rescale: bool = False) -> List[Dict[str, jt.Var]]:
        """Box-head forward on all proposals, split per image, then post-processing.

        Args:
            x (Sequence[jt.Var]): Multi-level features.
            batch_img_metas (list[dict]): Image meta information.
            rpn_results_list (list[dict]): Proposals of each image.
            rcnn_test_cfg (dict, optional): ``test_cfg`` of the R-CNN; None returns raw results.
            rescale (bool): Whether to map boxes back to the original image. Defaults to False.

        Returns:
            list[dict]: Detections of each image.
        """
        if len(rpn_results_list) != len(batch_img_metas):
            raise InputError(f'{type(self).__name__}.predict: got {len(rpn_results_list)} '
                             f'proposal lists for {len(batch_img_metas)} images')
        proposals = [self._proposal_boxes(res, i) for i, res in enumerate(rpn_results_list)]
        rois = bbox2roi(proposals)
        if rois.shape[0] == 0:
            return [
                empty_bbox_results(self.bbox_head.num_classes, score_per_cls=rcnn_test_cfg is None)
                for _ in batch_img_metas
            ]
        bbox_results = self._bbox_forward(x, rois)

        num_proposals_per_img = [int(p.shape[0]) for p in proposals]
        rois = split_rows(rois, num_proposals_per_img)
        cls_scores = split_rows(bbox_results['cls_score'], num_proposals_per_img)
        bbox_preds = split_rows(bbox_results['bbox_pred'], num_proposals_per_img)
        # each image's proposal scores, as MetaStandardRoIHead passes them on the mmdet side
        metas = [dict(meta, proposal_scores=res['scores']) if 'scores' in res else meta
                 for meta, res in zip(batch_img_metas, rpn_results_list)]
        return self.bbox_head.predict_by_feat(
            rois=rois,
            cls_scores=cls_scores,
            bbox_preds=bbox_preds,
            batch_img_metas=metas,
            rcnn_test_cfg=rcnn_test_cfg,
            rescale=rescale)

    # ------------------------------------------------------------------ helpers
    def _proposal_boxes(self, results: Dict[str, jt.Var], img_id: int) -> jt.Var:
        """The (n, 4) ``bboxes`` of one image's proposals, checked."""
        boxes = cfg_get(results, 'bboxes')
        if boxes is None:
            keys = sorted(results) if isinstance(results, dict) else type(results).__name__
            raise KeyError(f'{type(self).__name__}: the proposals of image {img_id} have no '
                           f"'bboxes' (got {keys})")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f'{type(self).__name__}: the proposals of image {img_id} must be '
                             f'(n, 4) boxes, got {tuple(boxes.shape)}')
        return boxes

    def _gt_fields(self, gt_instances: Dict[str, jt.Var], img_id: int) -> Tuple[jt.Var, jt.Var]:
        """``bboxes`` (k, 4) and ``labels`` (k,) of one image's gts, checked."""
        owner = type(self).__name__
        bboxes, labels = cfg_get(gt_instances, 'bboxes'), cfg_get(gt_instances, 'labels')
        if bboxes is None or labels is None:
            raise KeyError(f"{owner}: the gt instances of image {img_id} need 'bboxes' and "
                           f"'labels'")
        if bboxes.ndim != 2 or bboxes.shape[1] != 4 or labels.ndim != 1 \
                or labels.shape[0] != bboxes.shape[0]:
            raise InputError(f'{owner}: the gts of image {img_id} must be bboxes (k, 4) and labels '
                             f'(k,), got {tuple(bboxes.shape)} and {tuple(labels.shape)}')
        return bboxes, labels
