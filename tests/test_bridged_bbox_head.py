"""A Jittor bbox head inside mmdet's own ``StandardRoIHead`` (jt_mm_plugins/bridge/bbox_head.py).

Two mmdet ``StandardRoIHead`` built from the same config (tests/test_roi_head.py's small R-CNN
stage): the reference with mmdet's ``Shared2FCBBoxHead``, the mixed one with the bridged
``JittorShared2FCBBoxHead``; the reference's state dict loads strictly into the mixed one. mmdet's
roi extractor, assigner, sampler and NMS run on both sides; only the bbox head's forward, targets,
losses and decoding run in Jittor. The cases (seeds) and the tolerances are test_roi_head.py's, and
every float32 decision of the reference (ReLUs of the shared FCs, sorts, NMS) is asserted to have a
float64 margin before anything is compared (jt_mm_plugins/alignment/margins.py).
"""
import copy

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead

pytest.importorskip('mmcv.ops')
import test_roi_head as base  # noqa: E402  (the small R-CNN stage, its cases and comparisons)
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402


def build_twins(meta_roi_head: bool = False, **bbox_head_overrides):
    """(mmdet StandardRoIHead with mmdet's head, the same with the Jittor head), same weights."""
    cfg = base.roi_head_cfg(**bbox_head_overrides)
    reference = MODELS.build(ConfigDict(type='StandardRoIHead', **copy.deepcopy(cfg)))
    reference.init_weights()
    base.randomise_(reference)
    cfg['bbox_head']['type'] = 'JittorShared2FCBBoxHead'
    roi_type = 'MetaStandardRoIHead' if meta_roi_head else 'StandardRoIHead'
    mixed = MODELS.build(ConfigDict(type=roi_type, **copy.deepcopy(cfg)))
    mixed.load_state_dict(reference.state_dict(), strict=True)
    return reference, mixed


def test_the_bbox_head_is_bridged_inside_mmdets_roi_head():
    _, mixed = build_twins()
    assert type(mixed).__name__ == 'StandardRoIHead'
    assert isinstance(mixed.bbox_head, BridgedBBoxHead)
    head = mixed.bbox_head
    # what mmdet's RoI heads read of a bbox head
    assert (head.num_classes, head.reg_class_agnostic, head.predict_box_type) == \
        (base.NUM_CLASSES, False, 'hbox')
    assert head.custom_cls_channels is False and head.with_cls and head.with_reg
    with pytest.raises(NotImplementedError, match='refine_bboxes'):
        head.refine_bboxes([], {}, [])


@pytest.mark.parametrize('meta_roi_head', [False, True])
def test_losses_and_gradients_match_mmdet(meta_roi_head):
    reference, mixed = build_twins(meta_roi_head)
    case = base.make_case(seed=3)
    base.assert_float32_decides(reference, case)
    ref_losses, ref_feat_grads, ref_param_grads = base.mmdet_loss(reference, case)
    got_losses, got_feat_grads, got_param_grads = base.mmdet_loss(mixed, case)
    assert float(ref_losses['loss_bbox']) > 0
    assert all(np.asarray(v).shape == () for k, v in got_losses.items() if 'loss' in k)
    errors = base.compare_losses(got_losses, ref_losses)
    base.compare_grads(got_feat_grads, ref_feat_grads, 'features')
    assert sorted(got_param_grads) == sorted(ref_param_grads)
    param_err = base.compare_grads([got_param_grads[k] for k in sorted(ref_param_grads)],
                                   [ref_param_grads[k] for k in sorted(ref_param_grads)],
                                   'params')
    print(f'\n[meta={meta_roi_head}] loss abs errors {errors}; param grad rel err '
          f'{param_err:.2e}')


def test_targets_match_mmdet():
    reference, mixed = build_twins()
    case = base.make_case(seed=3)
    feats, rpn_results, samples = base.mmdet_inputs(case, requires_grad=False)
    captured = {}
    for name, head in (('ref', reference), ('got', mixed)):
        original = head.bbox_head.loss_and_target

        def spy(*args, _original=original, _name=name, **kwargs):
            captured[_name] = _original(*args, **kwargs)
            return captured[_name]
        head.bbox_head.loss_and_target = spy
        head.loss(feats, copy.deepcopy(rpn_results), samples)
    for ref, got in zip(captured['ref']['bbox_targets'], captured['got']['bbox_targets']):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)


def test_predictions_match_mmdet():
    reference, mixed = build_twins()
    case = base.make_case(seed=2)
    for rescale in (True, False):
        base.assert_float32_decides(reference, case, predict=True, rescale=rescale)
        ref = base.mmdet_predict(reference, case, rescale=rescale)
        got = base.mmdet_predict(mixed, case, rescale=rescale)
        assert sum(len(r['labels']) for r in ref) > 0
        base.compare_predictions(got, ref)


def test_meta_roi_head_hands_each_image_its_metainfo():
    _, mixed = build_twins(meta_roi_head=True)
    case = base.make_case(seed=3)
    feats, rpn_results, samples = base.mmdet_inputs(case, requires_grad=False)
    for i, sample in enumerate(samples):
        sample.set_metainfo(dict(dataset_id=i + 5))
    seen = []
    head = mixed.bbox_head
    original = head.jittor_module.loss_and_target

    def spy(cls_score, bbox_pred, rois, sampling_results, *args, **kwargs):
        seen.extend(res.img_meta['dataset_id'] for res in sampling_results)
        return original(cls_score, bbox_pred, rois, sampling_results, *args, **kwargs)
    head.jittor_module.loss_and_target = spy
    with torch.no_grad():
        mixed.loss(feats, rpn_results, samples)
    assert seen == [5, 6]
