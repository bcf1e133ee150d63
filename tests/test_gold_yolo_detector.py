"""GoldYOLO (pure Jittor, bridged once) against a PyTorch Gold-YOLO assembled from yolov6detect's
``EfficientRep`` and ``Detect`` with the plain-torch ``RepGDNeck`` (``TorchGoldYOLO`` of
jt_mm_plugins/alignment/repgd_reference.py), its losses from yolov6detect's ``ComputeLoss``;
identical weights (one state dict loads strictly).

Tiny model (widths 8-32, 3 classes), two 64-px images (two and one ground truths). The TAL
decisions of the float64 reference run are first checked to be decided by a margin
(``assert_tal_margins`` of tests/test_effide_head.py), then the three losses are compared (1e-4
relative: float32 through ~40 layers) and the head's parameter gradients (1e-3 relative of the
largest gradient of each tensor). The backbone's and neck's float32 gradients are not compared
here: their ReLU decisions are not margin-checked in this test (measured: up to 8% relative apart
on a few tensors; tests/test_efficient_rep.py and test_repgd_neck.py compare them where float32
decides and in float64), and a few of their biases have exactly-zero gradients by construction.
Deploy mode: the fused detector's raw outputs equal the unfused ones (eval) and its state dict
loads strictly into a ``deploy=True`` config.
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from jt_mm_plugins.runtime import jt  # noqa: F401,I001
import jt_mm_plugins  # noqa: F401  (registers GoldYOLO)
from jt_mm_plugins.alignment.repgd_reference import TorchGoldYOLO
from jt_mm_plugins.engine import SetEpochHook
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from test_effide_head import CHANNELS, NC, assert_tal_margins, compute_loss
from test_repgd_neck import AFFINE_SCALE, TINY
from yolov6_reference import randomise_calibrated_, unchain_sppf_pools_, yolov6

IMG = 64
BACKBONE = dict(type='EfficientRep', channels_list=TINY['channels_list'][:5],
                num_repeats=TINY['num_repeats'][:5], fuse_P2=True, cspsppf=True)
# drop path off: random in training
NECK = dict(type='RepGDNeck', **copy.deepcopy(TINY))
NECK['extra_cfg']['drop_path_rate'] = 0.0
HEAD = dict(type='EffiDeHead', num_classes=NC, in_channels=CHANNELS)
TEST_CFG = dict(score_thr=0.03, nms_pre=-1, nms=dict(type='nms', iou_threshold=0.65),
                max_per_img=100)
# (image, class, cx, cy, w, h) / 64 and the same boxes xyxy in pixels
TARGETS = torch.tensor([[0, 1, 0.40, 0.45, 0.50, 0.61], [0, 2, 0.62, 0.58, 0.42, 0.36],
                        [1, 0, 0.52, 0.47, 0.70, 0.66]])


def detector_cfg(deploy=False):
    backbone, neck = dict(BACKBONE, deploy=deploy), dict(copy.deepcopy(NECK), deploy=deploy)
    return dict(type='GoldYOLO', backbone=backbone, neck=neck, bbox_head=HEAD, test_cfg=TEST_CFG)


def make_images(seed=0):
    return torch.from_numpy(np.random.RandomState(seed).rand(2, 3, IMG, IMG).astype(np.float32))


def reference_model(seed=0):
    model = unchain_sppf_pools_(TorchGoldYOLO(BACKBONE, NECK, HEAD))
    randomise_calibrated_(model, make_images(seed + 1), seed, AFFINE_SCALE)
    with torch.no_grad():
        head = model.bbox_head
        for conv in list(head.cls_preds) + list(head.reg_preds):
            conv.weight.mul_(0.3)
        head.proj_conv.weight.copy_(head.proj.view(1, -1, 1, 1))
    return model


def data_samples():
    samples = []
    for i in range(2):
        rows = TARGETS[TARGETS[:, 0] == i]
        cxcy, wh = rows[:, 2:4] * IMG, rows[:, 4:6] * IMG
        sample = DetDataSample(metainfo=dict(img_shape=(IMG, IMG), ori_shape=(IMG, IMG),
                                             pad_shape=(IMG, IMG), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.cat([cxcy - wh / 2, cxcy + wh / 2], 1),
                                           labels=rows[:, 1].long())
        samples.append(sample)
    return samples


def reference_losses(model, images, dtype=torch.float32):
    model = model.to(dtype).train()
    loss = compute_loss()
    loss.proj = nn.Parameter(loss.proj.to(dtype), requires_grad=False)
    feats, scores, distri = model(images.to(dtype))
    total, parts = loss((feats, scores, distri), TARGETS.clone().to(dtype), 0, 1)
    return total, parts, (feats, scores, distri)


def test_losses_and_gradients_match_the_pytorch_gold_yolo():
    reference = reference_model()
    images = make_images()
    # TAL decided: margins of the float64 run's assignment inputs
    ref64 = copy.deepcopy(reference)
    with torch.no_grad():
        _, _, (feats, scores, distri) = reference_losses(ref64, images, torch.float64)
    points, strides = _anchor_inputs(feats)
    boxes = compute_loss().bbox_decode(points / strides, distri.float()).double() * strides
    targets = compute_loss().preprocess(TARGETS.clone(), 2, torch.full((1, 4), IMG)).double()
    mask_gt = (targets[:, :, 1:].sum(-1, keepdim=True) > 0).double()
    assert_tal_margins((scores, boxes, points, targets[:, :, :1], targets[:, :, 1:], mask_gt))

    model = MODELS.build(detector_cfg())
    model.load_state_dict(reference.state_dict(), strict=True)
    model.train()
    losses = model.loss(images, data_samples())
    total, parts, _ = reference_losses(reference, images)
    total.backward()
    expected = dict(loss_iou=float(parts[0]), loss_dfl=float(parts[1]), loss_cls=float(parts[2]))
    for key, value in expected.items():
        assert abs(float(losses[key]) - value) <= 1e-4 * abs(value), (key, losses[key], value)
    sum(losses.values()).backward()
    ref_grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    own = dict(model.named_parameters())
    assert len(ref_grads) > 100
    worst = max(float((own[n].grad - g).abs().max()) / max(float(g.abs().max()), 1e-12)
                for n, g in ref_grads.items() if n.startswith('bbox_head'))
    assert worst <= 1e-3, worst


def _anchor_inputs(feats):
    _, points, _, strides = yolov6('assigners.anchor_generator').generate_anchors(
        feats, [8, 16, 32], 5.0, 0.5, device='cpu')
    return points.double(), strides.double()


def test_deploy_mode_same_outputs_and_checkpoint():
    reference = reference_model()
    model = MODELS.build(detector_cfg())
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    images = make_images(2)
    with torch.no_grad():
        before = model(images, mode='tensor')
        preds = model.predict(images, data_samples())
    assert preds[0].pred_instances.bboxes.shape[1] == 4
    model.switch_to_deploy()
    names = list(model.state_dict())
    assert any('rbr_reparam' in n for n in names) and not any('rbr_dense' in n for n in names)
    with torch.no_grad():
        after = model(images, mode='tensor')
    for a, b in zip(sum(after, []), sum(before, [])):
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max()))
    deployed = MODELS.build(detector_cfg(deploy=True))
    deployed.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match='rbr_reparam'):
        deployed.load_state_dict(reference.state_dict(), strict=True)


def test_reparameterize_tool_writes_a_deploy_checkpoint(tmp_path):
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools'))
    import reparameterize
    config = tmp_path / 'tiny_gold_yolo.py'
    config.write_text("custom_imports = dict(imports=['jt_mm_plugins'], "
                      f"allow_failed_imports=False)\nmodel = {detector_cfg()!r}\n")
    reference = reference_model()
    ckpt, out = tmp_path / 'train.pth', tmp_path / 'deploy.pth'
    torch.save({'state_dict': reference.state_dict()}, ckpt)
    assert reparameterize.main([str(config), str(ckpt), str(out), '--time', '1',
                                '--image-size', '64']) == 0
    deployed = MODELS.build(detector_cfg(deploy=True))
    deployed.load_state_dict(torch.load(out)['state_dict'], strict=True)
    assert reparameterize.main([str(config), str(out), str(tmp_path / 'again.pth')]) == 2


@pytest.mark.parametrize('config,millions', [('gold_yolo_s_coco.py', 21.5),
                                             ('gold_yolo_n_coco.py', 5.6)])
def test_deploy_parameter_counts_are_the_reported_ones(config, millions):
    """Gold-YOLO's README: S 21.5 M, N 5.6 M parameters (of the fused model)."""
    import os
    from mmengine.config import Config
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs', 'gold_yolo', config)
    model = MODELS.build(Config.fromfile(path).model)
    model.eval()
    model.switch_to_deploy()
    count = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    assert round(count, 1) == millions


