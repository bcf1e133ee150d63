"""UniDetector's first-stage OLN RPN head (Jittor) on a hand-computed example, and the TBLR coder
against mmdet's.

One level, stride 16, one 16x16 anchor per location on a 2x2 map of a 32x32 image: anchors
centred at (0,0), (16,0), (0,16), (16,16). One gt box [4, 6, 22, 20]. Objectness assigner MaxIoU
pos 0.3 / neg 0.1 (UniDetector's): IoUs (by hand) 8/500 = 0.016 (negative), 28/480 = 0.058
(negative), 48/460 = 0.104 (ignored), 168/340 = 0.494 (positive). The positive's centre (16,16)
is 10 below the top, 4 above the bottom, 12 right of the left side and 6 left of the right side:
centerness sqrt(4/10 * 6/12) = sqrt(0.2).
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge import call_jittor
from jt_mm_plugins.models.dense_heads.oln_rpn_head import OlnRPNHead
from jt_mm_plugins.models.task_modules.tblr_bbox_coder import TBLRBBoxCoder
from jt_mm_plugins.runtime import jt

META = dict(img_shape=(32, 32), pad_shape=(32, 32), batch_input_shape=(32, 32),
            scale_factor=(1., 1.))


CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
                      'unidetector', 'oln_faster_rcnn_r50_fpn_1ststage_mixed.py')


def build_head():
    """The 1st-stage config's OlnRPNHead, train and test settings, at a tiny size: 4 -> 8
    channels, one level of stride 16 with one 16x16 anchor, anchors outside the image allowed."""
    model = Config.fromfile(CONFIG).model
    cfg = dict(model.rpn_head, in_channels=4, feat_channels=8,
               train_cfg=dict(model.train_cfg.rpn, allowed_border=-1),
               test_cfg=dict(model.test_cfg.rpn, max_per_img=10))
    cfg['anchor_generator'] = dict(type='AnchorGenerator', scales=[1], ratios=[1.0],
                                   strides=[16])
    cfg.pop('type')
    return OlnRPNHead(**cfg)


GT = dict(bboxes=jt.array(np.array([[4., 6., 22., 20.]], np.float32)),
          labels=jt.array(np.array([0], np.int32)))


def test_objectness_targets_match_the_hand_computed_example():
    head = build_head()
    anchors, flags = head.get_anchors([(2, 2)], [META])
    np.testing.assert_allclose(anchors[0][0].numpy(), [[-8, -8, 8, 8], [8, -8, 24, 8],
                                                       [-8, 8, 8, 24], [8, 8, 24, 24]])
    targets, weights = head.objectness_targets_single(anchors[0][0], flags[0][0], GT, META)
    np.testing.assert_allclose(targets, [0, 0, 0, np.sqrt(0.2)], rtol=1e-6)
    np.testing.assert_array_equal(weights, [1, 1, 0, 1])

    # the objectness loss: L1 on the sigmoid over the three sampled anchors
    x = np.random.RandomState(0).randn(1, 4, 2, 2).astype(np.float32)
    _, _, objectness = head([jt.array(x)])
    losses = head.loss([jt.array(x)], [GT], [META])
    s = 1 / (1 + np.exp(-objectness[0].numpy().reshape(-1)))  # one prior: (h, w) order
    want = (abs(s[0]) + abs(s[1]) + abs(s[3] - np.sqrt(0.2))) / 3
    assert float(losses['loss_rpn_obj'].numpy().reshape(-1)[0]) == pytest.approx(want, rel=1e-5)
    assert sorted(losses) == ['loss_rpn_bbox', 'loss_rpn_cls', 'loss_rpn_obj']


def test_forward_normalises_features_and_predict_keeps_every_anchor_without_nms():
    head = build_head()
    x = np.random.RandomState(1).randn(1, 4, 2, 2).astype(np.float32)
    cls, reg, obj = head([jt.array(x)])
    params = {k: torch.from_numpy(v.numpy()) for k, v in head.named_parameters()}
    with torch.no_grad():
        feat = F.relu(F.conv2d(torch.from_numpy(x), params['rpn_conv.weight'],
                               params['rpn_conv.bias'], padding=1))
        feat = F.normalize(feat, dim=1)
        want = F.conv2d(feat, params['rpn_obj.weight'], params['rpn_obj.bias'])
    np.testing.assert_allclose(obj[0].numpy(), want.numpy(), atol=1e-5)
    # all four anchors come back (overlapping ones too: no NMS), by sigmoid(objectness)
    result = head.predict([jt.array(x)], [META])[0]
    assert result['bboxes'].shape[0] == 4
    expected = np.sort(torch.sigmoid(want).numpy().reshape(-1))[::-1]
    np.testing.assert_allclose(result['scores'].numpy(), expected, rtol=1e-5)


def test_bridged_oln_head_trains_through_mmdets_interface():
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    wrapper = OlnRPNHead.bridged.from_jittor_module(build_head())
    sample = DetDataSample(metainfo=META)
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[4., 6., 22., 20.]]),
                                       labels=torch.tensor([0]))
    x = torch.randn(1, 4, 2, 2, requires_grad=True)
    losses = wrapper.loss([x], [sample])
    assert sorted(losses) == ['loss_rpn_bbox', 'loss_rpn_cls', 'loss_rpn_obj']
    sum(sum(v) if isinstance(v, list) else v for v in losses.values()).backward()
    assert x.grad.abs().max() > 0 and wrapper.rpn_obj.weight.grad.abs().max() > 0
    assert MODELS.get('OlnRPNHead') is OlnRPNHead.bridged


def test_tblr_coder_matches_mmdets():
    from mmdet.models.task_modules.coders import TBLRBBoxCoder as Reference
    rng = np.random.RandomState(0)
    priors = np.concatenate([rng.uniform(0, 30, (6, 2)), rng.uniform(31, 60, (6, 2))], 1)
    gts = np.concatenate([rng.uniform(0, 30, (6, 2)), rng.uniform(31, 60, (6, 2))], 1)
    priors, gts = priors.astype(np.float32), gts.astype(np.float32)
    for normalizer in (1.0, 4.0):
        ours, ref = TBLRBBoxCoder(normalizer=normalizer), Reference(normalizer=normalizer)
        enc = ours.encode(jt.array(priors), jt.array(gts)).numpy()
        np.testing.assert_allclose(enc, ref.encode(torch.tensor(priors), torch.tensor(gts)),
                                   atol=1e-5)
        dec = call_jittor(lambda p, e: ours.decode(p, e, max_shape=(50, 40)),
                          (torch.tensor(priors), torch.tensor(enc * 1.3)))
        want = ref.decode(torch.tensor(priors), torch.tensor(enc * 1.3), max_shape=(50, 40))
        np.testing.assert_allclose(dec.numpy(), want.numpy(), atol=1e-4)
