"""Jittor twin of mmdet 3.3.0's ``AnchorHead`` (``mmdet/models/dense_heads/anchor_head.py``).

The interface (plain containers of Jittor Vars instead of mmdet's structures) and the prediction
path are those of :class:`JittorBaseDenseHead` (``base_dense_head.py``).

Anchors, assigners, samplers, box coders and losses are the Jittor components built from the same
mmdet-style configs by :func:`build_jittor_task_module` and :func:`build_jittor_loss`.
"""
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from jt_mm_plugins.models.task_modules import build_jittor_loss, build_jittor_task_module
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import anchor_inside_flags, images_to_levels, multi_apply, unmap
from .base_dense_head import JittorBaseDenseHead

# Keys of an anchor head's ``train_cfg`` (mmdet reads ``assigner``, ``sampler``, ``allowed_border``
# and ``pos_weight``; ``debug`` is carried by mmdet's configs and unused).
TRAIN_CFG_KEYS = ('assigner', 'sampler', 'allowed_border', 'pos_weight', 'debug')
REQUIRED_TRAIN_CFG_KEYS = ('assigner', 'allowed_border', 'pos_weight')


def _gt_field(instances: Optional[Mapping], field: str, owner: str) -> Optional[jt.Var]:
    """``instances[field]`` of a gt dict; clear errors for the wrong container or a missing key."""
    if instances is None:
        return None
    if isinstance(instances, Mapping):
        if field not in instances:
            raise KeyError(f'{owner}: gt instances need a {field!r} entry, got keys '
                           f'{sorted(instances)}')
        return instances[field]
    if hasattr(instances, field):  # an InstanceData-like object
        return getattr(instances, field)
    raise TypeError(f'{owner}: gt instances must be dicts of Vars (Jittor-native interface), got '
                    f'{type(instances).__name__}')


def _as_boxes(boxes: jt.Var) -> jt.Var:
    """Gt boxes as float32 (n, 4); an empty input of any shape gives (0, 4)."""
    if boxes.numel() == 0:
        return jt.zeros((0, 4), dtype='float32')
    return boxes.float32().reshape(-1, 4)