def test_image_size_not_a_multiple_of_32_is_refused():
    model = MODELS.build(detector_cfg())
    with pytest.raises(ValueError, match='multiple of 32'):
        model(torch.zeros(1, 3, 64, 70), mode='tensor')


def test_mixed_form_equals_pure():
    """mmdet's ``SingleStageDetector`` holding the bridged EfficientRep, RepGDNeck and EffiDeHead:
    the same losses, gradients and (clipped) predictions as the pure GoldYOLO; ``SetEpochHook``
    reaches the Jittor head in both."""
    reference = reference_model()
    pure = MODELS.build(detector_cfg())
    mixed = MODELS.build(dict(detector_cfg(), type='SingleStageDetector'))
    for model in (pure, mixed):
        model.load_state_dict(reference.state_dict(), strict=True)
        model.train()
    images = make_images()
    for model, head in ((pure, pure.jittor_module.bbox_head),
                        (mixed, mixed.bbox_head.jittor_module)):
        SetEpochHook().before_train_epoch(type('Runner', (), dict(model=model, epoch=2))())
        assert head.epoch == 2  # (atss_warmup_epoch 0: TAL either way)
    losses = [model.loss(images, data_samples()) for model in (pure, mixed)]
    for key in ('loss_cls', 'loss_iou', 'loss_dfl'):
        assert abs(float(losses[0][key]) - float(losses[1][key])) <= 1e-6 * float(losses[0][key])
    for model, loss in zip((pure, mixed), losses):
        sum(loss.values()).backward()
    grads = dict(mixed.named_parameters())
    for name, p in pure.named_parameters():
        if p.grad is not None:
            assert float((p.grad - grads[name].grad).abs().max()) <= \
                1e-5 * max(float(p.grad.abs().max()), 1e-6), name
    preds = []
    for model in (pure, mixed):
        model.eval()
        with torch.no_grad():
            preds.append(model.predict(images, data_samples())[0].pred_instances)
    assert torch.equal(preds[0].labels, preds[1].labels) and len(preds[0]) > 0
    assert float((preds[0].bboxes - preds[1].bboxes).abs().max()) <= 1e-4
    assert float(preds[0].bboxes.min()) >= 0 and float(preds[0].bboxes.max()) <= IMG
