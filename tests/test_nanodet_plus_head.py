"""``NanoDetPlusHead`` + ``SimpleConvHead`` (Jittor, bridged) against a plain-torch reference of
NanoDet-Plus's head forward and losses written from the spec (../shared/specs/seed-systems.md
sections 4.3-4.4; jt_mm_plugins/alignment/nanodet_reference.py), identical weights.

The reference: per-level depthwise towers and 1x1 ``gfl_cls`` (split into class logits and box
distributions), the aux head's GN towers; priors ``(x * s, y * s)`` without offset; expected
distances (softmax times the bins) times the stride; the assignment of both heads from the aux
head's detached predictions by mmdet's ``DynamicSoftLabelAssigner`` with its centre prior
switched off (radius 1000: the prior underflows to exactly 0, which is NanoDet-Plus's cost, see
tests/test_dynamic_soft_label_assigner.py); QFL with the assigned IoU, normalised by the positives;
GIoU (weight 2) and DFL (0.25, targets distance / stride clamped to reg_max - 0.1) weighted by each
positive's max class probability, normalised by its sum (mmdet's loss functions).

``compare_modules`` compares outputs and losses (1e-4 max abs), the gradients of the features of
both heads and of every parameter (1e-3 relative), train mode, and a float64 Jittor twin against
the float64 reference (1e-6 / 1e-5) after asserting the float64 LeakyReLU margins. The assignment
is a discrete decision: its float64 margins are asserted (every dynamic k, top-k cut and
conflict decided by more than 1e-3), so both float32 runs take the same one.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment.compare import compare_modules, randomize_norm_statistics
from jt_mm_plugins.alignment.nanodet_reference import (Float64SafeDSLA, RefAuxHead,
                                                        RefNanoDetPlusHead, nanodet_plus_losses)
from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.dense_heads import NanoDetPlusHead, SimpleConvHead
from jt_mm_plugins.utils.errors import InputError

from alignment_checks import assert_aligned, bridged_twins, randomise_convs_
from test_dynamic_soft_label_assigner import assert_decided

NUM_CLASSES, REG_MAX, STRIDES, CH, IMG = 3, 7, (8, 16), 8, 64
HEAD = dict(num_classes=NUM_CLASSES, in_channels=CH, feat_channels=CH, stacked_convs=2,
            kernel_size=5, strides=STRIDES, reg_max=REG_MAX)
AUX = dict(num_classes=NUM_CLASSES, input_channel=2 * CH, feat_channels=CH, stacked_convs=2,
           strides=STRIDES, reg_max=REG_MAX, norm_cfg=dict(type='GN', num_groups=4))
# image 0: three boxes; image 1: none
GTS = [(np.array([[4, 4, 40, 30], [20, 20, 60, 60], [30, 2, 62, 20]], np.float32),
        np.array([0, 2, 1], np.int64)),
       (np.zeros((0, 4), np.float32), np.zeros((0, ), np.int64))]
METAS = [dict(img_shape=(IMG, IMG), pad_shape=(IMG, IMG), scale_factor=(1., 1.))] * 2
CAPTURED = []  # (cost, ious) of every float64 reference assignment


# --------------------------------------------------------------------------------------------------
# The reference's assigner (the reference itself: alignment/nanodet_reference.py)
# --------------------------------------------------------------------------------------------------
class CapturingDSLA(Float64SafeDSLA):
    """The reference's assigner; records the float64 costs."""

    def dynamic_k_matching(self, cost, pairwise_ious, num_gt, valid_mask):
        if cost.dtype == torch.float64:
            CAPTURED.append((cost.clone(), pairwise_ious.clone()))
        return super().dynamic_k_matching(cost, pairwise_ious, num_gt, valid_mask)


class RefProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = RefNanoDetPlusHead(NUM_CLASSES, CH, CH, 2, 5, STRIDES, REG_MAX)
        self.aux_head = RefAuxHead(NUM_CLASSES, 2 * CH, CH, 2, STRIDES, REG_MAX, num_groups=4)

    def forward(self, feats, dual):
        cls, reg = self.head(feats)
        aux_cls, aux_reg = self.aux_head(dual)
        gts = [(torch.from_numpy(b), torch.from_numpy(l)) for b, l in GTS]
        losses = nanodet_plus_losses(
            self.head.distribution_project.project, cls, reg, aux_cls, aux_reg, gts, STRIDES,
            CapturingDSLA(soft_center_radius=1000.0, topk=13, iou_weight=3.0))
        return dict(cls=cls, reg=reg, **losses)


