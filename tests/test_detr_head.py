"""Jittor ``DETRHead`` and ``HungarianAssigner`` against mmdet's, identical weights.

The batch mixes an ordinary image, an image without ground truth and one with more ground truths
than queries. Every Hungarian matching (each decoder layer, each image) is first shown to be
decided by float32: its float64 optimum leads the second-best matching by more than 10x the
float32 error of the summed costs (tests/detr_checks.py). Then the losses of every decoder layer
(``loss_*`` and ``d0.loss_*``) agree within 1e-5 relative, the gradients w.r.t. the hidden states
and every parameter within 1e-3 relative, and the predictions (scores and boxes 1e-4, labels
exactly) after asserting in float64 that the class argmax and the score order are decided.
"""
import copy

import numpy as np
import pytest
import torch
from mmdet.models.task_modules.assigners import HungarianAssigner as MMDetHungarianAssigner
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.models.task_modules import HungarianAssigner

from detr_checks import (assert_matching_decided, assert_matchings_decided,
                         assert_predictions_decided, detr_samples)

EMBED, CLASSES, QUERIES, LAYERS = 16, 3, 6, 2
COSTS = [dict(type='ClassificationCost', weight=1.),
         dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
         dict(type='IoUCost', iou_mode='giou', weight=2.0)]
# loss_cls given: mmdet's DETRHead rewrites its default loss_cls dict in place (class_weight
# becomes a tensor), so a second DETRHead built with the default fails its own float check.
HEAD = dict(num_classes=CLASSES, embed_dims=EMBED,
            loss_cls=dict(type='CrossEntropyLoss', bg_cls_weight=0.1, use_sigmoid=False,
                          loss_weight=1.0, class_weight=1.0),
            train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=COSTS)),
            test_cfg=dict(max_per_img=4))
LOSS_RTOL, GRAD_RTOL, OUT_ATOL = 1e-5, 1e-3, 1e-4


def head_twins(**overrides):
    cfg = dict(copy.deepcopy(HEAD), **overrides)
    reference = MODELS.build(dict(type='DETRHead', **copy.deepcopy(cfg)))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model = MODELS.build(dict(type='JittorDETRHead', **copy.deepcopy(cfg)))
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return reference, model


def hidden_states(num_imgs=3):
    return torch.randn(LAYERS, num_imgs, QUERIES, EMBED, generator=torch.Generator().manual_seed(5))


def test_losses_and_gradients_match_mmdet_on_every_layer():
    reference, model = head_twins()
    states, samples = hidden_states(), detr_samples(QUERIES, CLASSES)
    reference64 = copy.deepcopy(reference).double()
    with torch.no_grad():
        assert_matchings_decided(reference.assigner, reference(states),
                                 reference64(states.double()), samples)
    ref_states, states_j = states.clone().requires_grad_(), states.clone().requires_grad_()
    expected = reference.loss(hidden_states=ref_states, batch_data_samples=samples)
    got = model.loss(hidden_states=states_j, batch_data_samples=detr_samples(QUERIES, CLASSES))
    assert sorted(got) == sorted(expected) == sorted(
        f'{p}loss_{k}' for p in ('', 'd0.') for k in ('cls', 'bbox', 'iou'))
    for name, value in expected.items():
        assert torch.isfinite(got[name]) and got[name].shape == value.shape, name
        assert abs(float(got[name]) - float(value)) <= LOSS_RTOL * abs(float(value)), \
            (name, float(got[name]), float(value))
    weights = {name: 1.0 + 0.1 * i for i, name in enumerate(sorted(expected))}
    sum(w * expected[n] for n, w in weights.items()).backward()
    sum(w * got[n] for n, w in weights.items()).backward()

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))

    assert rel(states_j.grad, ref_states.grad) <= GRAD_RTOL
    own = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        assert rel(own[name].grad, p.grad) <= GRAD_RTOL, name