class JittorAnchorHead(JittorBaseDenseHead):
    """Anchor-based dense head base (RPN, RetinaNet, SSD, ...), in Jittor, as mmdet's
    ``AnchorHead`` from `Faster R-CNN <https://arxiv.org/abs/1506.01497>`_.

    It holds the anchor generator (``prior_generator``), the box coder, the losses and, with a
    ``train_cfg``, the assigner and sampler; it computes targets (:meth:`get_targets`), losses
    (:meth:`loss_by_feat`); the forward and the prediction path (``predict_by_feat`` ->
    ``_predict_by_feat_single`` -> ``_bbox_post_process``, score factors and per-level ``nms_pre``
    included) are :class:`JittorBaseDenseHead`'s. Subclasses implement ``_init_layers`` and
    ``forward_single`` (this class is not registered: mmdet's own single-conv ``AnchorHead`` is
    never used on its own).

    Args:
        num_classes (int): Number of categories excluding the background category.
        in_channels (int): Number of channels in the input feature map.
        feat_channels (int): Number of hidden channels (used by subclasses). Defaults to 256.
        anchor_generator (dict): Config of the anchor generator. Defaults to mmdet's
            ``AnchorGenerator`` with scales [8, 16, 32], ratios [0.5, 1, 2], strides
            [4, 8, 16, 32, 64].
        bbox_coder (dict): Config of the box coder. Defaults to ``DeltaXYWHBBoxCoder``.
        reg_decoded_bbox (bool): Whether the regression loss is computed on decoded boxes (for
            IoU-type losses) instead of deltas. Defaults to False.
        loss_cls (dict): Config of the classification loss. Defaults to sigmoid
            ``CrossEntropyLoss``.
        loss_bbox (dict): Config of the regression loss. Defaults to ``SmoothL1Loss`` with
            beta 1/9.
        train_cfg (dict, optional): Training config (``assigner``, ``sampler``,
            ``allowed_border``, ``pos_weight``, ``debug``). Defaults to None.
        test_cfg (dict, optional): Testing config. Defaults to None.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 256,
                 anchor_generator: Dict = dict(
                     type='AnchorGenerator',
                     scales=[8, 16, 32],
                     ratios=[0.5, 1.0, 2.0],
                     strides=[4, 8, 16, 32, 64]),
                 bbox_coder: Dict = dict(
                     type='DeltaXYWHBBoxCoder',
                     clip_border=True,
                     target_means=(.0, .0, .0, .0),
                     target_stds=(1.0, 1.0, 1.0, 1.0)),
                 reg_decoded_bbox: bool = False,
                 loss_cls: Dict = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                 loss_bbox: Dict = dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0),
                 train_cfg: Optional[Dict] = None,
                 test_cfg: Optional[Dict] = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feat_channels = feat_channels
        self.use_sigmoid_cls = loss_cls.get('use_sigmoid', False)
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1
        if self.cls_out_channels <= 0:
            raise InputError(f'{type(self).__name__}: num_classes={num_classes} is too small')
        self.reg_decoded_bbox = reg_decoded_bbox

        self.bbox_coder = build_jittor_task_module(bbox_coder)
        self.loss_cls = build_jittor_loss(loss_cls)
        self.loss_bbox = build_jittor_loss(loss_bbox)
        self.train_cfg = self._check_train_cfg(train_cfg)
        self.test_cfg = test_cfg
        if self.train_cfg:
            self._build_train_modules(self.train_cfg)

        self.prior_generator = build_jittor_task_module(anchor_generator)
        # Usually every level has the same number of anchors per point (SSD is the exception).
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        self._init_layers()

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------

    def _check_train_cfg(self, train_cfg: Optional[Dict]) -> Optional[Dict]:
        """Reject unknown keys and missing required keys of ``train_cfg`` up front (mmdet would
        fail with a bare ``KeyError`` at the first loss)."""
        if not train_cfg:
            return train_cfg
        owner = type(self).__name__
        unknown = sorted(set(train_cfg) - set(TRAIN_CFG_KEYS))
        if unknown:
            raise KeyError(f'{owner}: unknown train_cfg key(s) {unknown}; accepted: '
                           f'{list(TRAIN_CFG_KEYS)}')
        missing = [k for k in REQUIRED_TRAIN_CFG_KEYS if k not in train_cfg]
        if missing:
            raise KeyError(f'{owner}: train_cfg lacks {missing} (mmdet anchor heads read '
                           f'{list(REQUIRED_TRAIN_CFG_KEYS)}), got {dict(train_cfg)!r}')
        return train_cfg

    def _build_train_modules(self, train_cfg: Dict) -> None:
        """Build the assigner and the sampler (``PseudoSampler`` when none is configured)."""
        self.assigner = build_jittor_task_module(train_cfg['assigner'])
        sampler_cfg = train_cfg.get('sampler', None)
        if sampler_cfg is None:
            sampler_cfg = dict(type='PseudoSampler')
        self.sampler = build_jittor_task_module(sampler_cfg, default_args=dict(context=self))
        if getattr(self.sampler, 'add_gt_as_proposals', False):
            # mmdet would index the per-anchor targets with indices shifted by the prepended gts.
            raise InputError(f'{type(self).__name__}: the sampler {sampler_cfg!r} adds gt boxes as '
                             'proposals, which anchor heads cannot use (targets are per anchor); '
                             'set add_gt_as_proposals=False')

    def _init_layers(self) -> None:
        """Build the head's layers (subclasses)."""
        raise NotImplementedError(f'{type(self).__name__} must implement _init_layers')

    # ----------------------------------------------------------------------------------------
    # targets
    # ----------------------------------------------------------------------------------------

    def get_anchors(self, featmap_sizes: List[Tuple[int, int]],
                    batch_img_metas: List[dict]) -> Tuple[List[List[jt.Var]], List[List[jt.Var]]]:
        """Anchors (shared by all images) and per-image valid flags of every level.

        Args:
            featmap_sizes (list[tuple[int, int]]): (h, w) of each level.
            batch_img_metas (list[dict]): Meta information of each image (``pad_shape`` is read).

        Returns:
            tuple: ``anchor_list`` and ``valid_flag_list``, both list (images) of list (levels).
        """
        multi_level_anchors = self.prior_generator.grid_priors(featmap_sizes)
        anchor_list = [multi_level_anchors for _ in batch_img_metas]
        valid_flag_list = [
            self.prior_generator.valid_flags(featmap_sizes, img_meta['pad_shape'])
            for img_meta in batch_img_metas
        ]
        return anchor_list, valid_flag_list

    def _get_targets_single(self,
                            flat_anchors: jt.Var,
                            valid_flags: jt.Var,
                            gt_instances: Dict[str, jt.Var],
                            img_meta: dict,
                            gt_instances_ignore: Optional[Dict[str, jt.Var]] = None,
                            unmap_outputs: bool = True,
                            num_level_anchors: Optional[List[int]] = None) -> tuple:
        """Classification and regression targets of one image's anchors.

        Assignment and sampling decide on the host (as the Jittor samplers do), so the target
        arrays are filled with numpy and handed to Jittor once.

        Args:
            flat_anchors (jt.Var): All levels' anchors concatenated, (num_anchors, 4).
            valid_flags (jt.Var): Their valid flags, (num_anchors,).
            gt_instances (dict): ``{'bboxes': Var[k, 4], 'labels': Var[k]}``.
            img_meta (dict): Meta information of the image (``img_shape`` is read).
            gt_instances_ignore (dict, optional): ``{'bboxes': Var[j, 4]}``. Defaults to None.
            unmap_outputs (bool): Whether to map the targets back to all anchors (else only the
                anchors inside the image). Defaults to True.
            num_level_anchors (list[int], optional): Anchors per level (for assigners that work
                per level, see :meth:`_assign`). Defaults to None.

        Returns:
            tuple: ``labels``, ``label_weights``, ``bbox_targets``, ``bbox_weights`` (Vars),
            ``pos_inds``, ``neg_inds`` (numpy, indices into the inside anchors) and the
            ``SamplingResult``.
        """
        owner = type(self).__name__
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg['allowed_border'])
        inside_inds = np.nonzero(inside_flags.numpy())[0]
        if len(inside_inds) == 0:
            raise InputError('There is no valid anchor inside the image boundary. Please check the '
                             'image size and anchor sizes, or set ``allowed_border`` to -1 to skip '
                             'the condition.')
        anchors = flat_anchors[jt.array(inside_inds.astype(np.int32))]

        gt_bboxes = _as_boxes(_gt_field(gt_instances, 'bboxes', owner))
        gt_labels = _gt_field(gt_instances, 'labels', owner).reshape(-1)
        gt_bboxes_ignore = None
        if gt_instances_ignore is not None:
            gt_bboxes_ignore = _as_boxes(_gt_field(gt_instances_ignore, 'bboxes', owner))
        num_level_anchors_inside = None
        if num_level_anchors is not None:
            level_of_anchor = np.repeat(np.arange(len(num_level_anchors)), num_level_anchors)
            num_level_anchors_inside = np.bincount(
                level_of_anchor[inside_inds], minlength=len(num_level_anchors)).tolist()
        assign_result = self._assign(anchors, num_level_anchors_inside, gt_bboxes, gt_labels,
                                     gt_bboxes_ignore)
        sampling_result = self.sampler.sample(assign_result, anchors, gt_bboxes,
                                              gt_labels=gt_labels)

        num_valid_anchors = len(inside_inds)
        target_dim = 4 if self.reg_decoded_bbox else self.bbox_coder.encode_size
        bbox_targets = np.zeros((num_valid_anchors, target_dim), dtype=np.float32)
        bbox_weights = np.zeros((num_valid_anchors, target_dim), dtype=np.float32)
        labels = np.full((num_valid_anchors, ), self.num_classes, dtype=np.int32)
        label_weights = np.zeros((num_valid_anchors, ), dtype=np.float32)

        pos_inds = sampling_result.pos_inds_np
        neg_inds = sampling_result.neg_inds_np
        if len(pos_inds) > 0:
            bbox_targets[pos_inds] = self._pos_bbox_targets(sampling_result).numpy()
            bbox_weights[pos_inds] = 1.0
            labels[pos_inds] = sampling_result.pos_gt_labels.numpy()
            pos_weight = self.train_cfg['pos_weight']
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0

        if unmap_outputs:
            num_total_anchors = int(flat_anchors.shape[0])
            labels = unmap(labels, num_total_anchors, inside_inds, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total_anchors, inside_inds)
            bbox_targets = unmap(bbox_targets, num_total_anchors, inside_inds)
            bbox_weights = unmap(bbox_weights, num_total_anchors, inside_inds)

        return (jt.array(labels), jt.array(label_weights), jt.array(bbox_targets),
                jt.array(bbox_weights), pos_inds, neg_inds, sampling_result)

    def _assign(self, anchors: jt.Var, num_level_anchors: Optional[List[int]], gt_bboxes: jt.Var,
                gt_labels: jt.Var, gt_bboxes_ignore: Optional[jt.Var]):
        """Assign the gts to the anchors inside the image (``num_level_anchors`` counts them per
        level, for per-level assigners such as ATSS; mmdet's ``AnchorHead`` does not pass it)."""
        return self.assigner.assign(
            anchors, gt_bboxes, gt_labels=gt_labels, gt_bboxes_ignore=gt_bboxes_ignore)

    def _pos_bbox_targets(self, sampling_result) -> jt.Var:
        """Regression targets of the positives: the gt boxes (``reg_decoded_bbox``) or their
        encoding relative to the anchors."""
        if self.reg_decoded_bbox:
            return sampling_result.pos_gt_bboxes
        return self.bbox_coder.encode(sampling_result.pos_priors, sampling_result.pos_gt_bboxes)

    def get_targets(self,
                    anchor_list: List[List[jt.Var]],
                    valid_flag_list: List[List[jt.Var]],
                    batch_gt_instances: List[Dict[str, jt.Var]],
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None,
                    unmap_outputs: bool = True,
                    return_sampling_results: bool = False) -> tuple:
        """Targets of every image, regrouped per level.

        Args:
            anchor_list (list[list[jt.Var]]): Anchors per image and level.
            valid_flag_list (list[list[jt.Var]]): Valid flags per image and level.
            batch_gt_instances (list[dict]): Gt boxes and labels per image.
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore (list[dict], optional): Ignored boxes per image.
                Defaults to None.
            unmap_outputs (bool): Whether targets cover all anchors. Defaults to True.
            return_sampling_results (bool): Whether to append the sampling results.
                Defaults to False.

        Returns:
            tuple: ``labels_list``, ``label_weights_list``, ``bbox_targets_list``,
            ``bbox_weights_list`` (per level, each (num_imgs, num_level_anchors, ...)) and
            ``avg_factor`` (sum over images of the sampling results' ``avg_factor``).
        """
        if not self.train_cfg:
            raise InputError(f'{type(self).__name__}: computing targets needs a train_cfg '
                             '(assigner, sampler, allowed_border, pos_weight)')
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == len(batch_gt_instances) == num_imgs:
            raise InputError(f'{type(self).__name__}: {len(anchor_list)} anchor lists, '
                             f'{len(valid_flag_list)} valid-flag lists, {len(batch_gt_instances)} '
                             f'gt instances and {num_imgs} image metas: one each per image')
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs

        num_level_anchors = [int(anchors.shape[0]) for anchors in anchor_list[0]]
        results = [
            self._get_targets_single(
                jt.concat(list(anchor_list[i]), dim=0),
                jt.concat(list(valid_flag_list[i]), dim=0),
                batch_gt_instances[i],
                batch_img_metas[i],
                batch_gt_instances_ignore[i],
                unmap_outputs=unmap_outputs,
                num_level_anchors=num_level_anchors) for i in range(num_imgs)
        ]
        all_labels, all_label_weights, all_bbox_targets, all_bbox_weights = (
            [r[k] for r in results] for k in range(4))
        sampling_results = [r[6] for r in results]
        avg_factor = sum(result.avg_factor for result in sampling_results)

        res = (images_to_levels(all_labels, num_level_anchors),
               images_to_levels(all_label_weights, num_level_anchors),
               images_to_levels(all_bbox_targets, num_level_anchors),
               images_to_levels(all_bbox_weights, num_level_anchors), avg_factor)
        if return_sampling_results:
            res = res + (sampling_results, )
        return res

    # ----------------------------------------------------------------------------------------
    # losses
    # ----------------------------------------------------------------------------------------

    def loss_by_feat_single(self, cls_score: jt.Var, bbox_pred: jt.Var, anchors: jt.Var,
                            labels: jt.Var, label_weights: jt.Var, bbox_targets: jt.Var,
                            bbox_weights: jt.Var, avg_factor: float) -> Tuple[jt.Var, jt.Var]:
        """Classification and regression losses of one level.

        Args:
            cls_score (jt.Var): (N, num_base_priors * cls_out_channels, H, W).
            bbox_pred (jt.Var): (N, num_base_priors * 4, H, W).
            anchors (jt.Var): (N, num_level_anchors, 4).
            labels (jt.Var): (N, num_level_anchors).
            label_weights (jt.Var): (N, num_level_anchors).
            bbox_targets (jt.Var): (N, num_level_anchors, 4).
            bbox_weights (jt.Var): (N, num_level_anchors, 4).
            avg_factor (float): Divisor of both losses.

        Returns:
            tuple[jt.Var, jt.Var]: ``loss_cls`` and ``loss_bbox``.
        """
        labels = labels.reshape(-1)
        label_weights = label_weights.reshape(-1)
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
        loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor)

        target_dim = bbox_targets.shape[-1]
        bbox_targets = bbox_targets.reshape(-1, target_dim)
        bbox_weights = bbox_weights.reshape(-1, target_dim)
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, self.bbox_coder.encode_size)
        if self.reg_decoded_bbox:
            # IoU-type losses compare absolute boxes: decode the predicted deltas first.
            anchors = anchors.reshape(-1, anchors.shape[-1])
            bbox_pred = self.bbox_coder.decode(anchors, bbox_pred)
        loss_bbox = self.loss_bbox(bbox_pred, bbox_targets, bbox_weights, avg_factor=avg_factor)
        return loss_cls, loss_bbox

    def _targets_by_feat(self, cls_scores: List[jt.Var],
                         batch_gt_instances: List[Dict[str, jt.Var]], batch_img_metas: List[dict],
                         batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]]) -> tuple:
        """Anchors of the outputs' feature maps and their targets (:meth:`get_targets`).

        Returns:
            tuple: ``anchor_list`` (images, levels) and the tuple :meth:`get_targets` returns.
        """
        featmap_sizes = [tuple(int(s) for s in featmap.shape[-2:]) for featmap in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise InputError(f'{type(self).__name__}: {len(featmap_sizes)} feature levels, but the '
                             f'anchor generator has {self.prior_generator.num_levels}')
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas)
        return anchor_list, self.get_targets(
            anchor_list,
            valid_flag_list,
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore=batch_gt_instances_ignore)

    def loss_by_feat(self,
                     cls_scores: List[jt.Var],
                     bbox_preds: List[jt.Var],
                     batch_gt_instances: List[Dict[str, jt.Var]],
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: Optional[List[Dict[str, jt.Var]]] = None) -> dict:
        """Losses from the head's outputs.

        Args:
            cls_scores (list[jt.Var]): Per level (N, num_base_priors * cls_out_channels, H, W).
            bbox_preds (list[jt.Var]): Per level (N, num_base_priors * 4, H, W).
            batch_gt_instances (list[dict]): Gt boxes and labels per image.
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore (list[dict], optional): Ignored boxes per image.
                Defaults to None.

        Returns:
            dict: ``loss_cls`` and ``loss_bbox``, each a list with one scalar Var per level.
        """
        anchor_list, targets = self._targets_by_feat(cls_scores, batch_gt_instances,
                                                     batch_img_metas, batch_gt_instances_ignore)
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
         avg_factor) = targets

        num_level_anchors = [int(anchors.shape[0]) for anchors in anchor_list[0]]
        concat_anchor_list = [jt.concat(list(anchors), dim=0) for anchors in anchor_list]
        all_anchor_list = images_to_levels(concat_anchor_list, num_level_anchors)

        losses_cls, losses_bbox = multi_apply(
            self.loss_by_feat_single, cls_scores, bbox_preds, all_anchor_list, labels_list,
            label_weights_list, bbox_targets_list, bbox_weights_list, avg_factor=avg_factor)
        return dict(loss_cls=losses_cls, loss_bbox=losses_bbox)
