"""Mixed mode with a Jittor one-stage head: mmdet's own ``GFL`` detector (mmdet ResNet-18 + FPN)
holding a bridged ``JittorGFLHead``, against the all-mmdet twin with identical weights (the head's
weights randomised so that scores spread over the test threshold).

Losses 1e-4 relative (values are continuous in every float32 near-tie, ATSS decides on the inputs
only); parameter gradients 1e-2 relative where float32 decides them (``detector_checks``, with the
float64 ReLU/max-pool decision report of ``jt_mm_plugins.alignment.margins``); detections: same
count and labels, boxes within 1e-3 px, scores within 1e-4, after asserting on the reference head's
outputs that the ``score_thr`` / ``nms_pre`` / NMS decisions keep a margin
(``test_gfl_head.assert_predict_margins``, rescaled as the detector predicts).
"""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict

import jt_mm_plugins  # noqa: F401
from detector_checks import assert_same_detections, assert_same_losses_and_gradients
from jt_mm_plugins.alignment.pairs import detection_batch
from jt_mm_plugins.bridge import BridgedDenseHead
from test_gfl_head import assert_predict_margins, randomise_

register_all_modules()
LOSS_RTOL, BOX_ATOL, SCORE_ATOL, GRAD_RTOL = 1e-4, 1e-3, 1e-4, 1e-2
TEST_CFG = dict(nms_pre=8, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=20)


def gfl_config(head_type: str) -> dict:
    """A small GFL (mmdet's ``gfl_r50_fpn_1x_coco`` structure at demo size)."""
    return dict(
        type='GFL',
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(1, 2, 3),
                      frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=False, style='pytorch', init_cfg=None),
        neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=16, start_level=0,
                  add_extra_convs='on_output', num_outs=3),
        bbox_head=dict(
            type=head_type, num_classes=3, in_channels=16, stacked_convs=2, feat_channels=16,
            norm_cfg=dict(type='GN', num_groups=4, requires_grad=True), reg_max=7,
            anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=4,
                                  scales_per_octave=1, strides=[8, 16, 32]),
            loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
            loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
            loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
        train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                       pos_weight=-1, debug=False),
        test_cfg=TEST_CFG)


def build_twins(candidate_cfg=None):
    """(mmdet's GFL, the candidate (default: mixed, the Jittor head in mmdet's GFL), batch)."""
    torch.manual_seed(0)
    reference = MODELS.build(ConfigDict(gfl_config('GFLHead')))  # mmdet reads cfg.score_thr
    randomise_(reference.bbox_head, seed=1)
    mixed = MODELS.build(ConfigDict(candidate_cfg or gfl_config('JittorGFLHead')))
    # strictly, as is: mmdet's 0-d Scale parameters are 0-d on the bridged twin too
    mixed.load_state_dict(reference.state_dict(), strict=True)
    images, samples = detection_batch()
    data = reference.data_preprocessor({'inputs': images, 'data_samples': samples}, False)
    return reference, mixed, data


@pytest.fixture(scope='module')
def twins():
    return build_twins()


def test_the_head_is_a_bridged_jittor_module(twins):
    _, mixed, _ = twins
    assert type(mixed).__name__ == 'GFL'  # mmdet's own detector
    assert isinstance(mixed.bbox_head, BridgedDenseHead)
    assert mixed.bbox_head.num_classes == 3 and mixed.bbox_head.reg_max == 7


def test_losses_and_gradients_match_mmdet(twins):
    reference, mixed, data = twins
    # mmdet's integral.project is a buffer; so is the bridged twin's (Integral._torch_buffers)
    assert 'bbox_head.integral.project' in dict(mixed.named_buffers())
    assert set(dict(mixed.named_parameters())) == set(dict(reference.named_parameters()))
    errors = assert_same_losses_and_gradients(reference, mixed, data, LOSS_RTOL, GRAD_RTOL)
    assert any(name.startswith('bbox_head.') for name in errors)
    # the torch backbone got its gradient through the Jittor head
    assert mixed.backbone.conv1.weight.grad.abs().max() > 0


def assert_same_predictions_with_margins(reference, candidate, data):
    """Detections of ``candidate`` equal ``reference``'s, after asserting on the reference head's
    outputs that the score_thr / nms_pre / NMS decisions keep their margins."""
    reference.eval()
    outputs = {}
    handle = reference.bbox_head.register_forward_hook(
        lambda _m, _i, out: outputs.setdefault('outs', out))
    try:
        with torch.no_grad():
            reference.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    finally:
        handle.remove()
    metas = [s.metainfo for s in data['data_samples']]
    assert assert_predict_margins(reference.bbox_head, *outputs['outs'], TEST_CFG, metas,
                                  rescales=(True, )) > 0
    assert_same_detections(reference, candidate, data, BOX_ATOL, SCORE_ATOL)


def test_predictions_match_mmdet():
    # fresh twins: training forwards of the other tests move BatchNorm's running statistics, and
    # with them the scores whose margins are asserted here
    assert_same_predictions_with_margins(*build_twins())