def test_predictions_match_mmdet():
    reference, model = head_twins()
    reference.eval(), model.eval()
    states, samples = hidden_states(), detr_samples(QUERIES, CLASSES)
    with torch.no_grad():
        assert_predictions_decided(copy.deepcopy(reference).double()(states[-1:].double())[0][-1],
                                   max_per_img=4)
    with torch.no_grad():
        expected = reference.predict(hidden_states=states, batch_data_samples=samples)
        got = model.predict(hidden_states=states, batch_data_samples=samples)
    for e, g in zip(expected, got):
        assert torch.equal(g.labels, e.labels)
        assert (g.scores - e.scores).abs().max() <= OUT_ATOL
        assert (g.bboxes - e.bboxes).abs().max() <= OUT_ATOL * max(1.0, float(e.bboxes.abs().max()))


def test_hungarian_assigner_matches_mmdet():
    costs = COSTS + [dict(type='FocalLossCost', weight=2.0)]
    reference, assigner = MMDetHungarianAssigner(costs), HungarianAssigner(costs)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 4, generator=gen)
    wh = torch.rand(7, 4, generator=gen) * 30
    boxes = torch.cat([wh[:, :2], wh[:, :2] + wh[:, 2:] + 1], 1)
    gt_boxes = torch.tensor([[1., 2, 20, 25], [5, 5, 30, 31], [0, 10, 12, 40]])
    gt_labels = torch.tensor([0, 2, 1])
    meta = dict(img_shape=(48, 40))

    def both(pred_slice, gt_slice):
        preds = dict(scores=scores[pred_slice], bboxes=boxes[pred_slice])
        gts = dict(bboxes=gt_boxes[gt_slice], labels=gt_labels[gt_slice])
        expected = reference.assign(InstanceData(**preds), InstanceData(**gts), meta)
        got = assigner.assign({k: torch_to_jittor(v) for k, v in preds.items()},
                              {k: torch_to_jittor(v) for k, v in gts.items()}, meta)
        return expected, got, preds, gts

    expected, got, preds, gts = both(slice(None), slice(None))
    cost32 = sum(c(pred_instances=InstanceData(**preds), gt_instances=InstanceData(**gts),
                   img_meta=meta) for c in reference.match_costs).numpy()
    preds64 = InstanceData(**{k: v.double() for k, v in preds.items()})
    gts64 = InstanceData(bboxes=gts['bboxes'].double(), labels=gts['labels'])
    cost64 = sum(c(pred_instances=preds64, gt_instances=gts64, img_meta=meta)
                 for c in reference.match_costs).numpy()
    jittor_cost = assigner.cost_matrix({k: torch_to_jittor(v) for k, v in preds.items()},
                                       {k: torch_to_jittor(v) for k, v in gts.items()},
                                       meta).numpy()
    assert np.abs(jittor_cost - cost32).max() <= 1e-5 * max(1.0, np.abs(cost32).max())
    assert_matching_decided(cost32, cost64, 'assigner')
    for e, g in ((expected, got), both(slice(0, 2), slice(None))[:2],
                 both(slice(None), slice(0, 0))[:2], both(slice(0, 0), slice(None))[:2]):
        assert g.num_gts == e.num_gts and e.max_overlaps is None and g.max_overlaps is None
        assert np.array_equal(g.gt_inds.numpy(), e.gt_inds.numpy())
        assert np.array_equal(g.labels.numpy(), e.labels.numpy())


def test_config_errors_are_mmdets():
    with pytest.raises(ValueError, match='class_weight to have type float'):
        MODELS.build(dict(type='JittorDETRHead', num_classes=2,
                          loss_cls=dict(type='CrossEntropyLoss', class_weight=1)))
    with pytest.raises(RuntimeError, match='DETR do not build sampler'):
        MODELS.build(dict(type='JittorDETRHead', num_classes=2, train_cfg=dict(
            assigner=dict(type='HungarianAssigner', match_costs=COSTS),
            sampler=dict(type='PseudoSampler'))))
    with pytest.raises(ValueError, match='match_costs must not be an empty list'):
        HungarianAssigner([])
