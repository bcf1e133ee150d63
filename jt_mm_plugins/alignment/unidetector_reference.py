"""PyTorch twin of UniDetector's 2nd-stage RoI head, for ``tools/benchmark.py`` and the alignment
pair ``unidetector_roi_head``: open_clip's ModifiedResNet ``layer4`` as mmdet's ``shared_head``
(``TorchCLIPResLayer``, BatchNorms in eval mode) and the partitioned CLIP box head's math in plain
torch (``TorchBBoxHeadCLIPPartitioned``: open_clip's ``AttentionPool2d``, the cosine classifier
``100 * normalize(x) . [E^T | 0]`` against fixed embeddings, class-agnostic ``fc_reg``, the
federated sigmoid BCE per ``dataset_id`` and mmdet's box loss), inside mmdet's (Meta)StandardRoIHead with
mmdet's ``SingleRoIExtractor``. Parameter and buffer names are the Jittor head's, so one state dict
loads strictly into both. The embeddings' files and the federated draw are read by the Jittor
module's own numpy helpers (same files, same draw from numpy's global generator)."""
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.bbox_heads import BBoxHead
from mmdet.registry import MODELS

from jt_mm_plugins.models.roi_heads.bbox_head_clip import (LOGIT_SCALE, federated_classes,
                                                           load_class_embeddings,
                                                           load_sampling_mask)
from .pairs import EvalNormCLIPLayer4


def federated_sigmoid_loss(logits: torch.Tensor, labels, classes, num_classes: int) -> torch.Tensor:
    """Sum over the RoIs and the ``classes`` columns of the sigmoid BCE against one-hot targets
    (background label ``num_classes``: all zero), divided by the number of RoIs; ``logits``
    (B, >= num_classes), extra columns ignored."""
    labels, classes = torch.as_tensor(labels), torch.as_tensor(classes)
    target = logits.new_zeros(len(labels), num_classes)
    fg = labels < num_classes
    target[fg.nonzero()[:, 0], labels[fg]] = 1
    bce = F.binary_cross_entropy_with_logits(logits[:, :num_classes], target, reduction='none')
    return bce[:, classes].sum() / len(labels)


@MODELS.register_module()
class TorchCLIPResLayer(EvalNormCLIPLayer4):
    """open_clip's ModifiedResNet ``layer4`` (``layers[3]`` Bottlenecks, ``width * 16`` ->
    ``width * 32`` channels, stride 2) with eval-mode BatchNorms: ``CLIPResLayer``'s twin."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), width: int = 64):
        from open_clip.modified_resnet import Bottleneck
        blocks = [Bottleneck(width * 16, width * 8, 2)]
        blocks += [Bottleneck(width * 32, width * 8) for _ in range(1, int(layers[3]))]
        super().__init__(torch.nn.Sequential(*blocks))


@MODELS.register_module()
class TorchBBoxHeadCLIPPartitioned(BBoxHead):
    """``BBoxHeadCLIPPartitioned``'s twin (same arguments, names and losses; see its docs)."""

    def __init__(self, zeroshot_path: Sequence[str], cat_freq_path: Sequence[Optional[str]],
                 fed_loss_num_cat: int = 50, embed_dim: int = 1024, num_heads: int = 32,
                 test_dataset_id: int = 0, **kwargs) -> None:
        from open_clip.modified_resnet import AttentionPool2d
        super().__init__(with_cls=False, **kwargs)
        self.fed_loss_num_cat, self.test_dataset_id = fed_loss_num_cat, test_dataset_id
        self.attnpool = AttentionPool2d(self.roi_feat_size[0], self.in_channels, num_heads,
                                        embed_dim)
        self.fc_reg = torch.nn.Linear(embed_dim, self.bbox_coder.encode_size *
                                      (1 if self.reg_class_agnostic else self.num_classes))
        self.dataset_num_classes, self.sampling_masks = [], []
        for i, (path, freq) in enumerate(zip(zeroshot_path, cat_freq_path)):
            num = np.load(path, mmap_mode='r').shape[0]
            self.register_buffer(f'zs_weights_{i}', torch.from_numpy(load_class_embeddings(
                path, num, embed_dim, type(self).__name__, f'zeroshot_path[{i}]')))
            self.dataset_num_classes.append(num)
            self.sampling_masks.append(load_sampling_mask(freq, num, type(self).__name__,
                                                          f'cat_freq_path[{i}]'))

    def forward(self, x: torch.Tensor):
        features = self.attnpool(x)
        unit = F.normalize(features, dim=1)
        ids = range(len(self.dataset_num_classes)) if self.training else [self.test_dataset_id]
        logits = [LOGIT_SCALE * unit @ getattr(self, f'zs_weights_{i}') for i in ids]
        return logits if self.training else logits[0], self.fc_reg(features)

    def loss_and_target(self, cls_score, bbox_pred, rois, sampling_results, rcnn_train_cfg,
                        concat: bool = True, reduction_override=None) -> dict:
        targets = self.get_targets(sampling_results, rcnn_train_cfg, concat=True)
        losses = self.loss(None, bbox_pred, rois, *targets, reduction_override=reduction_override)
        losses['loss_cls'] = self.partitioned_loss(cls_score, targets[0], sampling_results)
        return dict(loss_bbox=losses, bbox_targets=targets)

    def partitioned_loss(self, cls_scores: List[torch.Tensor], labels: torch.Tensor,
                         sampling_results) -> torch.Tensor:
        """Each image's federated BCE in its dataset's label space / its RoIs, averaged."""
        per_image, start = [], 0
        for res in sampling_results:
            dataset_id = int(res.img_meta['dataset_id'])
            num = self.dataset_num_classes[dataset_id]
            size = len(res.pos_priors) + len(res.neg_priors)
            image_labels = labels[start:start + size].clone()
            start += size
            if size == 0:
                continue
            image_labels[image_labels >= self.num_classes] = num
            classes = federated_classes(image_labels.numpy().astype(np.int64), num,
                                        self.fed_loss_num_cat, self.sampling_masks[dataset_id])
            per_image.append(federated_sigmoid_loss(
                cls_scores[dataset_id][start - size:start], image_labels, classes, num))
        return sum(per_image) / len(per_image)
