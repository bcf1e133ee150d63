"""UniDetector's multi-dataset CLIP box head in Jittor (``bbox_head_clip_partitioned.py`` of
zhenyuw16/UniDetector): one label space per dataset, chosen per image by its ``dataset_id``."""
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .bbox_head import JittorBBoxHead
from .bbox_head_clip import (BBoxHeadCLIP, cosine_logits, federated_classes,
                             federated_sigmoid_loss, load_class_embeddings, load_sampling_mask)
from ..utils import take_rows


def _class_count(path: str, owner: str, index: int) -> int:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{owner}: zeroshot_path[{index}] file {path} does not exist')
    return int(np.load(path, mmap_mode='r').shape[0])


@register_jittor_module(bridge_base=BridgedBBoxHead)
class BBoxHeadCLIPPartitioned(BBoxHeadCLIP):
    """:class:`BBoxHeadCLIP` with one CLIP embedding matrix per dataset (buffers
    ``zs_weights_0`` ... ``zs_weights_{N-1}``, each embed_dim x (C_i + 1), background column zero),
    ``num_classes`` the largest C_i (500 for COCO + Objects365 + OID).

    Training: ``cls_score`` is the list of the logits against every dataset's label space. The
    loss loops over the images: image j of dataset d = ``img_meta['dataset_id']`` (the sampling
    results carry ``img_meta``: use ``MetaStandardRoIHead``) takes its RoIs' logits against
    dataset d only, its background label ``num_classes`` becomes dataset d's background, and its
    federated sigmoid BCE (classes present in the image topped up to ``fed_loss_num_cat`` by a
    uniform draw among dataset d's classes with non-zero ``image_count`` in ``cat_freq_path[d]``)
    is divided by its RoI count; the images' losses are averaged. As in the original,
    ``loss_cls.loss_weight`` is not applied. The box loss is :class:`JittorBBoxHead`'s.

    Testing (eval mode): ``cls_score`` is the logits against dataset ``test_dataset_id`` only, so
    mmdet's RoI heads split and post-process it as any head's.

    Args:
        zeroshot_path (Sequence[str]): One ``.npy`` per dataset (None: zeros, from a checkpoint).
        cat_freq_path (Sequence[str]): One ``cat_info.json`` or None per dataset.
        test_dataset_id (int): Label space used in eval mode. Defaults to 0.
        **kwargs: :class:`BBoxHeadCLIP`'s.
    """

    def __init__(self,
                 zeroshot_path: Sequence[Optional[str]] = (None, ),
                 cat_freq_path: Sequence[Optional[str]] = (None, ),
                 test_dataset_id: int = 0,
                 **kwargs) -> None:
        self.test_dataset_id = test_dataset_id
        super().__init__(zeroshot_path=list(zeroshot_path), cat_freq_path=list(cat_freq_path),
                         **kwargs)

    def _init_class_embeddings(self) -> None:
        owner = type(self).__name__
        paths, freq_paths = self.zeroshot_path, self.cat_freq_path
        if len(freq_paths) != len(paths):
            raise InputError(f'{owner}: {len(paths)} zeroshot_path entries but '
                             f'{len(freq_paths)} cat_freq_path entries (one per dataset)')
        self.dataset_num_classes = []
        self._torch_buffers = tuple(f'zs_weights_{i}' for i in range(len(paths)))
        self.sampling_masks = []
        for i, (path, freq_path) in enumerate(zip(paths, freq_paths)):
            num = self.num_classes if path is None else _class_count(path, owner, i)
            if num > self.num_classes:
                raise InputError(f'{owner}: zeroshot_path[{i}] {path} holds {num} class '
                                 f'embeddings, more than num_classes {self.num_classes}')
            weight = jt.array(load_class_embeddings(path, num, self.embed_dim, owner,
                                                    f'zeroshot_path[{i}]'))
            weight.stop_grad()
            setattr(self, f'zs_weights_{i}', weight)
            self.dataset_num_classes.append(num)
            self.sampling_masks.append(load_sampling_mask(freq_path, num, owner,
                                                          f'cat_freq_path[{i}]'))
        if max(self.dataset_num_classes) != self.num_classes:
            raise InputError(f'{owner}: num_classes {self.num_classes} must be the largest '
                             f'dataset label space, got {self.dataset_num_classes}')
        if not 0 <= self.test_dataset_id < len(paths):
            raise InputError(f'{owner}: test_dataset_id {self.test_dataset_id} is not one of the '
                             f'{len(paths)} datasets')

    def embeddings(self, dataset_id: int) -> jt.Var:
        return getattr(self, f'zs_weights_{dataset_id}')

    def classify(self, features: jt.Var):
        if not self.is_training():
            return cosine_logits(features, self.embeddings(self.test_dataset_id))
        return [cosine_logits(features, self.embeddings(i))
                for i in range(len(self.dataset_num_classes))]

    def dataset_ids(self, sampling_results: List[Any]) -> List[int]:
        """Each image's ``dataset_id``, with errors naming what is missing."""
        owner = type(self).__name__
        ids = []
        for i, res in enumerate(sampling_results):
            meta = getattr(res, 'img_meta', None)
            if meta is None or 'dataset_id' not in meta:
                raise KeyError(f"{owner}: image {i} has no 'dataset_id' in its metainfo (wrap "
                               'the datasets in DatasetIdWrapper or add the AddDatasetId '
                               'transform, and use MetaStandardRoIHead so that sampling results '
                               'carry img_meta)')
            dataset_id = int(meta['dataset_id'])
            if not 0 <= dataset_id < len(self.dataset_num_classes):
                raise InputError(f'{owner}: image {i} has dataset_id {dataset_id}, but there are '
                                 f'{len(self.dataset_num_classes)} embeddings (zeroshot_path)')
            ids.append(dataset_id)
        return ids

    def loss_and_target(self, cls_score, bbox_pred, rois, sampling_results, rcnn_train_cfg,
                        concat: bool = True,
                        reduction_override: Optional[str] = None) -> Dict[str, Any]:
        """Targets, the box loss, and the partitioned classification loss (class docs)."""
        targets = self.get_targets(sampling_results, rcnn_train_cfg, concat=True)
        losses = JittorBBoxHead.loss(self, None, bbox_pred, rois, *targets,
                                     reduction_override=reduction_override)
        if cls_score is not None:
            losses['loss_cls'] = self.partitioned_loss(cls_score, targets[0].numpy(),
                                                       sampling_results)
        if not concat:
            targets = self.get_targets(sampling_results, rcnn_train_cfg, concat=False)
        return dict(loss_bbox=losses, bbox_targets=targets)

    def partitioned_loss(self, cls_scores: Sequence[jt.Var], labels: np.ndarray,
                         sampling_results: List[Any]) -> jt.Var:
        if not isinstance(cls_scores, (list, tuple)) or \
                len(cls_scores) != len(self.dataset_num_classes):
            raise InputError(f'{type(self).__name__}: training needs one cls_score per dataset '
                             f'({len(self.dataset_num_classes)}), got {type(cls_scores).__name__}')
        ids = self.dataset_ids(sampling_results)
        sizes = [int(res.pos_priors.shape[0]) + int(res.neg_priors.shape[0])
                 for res in sampling_results]
        per_image, start = [], 0
        for i, (dataset_id, size) in enumerate(zip(ids, sizes)):
            rows = np.arange(start, start + size)
            start += size
            if size == 0:
                continue
            num = self.dataset_num_classes[dataset_id]
            image_labels = labels[rows].astype(np.int64)
            fg = image_labels < self.num_classes
            if (image_labels[fg] >= num).any():
                raise InputError(f'{type(self).__name__}: image {i} (dataset_id {dataset_id}) '
                                 f'has labels up to {image_labels[fg].max()}, beyond its '
                                 f'{num} classes')
            image_labels[~fg] = num
            classes = federated_classes(image_labels, num, self.fed_loss_num_cat,
                                        self.sampling_masks[dataset_id])
            logits = take_rows(cls_scores[dataset_id], rows)
            per_image.append(federated_sigmoid_loss(logits, image_labels, classes, num))
        if not per_image:
            return sum(s.sum() for s in cls_scores) * 0
        return sum(per_image) / len(per_image)
