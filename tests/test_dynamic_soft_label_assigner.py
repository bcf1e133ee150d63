"""``DynamicSoftLabelAssigner`` (Jittor) against mmdet's on identical inputs.

mmdet's cost adds a centre prior ``10 ** (d / stride - soft_center_radius)``; NanoDet-Plus's has
none. With ``soft_center_radius=3.0`` both sides compute mmdet's cost; with mmdet at a radius of
1000 the prior underflows to exactly 0, which is NanoDet-Plus's cost (checked against the spec's
formula with ``binary_cross_entropy`` on probabilities, as NanoDet writes it) and the Jittor
assigner's default (``soft_center_radius=None``).

Assignments are compared for equality only after a float64 run of mmdet's assigner shows every
decision is decided: each dynamic k is far from an integer boundary, each gt's k-th and (k+1)-th
cheapest costs differ, and each prior claimed by several gts has a unique cheapest gt.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.task_modules.assigners import \
    DynamicSoftLabelAssigner as MMDetDSLA
from mmengine.structures import InstanceData

from jt_mm_plugins.models.task_modules import DynamicSoftLabelAssigner
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

NUM_CLASSES = 4
# float32 rounding of the costs (values up to ~30) is far below this
DECISION_MARGIN = 1e-3


def make_inputs(seed: int = 0, num_gt: int = 3):
    """Priors of a 64x64 image at strides 8 and 16 (NanoDet's, no half-stride offset), predicted
    boxes around them, logits, and gt boxes of random sizes."""
    gen = torch.Generator().manual_seed(seed)
    priors = []
    for stride in (8, 16):
        ys, xs = torch.meshgrid(torch.arange(64 // stride), torch.arange(64 // stride),
                                indexing='ij')
        xy = torch.stack([xs.flatten(), ys.flatten()], -1).float() * stride
        priors.append(torch.cat([xy, torch.full_like(xy, stride)], -1))
    priors = torch.cat(priors)
    dist = torch.rand(len(priors), 4, generator=gen) * 2.5 * priors[:, 2:3]
    bboxes = torch.cat([priors[:, :2] - dist[:, :2], priors[:, :2] + dist[:, 2:]], -1)
    scores = torch.randn(len(priors), NUM_CLASSES, generator=gen) * 2
    xy1 = torch.rand(num_gt, 2, generator=gen) * 36 + 1
    wh = torch.rand(num_gt, 2, generator=gen) * 24 + 6
    gt_bboxes = torch.cat([xy1, xy1 + wh], -1)
    gt_labels = torch.randint(0, NUM_CLASSES, (num_gt, ), generator=gen)
    return priors, bboxes, scores, gt_bboxes, gt_labels


def mmdet_assign(radius, inputs, dtype=torch.float32, capture=None):
    priors, bboxes, scores, gt_bboxes, gt_labels = inputs
    assigner = MMDetDSLA(soft_center_radius=radius, topk=13, iou_weight=3.0)
    if capture is not None:
        original = assigner.dynamic_k_matching

        def spy(cost, ious, num_gt, valid_mask):
            capture.update(cost=cost.clone(), ious=ious.clone(), valid=valid_mask.clone())
            matched_ious, matched_gt = original(cost, ious, num_gt, valid_mask)
            return matched_ious.float(), matched_gt  # mmdet's float64 path fails without it

        assigner.dynamic_k_matching = spy
    result = assigner.assign(
        InstanceData(priors=priors.to(dtype), bboxes=bboxes.to(dtype), scores=scores.to(dtype)),
        InstanceData(bboxes=gt_bboxes.to(dtype), labels=gt_labels))
    return result


def jittor_assign(assigner, inputs):
    priors, bboxes, scores, gt_bboxes, gt_labels = [jt.array(t.numpy()) for t in inputs]
    return assigner.assign(SimpleNamespace(priors=priors, bboxes=bboxes, scores=scores),
                           dict(bboxes=gt_bboxes, labels=gt_labels))


def assert_decided(cost: torch.Tensor, ious: torch.Tensor, topk: int) -> None:
    """Every decision of the dynamic-k matching has a float64 margin over DECISION_MARGIN."""
    cost, ious = cost.double(), ious.double()
    k_sums = ious.topk(min(topk, len(ious)), dim=0).values.sum(0)
    frac = k_sums - k_sums.floor()
    assert torch.minimum(frac, 1 - frac).min() > DECISION_MARGIN, k_sums
    ks = k_sums.int().clamp(min=1)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(cost.shape[1]):
        ordered = cost[:, g].sort().values
        k = int(ks[g])
        matching[cost[:, g].argsort()[:k], g] = True
        if k < len(ordered):
            assert ordered[k] - ordered[k - 1] > DECISION_MARGIN, (g, ordered[k - 1:k + 1])
    multiple = matching.sum(1) > 1
    if multiple.any():
        two = cost[multiple].sort(dim=1).values[:, :2]
        assert (two[:, 1] - two[:, 0]).min() > DECISION_MARGIN


def assert_same_assignment(result, reference) -> None:
    np.testing.assert_array_equal(result.gt_inds.numpy(), reference.gt_inds.numpy())
    np.testing.assert_array_equal(result.labels.numpy(), reference.labels.numpy())
    np.testing.assert_allclose(result.max_overlaps.numpy(), reference.max_overlaps.numpy(),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize('mode', ['nanodet', 'mmdet'])
def test_matches_mmdet(mode):
    inputs = make_inputs(seed=3)
    mmdet_radius = 1000.0 if mode == 'nanodet' else 3.0
    captured = {}
    reference64 = mmdet_assign(mmdet_radius, inputs, torch.float64, capture=captured)
    assert_decided(captured['cost'], captured['ious'], topk=13)
    if mode == 'nanodet':
        # the spec's (NanoDet's) cost: BCE on probabilities, no centre prior
        priors, bboxes, scores, gt_bboxes, gt_labels = [t.double() for t in inputs[:4]] + [
            inputs[4]]
        ious = captured['ious']
        soft = F.one_hot(gt_labels, NUM_CLASSES).double()[None] * ious[..., None]
        probs = scores[captured['valid']].sigmoid()[:, None].expand_as(soft)
        cls_cost = (F.binary_cross_entropy(probs, soft, reduction='none') *
                    (soft - probs).abs().pow(2)).sum(-1)
        torch.testing.assert_close(captured['cost'], cls_cost - 3.0 * torch.log(ious + 1e-7))
        assigner = DynamicSoftLabelAssigner(topk=13, iou_factor=3.0)
    else:
        assigner = DynamicSoftLabelAssigner(soft_center_radius=3.0, topk=13, iou_weight=3.0)
    reference = mmdet_assign(mmdet_radius, inputs)
    assert_same_assignment(reference, reference64)  # float32 mmdet decides as float64 does
    result = jittor_assign(assigner, inputs)
    assert_same_assignment(result, reference)
    assert int((result.gt_inds.numpy() > 0).sum()) >= 3
    assert result.num_gts == 3


def test_degenerate_inputs():
    assigner = DynamicSoftLabelAssigner()
    priors, bboxes, scores, gt_bboxes, gt_labels = make_inputs(seed=1)
    # no gt: everything background
    result = jittor_assign(assigner, (priors, bboxes, scores, gt_bboxes[:0], gt_labels[:0]))
    assert (result.gt_inds.numpy() == 0).all() and (result.labels.numpy() == -1).all()
    # a gt smaller than a stride between prior centres: no candidate, background
    tiny = torch.tensor([[1.0, 1.0, 6.0, 6.0]])
    result = jittor_assign(assigner, (priors, bboxes, scores, tiny, gt_labels[:1]))
    reference = mmdet_assign(None, (priors, bboxes, scores, tiny, gt_labels[:1]))
    assert (result.gt_inds.numpy() == 0).all()
    assert_same_assignment(result, reference)
    # more gts than candidate priors: each prior keeps one gt, every gt index valid
    many = torch.tensor([[7.0, 7.0, 9.0 + i, 9.0 + i] for i in range(6)])
    result = jittor_assign(assigner, (priors, bboxes, scores, many, torch.arange(6) % 4))
    gt_inds = result.gt_inds.numpy()
    assert (gt_inds > 0).sum() == 1 and gt_inds.max() <= 6
    assert np.isfinite(result.max_overlaps.numpy()[gt_inds > 0]).all()
    with pytest.raises(InputError, match='scores'):
        assigner.assign(SimpleNamespace(priors=jt.array(priors.numpy()),
                                        bboxes=jt.array(bboxes.numpy())),
                        dict(bboxes=jt.array(gt_bboxes.numpy()),
                             labels=jt.array(gt_labels.numpy())))
    with pytest.raises(NotImplementedError, match='ignore_iof_thr'):
        DynamicSoftLabelAssigner(ignore_iof_thr=0.5)
