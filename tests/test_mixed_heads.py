"""Mixed mode with Jittor heads: mmdet's FasterRCNN (mmdet ResNet-18 + FPN) calling a bridged
JittorRPNHead and JittorStandardRoIHead through mmdet's head interface, against the all-mmdet twin
with identical weights (every anchor / proposal sampled, so no random choice separates them).

Tolerances as tests/test_faster_rcnn.py: losses 1e-4 relative; detections: same count, boxes within
1e-3 px, scores within 1e-4; parameter gradients 1e-2 relative (the whole detector in float32)."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment.pairs import demo_detector_configs, detection_batch
from jt_mm_plugins.bridge import BridgedDenseHead, BridgedRoIHead

register_all_modules()
LOSS_RTOL, BOX_ATOL, SCORE_ATOL, GRAD_RTOL = 1e-4, 1e-3, 1e-4, 1e-2


@pytest.fixture(scope='module')
def twins():
    ref_cfg, mixed_cfg = demo_detector_configs('faster_rcnn_r18_fpn_jittor_heads_demo')
    torch.manual_seed(0)
    reference = MODELS.build(ref_cfg)
    mixed = MODELS.build(mixed_cfg)
    mixed.load_state_dict(reference.state_dict(), strict=True)
    images, samples = detection_batch()
    data = reference.data_preprocessor({'inputs': images, 'data_samples': samples}, False)
    return reference, mixed, data


def test_the_heads_are_bridged_jittor_modules(twins):
    _, mixed, _ = twins
    assert type(mixed).__name__ == 'FasterRCNN'  # mmdet's own detector
    assert isinstance(mixed.rpn_head, BridgedDenseHead)
    assert isinstance(mixed.roi_head, BridgedRoIHead)
    assert type(mixed.roi_head.jittor_module.bbox_head).__name__ == 'JittorShared2FCBBoxHead'


def test_losses_and_gradients_match_mmdet(twins):
    reference, mixed, data = twins
    losses = {}
    for name, model in (('reference', reference), ('mixed', mixed)):
        model.train()
        model.zero_grad(set_to_none=True)
        losses[name] = model.loss(data['inputs'], copy.deepcopy(data['data_samples']))
        model.parse_losses(losses[name])[0].backward()
    assert set(losses['mixed']) == set(losses['reference'])
    for key, ref in losses['reference'].items():
        got = losses['mixed'][key]
        for r, g in zip(ref if isinstance(ref, list) else [ref], got if isinstance(got, list) else [got]):
            assert g.shape == r.shape, key
            torch.testing.assert_close(g.float(), r.float(), rtol=LOSS_RTOL, atol=1e-6,
                                       msg=lambda m: f'{key}: {m}')
    ref_params = dict(reference.named_parameters())
    for name, p in mixed.named_parameters():
        q = ref_params[name]
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            err = float((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-6))
            assert err <= GRAD_RTOL, f'{name}: gradient relative difference {err:.2e}'
    # the torch backbone got its gradient through the Jittor heads
    assert mixed.backbone.conv1.weight.grad.abs().max() > 0


def test_predictions_match_mmdet(twins):
    reference, mixed, data = twins
    results = {}
    for name, model in (('reference', reference), ('mixed', mixed)):
        model.eval()
        with torch.no_grad():
            results[name] = model.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    for r, g in zip(results['reference'], results['mixed']):
        r, g = r.pred_instances, g.pred_instances
        assert len(g) == len(r) > 0
        torch.testing.assert_close(g.scores, r.scores, atol=SCORE_ATOL, rtol=0)
        torch.testing.assert_close(g.bboxes, r.bboxes, atol=BOX_ATOL, rtol=0)
        assert torch.equal(g.labels, r.labels)


def test_empty_batch_and_missing_ground_truth_are_named(twins):
    _, mixed, data = twins
    features = mixed.extract_feat(data['inputs'])
    with pytest.raises(ValueError, match='JittorRPNHead got an empty batch'):
        mixed.rpn_head.loss(features, [])
    samples = copy.deepcopy(data['data_samples'])
    del samples[1].gt_instances
    with pytest.raises(ValueError, match='JittorStandardRoIHead: data sample 1 has no gt_instances'):
        mixed.roi_head.loss(features, [], samples)
