"""JittorFastRCNN (a two-stage detector on given proposals, UniDetector's 2nd stage) against mmdet's
FastRCNN with identical weights and the same proposals.

The case (``jt_mm_plugins.alignment.pairs.small_fast_rcnn_twins``, the ``fast_rcnn`` pair of
tools/align.py): the demo's R-18 FPN Faster R-CNN without its RPN, every RoI sampled, the RoI
head's output layers redrawn with a spread, the two-image 64-px batch of test_faster_rcnn.py, and
in each data sample 12 random proposals with scores (``data_sample.proposals``, as
``LoadProposals`` + ``PackDetInputs`` fill it). As there, the selections are asserted on a float64
run of mmdet's detector first (``detector_checks.assert_selections_decided``: the assigner, the
``acc`` top-1, ``score_thr``, class-wise NMS and its order), then losses (1e-4 relative), the
gradients float32 decides (1e-2 relative, as test_faster_rcnn.py) and the detections (boxes 1e-3
px, scores 1e-4).
"""
import copy

import pytest
import torch
from mmdet.utils import register_all_modules

import jt_mm_plugins  # noqa: F401
from detector_checks import (assert_same_detections, assert_same_losses_and_gradients,
                             assert_selections_decided)
from jt_mm_plugins.alignment.pairs import small_fast_rcnn_twins

register_all_modules()
LOSS_RTOL, BOX_ATOL, SCORE_ATOL, GRAD_RTOL = 1e-4, 1e-3, 1e-4, 1e-2


@pytest.fixture(scope='module')
def twins():
    return small_fast_rcnn_twins()  # mmdet's FastRCNN state dict loads with strict=True


def test_is_mmdet_fast_rcnn_twin(twins):
    reference, candidate, data = twins
    assert type(reference).__name__ == 'FastRCNN' and type(candidate).__name__ == 'JittorFastRCNN'
    assert not candidate.with_rpn and not hasattr(candidate, 'rpn_head')
    ref_sd, got_sd = reference.state_dict(), candidate.state_dict()
    assert set(got_sd) == set(ref_sd)
    assert all(got_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    # mode='tensor': the RoI head's outputs on the given proposals, as mmdet's
    candidate.eval()
    reference.eval()
    with torch.no_grad():
        (got, ), (want, ) = (model(data['inputs'], copy.deepcopy(data['data_samples']),
                                   mode='tensor') for model in (candidate, reference))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=0)


def test_losses_gradients_and_predictions_match_mmdet(twins):
    reference, candidate, data = twins
    report = assert_selections_decided(reference, data, True, ('assigner', 'topk'))
    assert_same_losses_and_gradients(reference, candidate, data, LOSS_RTOL, GRAD_RTOL, report)
    assert_selections_decided(reference, data, False, ('score_thr', 'nms', 'nms order'))
    assert_same_detections(reference, candidate, data, BOX_ATOL, SCORE_ATOL)


def test_missing_proposals_are_refused(twins):
    _, candidate, data = twins
    samples = copy.deepcopy(data['data_samples'])
    del samples[1].proposals
    for mode in ('loss', 'predict'):
        with pytest.raises(ValueError, match=r'no RPN head.*LoadProposals.*\[1\]'):
            candidate(data['inputs'], copy.deepcopy(samples), mode=mode)
