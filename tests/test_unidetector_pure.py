"""UniDetector's 2nd-stage RoI head in pure-Jittor mode (``JittorStandardRoIHead`` with the
``CLIPResLayer`` shared head and ``BBoxHeadCLIPPartitioned``) against mixed mode (mmdet's
``MetaStandardRoIHead`` with the same Jittor parts), identical weights, tiny sizes (CLIP width 2:
32 -> 64 channels, 16-d embeddings), two images of two datasets (``dataset_id`` 1 and 0) in one
batch.

What differs between the modes is the RoI head's plumbing (assignment, sampling, RoI order, the
shared head's place, how each image's metainfo reaches the loss); the RoI extractor is the
Jittor one in both (``JittorSingleRoIExtractor`` against mmcv's RoIAlign is tested in
tests/test_roi_head.py), so the features are the same computation and no float32 decision
(ReLU boundary) can differ between the modes. Decisions still taken on each side: the assigners'
IoU thresholds (every proposal's float64 IoU with the gts is asserted 0.05 away from 0.5), the
sampler (every candidate is kept: fewer than ``num``), the federated draw (``fed_loss_num_cat``
above every label space: all classes, no draw).
Tolerances: losses 1e-5 relative, gradients (input features and every parameter) 1e-3 relative.
"""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge import BridgedRoIHead

pytest.importorskip('mmcv.ops')
DIM = 16
POS_IOU = 0.5


def roi_head_cfg(tmp_path, roi_head_type):
    paths = []
    for i, num in enumerate((3, 5)):
        paths.append(str(tmp_path / f'd{i}.npy'))
        np.save(paths[-1], np.random.RandomState(i).randn(num, DIM).astype(np.float16))
    return ConfigDict(
        type=roi_head_type,
        shared_head=dict(type='CLIPResLayer', layers=[1, 1, 1, 1], width=2),
        bbox_roi_extractor=dict(type='JittorSingleRoIExtractor', out_channels=32,
                                featmap_strides=[16],
                                roi_layer=dict(type='RoIAlign', output_size=8, sampling_ratio=0)),
        bbox_head=dict(type='BBoxHeadCLIPPartitioned', zeroshot_path=paths,
                       cat_freq_path=[None, None], num_classes=5, fed_loss_num_cat=50,
                       in_channels=64, roi_feat_size=4, embed_dim=DIM, num_heads=4,
                       reg_class_agnostic=True, loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=POS_IOU,
                                     neg_iou_thr=POS_IOU, min_pos_iou=POS_IOU,
                                     match_low_quality=False, ignore_iof_thr=-1),
                       sampler=dict(type='RandomSampler', num=16, pos_fraction=0.5,
                                    add_gt_as_proposals=True),
                       pos_weight=-1),
        test_cfg=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))


def iou64(a, b):
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def batch():
    samples, proposals = [], []
    for dataset_id, labels in ((1, [4, 1]), (0, [2])):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), scale_factor=(1., 1.),
                                             dataset_id=dataset_id))
        gts = torch.tensor([[4., 4., 30., 30.], [20., 10., 60., 50.]][:len(labels)])
        sample.gt_instances = InstanceData(bboxes=gts, labels=torch.tensor(labels))
        samples.append(sample)
        boxes = torch.cat([gts + 1, torch.tensor([[0., 0., 63., 63.], [30., 30., 50., 62.]])])
        ious = iou64(np.concatenate([gts.numpy(), boxes.numpy()]).astype(np.float64),
                     gts.numpy().astype(np.float64))
        assert np.abs(ious - POS_IOU).min() > 0.05 # the assignment cannot flip in float32
        proposals.append(InstanceData(bboxes=boxes, scores=torch.linspace(0.9, 0.3, len(boxes))))
    feats = torch.from_numpy(np.random.RandomState(0).randn(2, 32, 4, 4).astype(np.float32))
    return feats, samples, proposals


def losses_and_grads(head, feats, samples, proposals):
    head.train()
    head.zero_grad()
    x = feats.clone().requires_grad_(True)
    losses = head.loss((x, ), [p.clone() for p in proposals], samples)
    sum(losses.values()).backward()
    grads = {n: p.grad.detach().clone() for n, p in head.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, x.grad.detach().clone(), grads


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_pure_and_mixed_2nd_stage_roi_heads_agree(tmp_path):
    mixed = MODELS.build(roi_head_cfg(tmp_path, 'MetaStandardRoIHead'))
    pure = MODELS.build(roi_head_cfg(tmp_path, 'JittorStandardRoIHead'))
    assert isinstance(pure, BridgedRoIHead) and pure.with_shared_head
    assert type(pure.jittor_module.shared_head).__name__ == 'CLIPResLayer'
    pure.load_state_dict(mixed.state_dict(), strict=True)  # same names, both ways
    mixed.load_state_dict(pure.state_dict(), strict=True)
    feats, samples, proposals = batch()

    seen = []
    for head in (mixed, pure):  # each image's dataset_id reaches the partitioned loss
        jt_head = head.bbox_head.jittor_module if head is mixed else head.jittor_module.bbox_head
        original = jt_head.dataset_ids
        jt_head.dataset_ids = lambda results, f=original: seen.append(f(results)) or seen[-1]
    want_losses, want_x_grad, want_grads = losses_and_grads(mixed, feats, samples, proposals)
    got_losses, got_x_grad, got_grads = losses_and_grads(pure, feats, samples, proposals)
    assert seen == [[1, 0], [1, 0]]

    assert sorted(got_losses) == sorted(want_losses) == ['loss_bbox', 'loss_cls']
    for key, want in want_losses.items():
        assert float(want) > 0, key
        assert rel(got_losses[key], want) < 1e-5, key
    assert rel(got_x_grad, want_x_grad) < 1e-3
    assert sorted(got_grads) == sorted(want_grads)
    assert any(n.startswith('shared_head.layer4.') for n in got_grads)
    for name, want in want_grads.items():
        assert rel(got_grads[name], want) < 1e-3, name

    # a batch without dataset_id is refused by name in pure mode as in mixed mode
    del samples[1].dataset_id
    with pytest.raises(KeyError, match="image 1 has no 'dataset_id'"):
        pure.loss((feats, ), [p.clone() for p in proposals], samples)
