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
from detector_checks import assert_same_detections, assert_same_losses_and_gradients
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
    assert_same_losses_and_gradients(reference, mixed, data, LOSS_RTOL, GRAD_RTOL)
    # the torch backbone got its gradient through the Jittor heads
    assert mixed.backbone.conv1.weight.grad.abs().max() > 0


def test_predictions_match_mmdet(twins):
    reference, mixed, data = twins
    assert_same_detections(reference, mixed, data, BOX_ATOL, SCORE_ATOL)


def test_empty_batch_and_missing_ground_truth_are_named(twins):
    _, mixed, data = twins
    features = mixed.extract_feat(data['inputs'])
    with pytest.raises(ValueError, match='JittorRPNHead got an empty batch'):
        mixed.rpn_head.loss(features, [])
    samples = copy.deepcopy(data['data_samples'])
    del samples[1].gt_instances
    with pytest.raises(ValueError, match='JittorStandardRoIHead: data sample 1 has no gt_instances'):
        mixed.roi_head.loss(features, [], samples)
