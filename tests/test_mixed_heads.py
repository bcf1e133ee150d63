"""Mixed mode with Jittor heads: mmdet's FasterRCNN (mmdet ResNet-18 + FPN) calling a bridged
JittorRPNHead and JittorStandardRoIHead through mmdet's head interface, against the all-mmdet twin
with identical weights: the small case of tests/test_faster_rcnn.py
(``jt_mm_plugins.alignment.pairs.small_faster_rcnn_twins``; the ``jittor_heads`` pair at seed 0),
robust by construction as there: every selection's float64 margin (nms_pre cut, min_bbox_size, NMS
and its survivors' order, assigners, top-1 class, score_thr) is asserted before anything it
selects is compared, and gradients are compared where float32 decides them.

Tolerances as tests/test_faster_rcnn.py: losses 1e-4 relative; detections: same count, boxes within
1e-3 px, scores within 1e-4; parameter gradients 1e-2 relative (the whole detector in float32)."""
import copy

import pytest
from mmdet.utils import register_all_modules

import jt_mm_plugins  # noqa: F401
from detector_checks import assert_faster_rcnn_detections_match, assert_faster_rcnn_losses_match
from jt_mm_plugins.alignment.pairs import small_faster_rcnn_twins
from jt_mm_plugins.bridge import BridgedDenseHead, BridgedRoIHead

register_all_modules()
LOSS_RTOL, BOX_ATOL, SCORE_ATOL, GRAD_RTOL = 1e-4, 1e-3, 1e-4, 1e-2
MIXED = 'faster_rcnn_r18_fpn_jittor_heads_demo'


@pytest.fixture(scope='module')
def twins():
    return small_faster_rcnn_twins(MIXED)  # (loads mmdet's state dict strictly)


def test_the_heads_are_bridged_jittor_modules(twins):
    _, mixed, _ = twins
    assert type(mixed).__name__ == 'FasterRCNN'  # mmdet's own detector
    assert isinstance(mixed.rpn_head, BridgedDenseHead)
    assert isinstance(mixed.roi_head, BridgedRoIHead)
    assert type(mixed.roi_head.jittor_module.bbox_head).__name__ == 'JittorShared2FCBBoxHead'


def test_losses_and_gradients_match_mmdet():
    reference, mixed, data = small_faster_rcnn_twins(MIXED)
    assert_faster_rcnn_losses_match(reference, mixed, data, LOSS_RTOL, GRAD_RTOL)
    # the torch backbone got its gradient through the Jittor heads
    assert mixed.backbone.conv1.weight.grad.abs().max() > 0


def test_predictions_match_mmdet():
    reference, mixed, data = small_faster_rcnn_twins(MIXED)
    assert_faster_rcnn_detections_match(reference, mixed, data, BOX_ATOL, SCORE_ATOL)


def test_empty_batch_and_missing_ground_truth_are_named(twins):
    _, mixed, data = twins
    features = mixed.extract_feat(data['inputs'])
    with pytest.raises(ValueError, match='JittorRPNHead got an empty batch'):
        mixed.rpn_head.loss(features, [])
    samples = copy.deepcopy(data['data_samples'])
    del samples[1].gt_instances
    with pytest.raises(ValueError, match='JittorStandardRoIHead: data sample 1 has no gt_instances'):
        mixed.roi_head.loss(features, [], samples)
