"""JittorGFL: the whole GFL detector in Jittor (pure mode, one bridge crossing per step) against
mmdet's ``GFL`` with identical weights (the small GFL of test_gfl_mixed.py, head weights randomised
so that scores spread over the test threshold).

Same tolerances and the same margin rules as the mixed twin (test_gfl_mixed.py): losses 1e-4
relative, gradients 1e-2 relative where float32 decides them, detections after asserting the
``score_thr`` / ``nms_pre`` / NMS margins on the reference head's outputs.
"""
import pytest
import torch

from detector_checks import assert_same_losses_and_gradients
from jt_mm_plugins.models.detectors import JittorGFL
from test_gfl_mixed import (GRAD_RTOL, LOSS_RTOL, assert_same_predictions_with_margins, gfl_config)
from test_gfl_mixed import build_twins as mixed_gfl_twins


def pure_config() -> dict:
    cfg = gfl_config('JittorGFLHead')
    cfg.update(type='JittorGFL')
    cfg['backbone']['type'] = 'JittorResNet'
    cfg['neck']['type'] = 'JittorFPN'
    return cfg


def build_twins():
    # an mmdet GFL checkpoint loads strictly into the candidate, as it is
    return mixed_gfl_twins(pure_config())


@pytest.fixture(scope='module')
def twins():
    return build_twins()


def test_one_jittor_module_with_the_twins_names(twins):
    reference, candidate, _ = twins
    assert isinstance(candidate, JittorGFL)
    assert set(dict(candidate.named_parameters())) == set(dict(reference.named_parameters()))
    assert set(dict(candidate.named_buffers())) == set(dict(reference.named_buffers()))
    assert candidate.bbox_head.reg_max == reference.bbox_head.reg_max == 7


def test_losses_and_gradients_match_mmdet(twins):
    reference, candidate, data = twins
    errors = assert_same_losses_and_gradients(reference, candidate, data, LOSS_RTOL, GRAD_RTOL)
    assert any(name.startswith('bbox_head.') for name in errors)


def test_predictions_match_mmdet():
    # fresh twins: the training forwards above moved BatchNorm's running statistics
    assert_same_predictions_with_margins(*build_twins())


def test_a_train_step_updates_the_torch_owned_parameters(twins):
    from mmengine.optim import OptimWrapper
    _, candidate, data = twins
    candidate.train()
    optim = OptimWrapper(torch.optim.SGD(candidate.parameters(), lr=0.01))
    before = candidate.bbox_head.gfl_cls.weight.detach().clone()
    log_vars = candidate.train_step({'inputs': list(data['inputs']),
                                     'data_samples': data['data_samples']}, optim)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(before, candidate.bbox_head.gfl_cls.weight)
