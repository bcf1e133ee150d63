"""OLN's box-score head (Jittor) on a hand-computed example: two positive RoIs [0,0,10,10] whose
gts are [0,0,10,20] (IoU 100/200 = 0.5) and [5,0,15,10] (IoU 50/150 = 1/3), one negative; the
box-score loss is (|s0 - 0.5| + |s1 - 1/3|) / 3 with s = sigmoid(box-score logit); the test score
is p_fg^0.3 * (rpn * s)^0.7. And mmdet's OlnRoIHead trains and predicts with it (bridged)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.models.roi_heads.oln_bbox_score_head import Shared2FCBBoxScoreHead
from jt_mm_plugins.runtime import jt

HEAD = dict(in_channels=4, fc_out_channels=8, roi_feat_size=2, num_classes=1,
            reg_class_agnostic=True, loss_bbox=dict(type='L1Loss', loss_weight=1.0))


def test_box_score_target_loss_and_score_by_hand():
    head = Shared2FCBBoxScoreHead(**HEAD)
    x = jt.array(np.random.RandomState(0).randn(3, 4, 2, 2).astype(np.float32))
    cls_score, bbox_pred = head(x)
    assert tuple(cls_score.shape) == (3, 3) and tuple(bbox_pred.shape) == (3, 4)
    res = SimpleNamespace(
        pos_priors=jt.array(np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)),
        neg_priors=jt.array(np.array([[20, 20, 30, 30]], np.float32)),
        pos_gt_bboxes=jt.array(np.array([[0, 0, 10, 20], [5, 0, 15, 10]], np.float32)),
        pos_gt_labels=jt.array(np.array([0, 0], np.int32)))
    losses = head.loss_and_target(cls_score, bbox_pred, None, [res],
                                  dict(pos_weight=-1))['loss_bbox']
    assert sorted(losses) == ['acc', 'loss_bbox', 'loss_bbox_score', 'loss_cls']
    s = 1 / (1 + np.exp(-cls_score.numpy()[:, 2]))
    want = (abs(s[0] - 0.5) + abs(s[1] - 1 / 3)) / 3
    assert float(losses['loss_bbox_score'].numpy().reshape(-1)[0]) == pytest.approx(want, rel=1e-5)

    rpn = np.array([0.9, 0.5, 0.2], np.float32)
    got = head.cls_probabilities(cls_score, jt.zeros((3, 5)),
                                 dict(proposal_scores=jt.array(rpn))).numpy()
    logits = cls_score.numpy()[:, :2]
    p_fg = np.exp(logits[:, 0]) / np.exp(logits).sum(1)
    np.testing.assert_allclose(got[:, 0], p_fg**0.3 * (rpn * s)**0.7, rtol=1e-5)
    assert np.all(got[:, 1] == 0)


def test_oln_roi_head_in_mmdet_trains_and_predicts():
    pytest.importorskip('mmcv.ops')
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData
    roi_head = MODELS.build(ConfigDict(
        type='OlnRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=4, featmap_strides=[8],
                                roi_layer=dict(type='RoIAlign', output_size=2, sampling_ratio=0)),
        bbox_head=dict(type='Shared2FCBBoxScoreHead', **HEAD),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                                     min_pos_iou=0.5, ignore_iof_thr=-1),
                       sampler=dict(type='RandomSampler', num=32, pos_fraction=0.25),
                       pos_weight=-1),
        test_cfg=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.9), max_per_img=10)))
    feats = (torch.randn(1, 4, 4, 4, requires_grad=True), )
    sample = DetDataSample(metainfo=dict(img_shape=(32, 32), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[2., 2., 20., 24.]]),
                                       labels=torch.tensor([0]))
    proposals = InstanceData(bboxes=torch.tensor([[3., 2., 20., 22.], [0., 0., 31., 31.]]),
                             scores=torch.tensor([0.8, 0.3]))
    losses = roi_head.loss(feats, [proposals.clone()], [sample])
    assert {'loss_cls', 'loss_bbox', 'loss_bbox_score'} <= set(losses)
    (losses['loss_cls'] + losses['loss_bbox'] + losses['loss_bbox_score']).backward()
    assert roi_head.bbox_head.fc_bbox_score.weight.grad.abs().max() > 0
    roi_head.eval()
    with torch.no_grad():
        result = roi_head.predict(feats, [proposals], [sample], rescale=False)[0]
    assert len(result) == 2 and float(result.scores.max()) <= 0.8**0.7