@register_jittor_module(name='NanoDetPlusHeadProbe', force=True)
class Probe(jt.nn.Module):
    """The head and the aux head as NanoDet-Plus's arch holds them, returning the head's outputs
    and both heads' losses."""

    def __init__(self):
        super().__init__()
        self.head, self.aux_head = NanoDetPlusHead(**HEAD), SimpleConvHead(**AUX)

    def execute(self, feats, dual):
        cls, reg = self.head(feats)
        gts = [dict(bboxes=jt.array(b).astype(feats[0].dtype), labels=jt.array(l))
               for b, l in GTS]
        losses = self.head.loss_by_feat(cls, reg, gts, METAS, aux_outs=self.aux_head(dual))
        return dict(cls=cls, reg=reg, **losses)


def make_inputs(seed=0):
    rng = np.random.RandomState(seed)
    sizes = [IMG // s for s in STRIDES]
    feats = [torch.from_numpy(rng.randn(2, CH, s, s).astype(np.float32)) for s in sizes]
    dual = [torch.from_numpy(rng.randn(2, 2 * CH, s, s).astype(np.float32)) for s in sizes]
    return feats, dual


def test_outputs_losses_and_gradients_match_reference():
    reference = RefProbe()
    randomise_convs_(reference, torch.Generator().manual_seed(0))
    randomize_norm_statistics(reference, 0)
    with torch.no_grad():
        for i, scale in enumerate(reference.aux_head.scales):
            scale.scale.fill_(0.7 + 0.3 * i)
    model, model64 = bridged_twins(dict(type='NanoDetPlusHeadProbe'), reference.state_dict())
    CAPTURED.clear()
    rows = compare_modules(model, reference, list(make_inputs()), training=True,
                           candidate64=model64)
    assert_aligned(rows)
    # outputs in key order: 3 aux losses, 2 cls levels, 3 losses, 2 reg levels
    assert [r.name.endswith('()') for r in rows if r.kind == 'output'] == \
        [True] * 3 + [False] * 2 + [True] * 3 + [False] * 2
    # the float64 reference assigned image 0 once per run; every decision is decided
    assert CAPTURED
    for cost, ious in CAPTURED:
        assert_decided(cost, ious, topk=13)
        assert cost.shape[1] == 3


def ref_predict(head, feats, score_thr, iou_thr):
    """NanoDet-Plus's ``get_bboxes`` from the spec on the reference head's outputs: sigmoid scores,
    distances (softmax times the bins) times the stride around the priors, clipped to the image,
    class-aware NMS (mmcv's); returns per image (boxes, scores, labels) and the decision margins
    (scores to ``score_thr``, same-class IoUs of the candidates to ``iou_thr``, score gaps between
    same-class candidates that suppress each other)."""
    from mmcv.ops import batched_nms
    cls_list, reg_list = head(feats)
    results, margins = [], []
    for i in range(cls_list[0].shape[0]):
        boxes, scores = [], []
        for cls, reg, s in zip(cls_list, reg_list, STRIDES):
            h, w = cls.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
            xy = (torch.stack([xs.flatten(), ys.flatten()], -1) * s).to(cls.dtype)
            probs = F.softmax(reg[i].permute(1, 2, 0).reshape(-1, 4, REG_MAX + 1), -1)
            dist = (probs * torch.arange(REG_MAX + 1, dtype=cls.dtype)).sum(-1) * s
            boxes.append(torch.cat([xy - dist[:, :2], xy + dist[:, 2:]], 1).clamp(0, IMG))
            scores.append(cls[i].permute(1, 2, 0).reshape(-1, NUM_CLASSES).sigmoid())
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        margins.append(float((scores - score_thr).abs().min()))
        keep = scores > score_thr
        cand_boxes = boxes[:, None].expand(-1, NUM_CLASSES, 4)[keep]
        cand_scores, cand_labels = scores[keep], torch.nonzero(keep)[:, 1]
        same = cand_labels[:, None] == cand_labels[None]
        ious = torch.stack([torch.stack([_iou(a, b) for b in cand_boxes]) for a in cand_boxes])
        off_diag = same & ~torch.eye(len(ious), dtype=torch.bool)
        margins.append(float((ious[off_diag] - iou_thr).abs().min()))
        # NMS order matters between same-class candidates that suppress each other
        rivals = off_diag & (ious > iou_thr)
        gaps = (cand_scores[:, None] - cand_scores[None]).abs()[rivals]
        margins.append(float(gaps.min()) if len(gaps) else 1.0)
        dets, kept = batched_nms(cand_boxes.float(), cand_scores.float(), cand_labels,
                                 dict(type='nms', iou_threshold=iou_thr))
        results.append((cand_boxes[kept][:100], cand_scores[kept][:100], cand_labels[kept][:100]))
    return results, margins


def _iou(a, b):
    wh = (torch.minimum(a[2:], b[2:]) - torch.maximum(a[:2], b[:2])).clamp(min=0)
    inter = wh[0] * wh[1]
    area = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod()
    return inter / (area - inter)


def test_predictions_match_reference():
    """Eval mode: NanoDet-Plus's post-processing on the reference head's outputs (float64, with its
    decision margins asserted) against the bridged head's ``predict`` (mmdet's interface)."""
    from mmdet.structures import DetDataSample
    score_thr, iou_thr = 0.5, 0.6
    reference = RefProbe()
    randomise_convs_(reference, torch.Generator().manual_seed(2))
    randomize_norm_statistics(reference, 2)
    head = NanoDetPlusHead.bridged(**HEAD, test_cfg=dict(
        score_thr=score_thr, nms=dict(type='nms', iou_threshold=iou_thr), max_per_img=100))
    head.load_state_dict(reference.head.state_dict(), strict=True)
    reference.eval()
    head.eval()
    feats = make_inputs(2)[0]
    with torch.no_grad():
        expected, margins = ref_predict(reference.double().head, [f.double() for f in feats],
                                        score_thr, iou_thr)
        got = head.predict(feats, [DetDataSample(metainfo=m) for m in METAS])
    assert min(margins) > 1e-5, margins  # float32 errors: scores ~1e-7, IoUs ~1e-6
    for (boxes, scores, labels), result in zip(expected, got):
        assert 5 < len(scores) < 100
        torch.testing.assert_close(result.scores.double(), scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(result.bboxes.double(), boxes, atol=1e-4, rtol=0)
        assert torch.equal(result.labels.long(), labels.long())


def _jittor_losses(gts, seed=0):
    head, aux = NanoDetPlusHead(**HEAD), SimpleConvHead(**AUX)
    feats, dual = make_inputs(seed)
    feats = [jt.array(f.numpy()) for f in feats]
    dual = [jt.array(d.numpy()) for d in dual]
    gts = [dict(bboxes=jt.array(b), labels=jt.array(l)) for b, l in gts]
    losses = head.loss(feats, gts, METAS, aux_outs=aux(dual))
    total = sum(losses.values())
    grads = jt.grad(total, feats + dual)
    return losses, grads


@pytest.mark.parametrize('case', ['no-gt', 'smaller-than-stride', 'more-gts-than-priors'])
def test_losses_finite(case):
    gts = {
        'no-gt': [GTS[1], GTS[1]],
        'smaller-than-stride': [(np.array([[9.0, 9.0, 12.0, 13.0]], np.float32),
                                 np.array([1])), GTS[1]],
        # 20 boxes around one prior at (16, 16): inside them only that prior and a few others
        'more-gts-than-priors': [(np.array([[15.0 - i * 0.1, 15.0, 17.0 + i * 0.1, 17.0]
                                            for i in range(20)], np.float32),
                                  np.arange(20) % NUM_CLASSES), GTS[1]],
    }[case]
    losses, grads = _jittor_losses(gts)
    assert sorted(losses) == sorted(['loss_cls', 'loss_bbox', 'loss_dfl', 'aux_loss_cls',
                                     'aux_loss_bbox', 'aux_loss_dfl'])
    for name, value in losses.items():
        assert np.isfinite(value.numpy()).all(), name
    for g in grads:
        assert np.isfinite(g.numpy()).all()
    if case == 'no-gt':
        assert float(losses['loss_bbox'].item()) == 0.0
    if case == 'more-gts-than-priors':
        assert float(losses['loss_bbox'].item()) > 0.0


def test_names_priors_and_errors():
    head = NanoDetPlusHead(**HEAD)
    names = dict(head.named_parameters())
    for key in ('cls_convs.1.1.depthwise.weight', 'cls_convs.0.0.dwnorm.running_var',
                'cls_convs.0.1.pwnorm.bias', 'gfl_cls.1.bias', 'distribution_project.project'):
        assert key in names, key
    assert np.allclose(head.gfl_cls[0].bias.numpy(), -4.595)
    priors = head.prior_generator.grid_priors([(2, 2)] * 2, with_stride=True)[1].numpy()
    np.testing.assert_array_equal(priors, [[0, 0, 16, 16], [16, 0, 16, 16], [0, 16, 16, 16],
                                           [16, 16, 16, 16]])
    with pytest.raises(InputError, match='feature levels'):
        head([jt.zeros((1, CH, 8, 8))])
    with pytest.raises(InputError, match='conv_type'):
        NanoDetPlusHead(num_classes=2, in_channels=4, conv_type='Sep')
    with pytest.raises(InputError, match='in_channels'):
        NanoDetPlusHead(num_classes=2)
