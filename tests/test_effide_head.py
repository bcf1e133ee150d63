"""EffiDeHead (Jittor) against yolov6detect's ``Detect`` (outputs, gradients) and ``ComputeLoss`` /
``TaskAlignedAssigner`` (assignments, losses, gradients) on identical inputs.

Tiny head: 3 classes, levels of 8 / 16 / 32 channels at strides 8 / 16 / 32 of 64-px images
(8x8, 4x4, 2x2 maps: 84 anchors), batch 3 (two, one and no ground truths). Tolerances: outputs
1e-4 max abs, gradients 1e-3 relative (``compare_modules`` with float64 twins for the forward;
losses 1e-5 relative). Robust by construction: before comparing assignments and losses, the float64
run of yolov6's assigner is checked to decide every TAL decision by a margin (anchor points at least
0.05 px inside or outside each box, the top-k cut at least 1e-4 relative, the largest-IoU choice for
anchors claimed twice at least 1e-4), and its float32 run gives the same assignment.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401  (registers EffiDeHead in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import compare_modules
from jt_mm_plugins.alignment.yolov6_reference import yolov6_compute_loss
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.models.dense_heads.effide_head import EffiDeHead

from alignment_checks import assert_aligned, bridged_twins
from yolov6_reference import randomise_calibrated_, yolov6, yolov6_trained_bn_

NC = 3
CHANNELS = [8, 16, 32]
SIZES = [(8, 8), (4, 4), (2, 2)]
IMG = 64
# (image, class, cx, cy, w, h) normalised by the image size (YOLOv6's target rows)
TARGETS = torch.tensor([[0, 1, 0.40, 0.45, 0.50, 0.61],
                        [0, 2, 0.62, 0.58, 0.42, 0.36],
                        [1, 0, 0.52, 0.47, 0.70, 0.66]])
BATCH = 3  # image 2 has no ground truth


def make_feats(seed=0, batch=BATCH):
    rng = np.random.RandomState(seed)
    return [torch.from_numpy(rng.randn(batch, c, h, w).astype(np.float32))
            for c, (h, w) in zip(CHANNELS, SIZES)]


def reference_detect(seed=0):
    eh = yolov6('models.effidehead')
    channels = [0] * 6 + [CHANNELS[0], 0, CHANNELS[1], 0, CHANNELS[2]]
    detect = eh.Detect(NC, 3, head_layers=eh.build_effidehead_layer(channels, 1, NC, 16, 3),
                       use_dfl=True, reg_max=16)
    detect.initialize_biases()
    yolov6_trained_bn_(detect)

    class Calibrate(nn.Module):  # randomise_calibrated_ runs model(x): a list of levels
        def __init__(self):
            super().__init__()
            self.d = detect

        def forward(self, xs):
            return self.d(list(xs))

    randomise_calibrated_(Calibrate(), make_feats(seed + 1), seed)
    with torch.no_grad():  # trained-looking predictions, not the zero-weight init
        for conv in list(detect.cls_preds) + list(detect.reg_preds):
            conv.weight.mul_(0.3)
        detect.proj_conv.weight.copy_(detect.proj.view(1, -1, 1, 1))  # fixed, not a random conv
    return detect


class DetectTrainOutputs(nn.Module):
    """Detect's training outputs (class probabilities, distributions), (N, L, .)."""

    def __init__(self, detect):
        super().__init__()
        self.m = detect  # the same prefix as BridgedTrainOutputs: parameters pair by name

    def forward(self, xs):
        _, scores, distri = self.m(list(xs))
        return scores, distri


class BridgedTrainOutputs(nn.Module):
    """The bridged EffiDeHead's per-level maps in Detect's training layout."""

    def __init__(self, head):
        super().__init__()
        self.m = head

    def forward(self, xs):
        cls, reg = self.m(list(xs))
        flat = lambda maps: torch.cat([m.flatten(2).permute(0, 2, 1) for m in maps], 1)  # noqa
        return flat(cls).sigmoid(), flat(reg)


def test_forward_matches_yolov6_detect_train_mode():
    detect = reference_detect()
    cfg = dict(type='EffiDeHead', num_classes=NC, in_channels=CHANNELS)
    head, head64 = bridged_twins(cfg, detect.state_dict())
    assert list(head.state_dict()) == sorted(detect.state_dict(), key=list(
        head.state_dict()).index)
    rows = compare_modules(BridgedTrainOutputs(head), DetectTrainOutputs(detect), [make_feats()],
                           training=True, candidate64=BridgedTrainOutputs(head64))
    assert_aligned(rows)


def test_predict_raw_matches_yolov6_detect_eval_mode():
    detect = reference_detect().eval()
    module = EffiDeHead(num_classes=NC, in_channels=CHANNELS)
    for name, var in module.named_parameters():
        var.assign(torch_to_jittor(detect.state_dict()[name]).cast(var.dtype))
    module.eval()
    feats = make_feats(2)
    with torch.no_grad():
        expected = detect(list(feats)).numpy()
    out = module.predict_raw([jt.array(f.numpy()) for f in feats]).numpy()
    assert out.shape == (BATCH, 84, 5 + NC)
    # Boxes compared in stride units (the head computes them so, then multiplies by the stride, a
    # power of 2: exact): in pixels random weights give boxes of ~600 px, where one float32 ulp is
    # 6e-5 and 1e-4 absolute would be 2 ulp.
    strides = np.concatenate([np.full(h * w, s, np.float32) for (h, w), s in
                              zip(SIZES, (8, 16, 32))])[None, :, None]
    assert np.abs(out[..., :4] / strides - expected[..., :4] / strides).max() <= 1e-4
    assert np.abs(out[..., 4:] - expected[..., 4:]).max() <= 1e-4


def test_fresh_head_initialisation():
    head = EffiDeHead(num_classes=NC, in_channels=CHANNELS)
    for conv in head.cls_preds:
        assert np.all(conv.weight.numpy() == 0)
        assert np.allclose(conv.bias.numpy(), -np.log(99.0))
    for conv in head.reg_preds:
        assert np.all(conv.weight.numpy() == 0) and np.all(conv.bias.numpy() == 1)
    assert np.array_equal(head.proj.numpy(), np.arange(17, dtype=np.float32))
    assert not head.proj.requires_grad


# --------------------------------------------------------------------------------------------------
# Assignment and losses against ComputeLoss
# --------------------------------------------------------------------------------------------------
def compute_loss():
    return yolov6_compute_loss(NC, IMG)


def loss_inputs(seed=0):
    rng = np.random.RandomState(seed)
    logits = rng.randn(BATCH, 84, NC).astype(np.float32)
    distri = (rng.randn(BATCH, 84, 68) * 1.5).astype(np.float32)
    return logits, distri


def to_levels(flat):
    """(N, L, C) -> per-level (N, C, H, W) (inverse of Detect's flattening)."""
    out, start = [], 0
    for h, w in SIZES:
        chunk = flat[:, start:start + h * w]
        chunk = chunk.reshape(flat.shape[0], h, w, -1).transpose(0, 3, 1, 2)
        out.append(np.ascontiguousarray(chunk))
        start += h * w
    return out


def from_levels(maps):
    return np.concatenate([m.reshape(m.shape[0], m.shape[1], -1).transpose(0, 2, 1)
                           for m in maps], 1)


def yolov6_assignment(logits, distri, dtype):
    """yolov6's TAL on the loss inputs (as ComputeLoss calls it), in ``dtype``."""
    loss = compute_loss()
    feats = [torch.zeros(BATCH, 1, h, w, dtype=dtype) for h, w in SIZES]
    _, points, _, strides = yolov6('assigners.anchor_generator').generate_anchors(
        feats, [8, 16, 32], 5.0, 0.5, device='cpu')
    points, strides = points.to(dtype), strides.to(dtype)
    targets = loss.preprocess(TARGETS.clone(), BATCH, torch.full((1, 4), IMG).to(dtype))
    targets = targets.to(dtype)
    gt_labels, gt_bboxes = targets[:, :, :1], targets[:, :, 1:]
    mask_gt = (gt_bboxes.sum(-1, keepdim=True) > 0).to(dtype)
    scores = torch.from_numpy(logits).to(dtype).sigmoid()
    loss.proj = nn.Parameter(loss.proj.to(dtype), requires_grad=False)
    boxes = loss.bbox_decode(points / strides, torch.from_numpy(distri).to(dtype)) * strides
    out = loss.formal_assigner(scores, boxes, points, gt_labels, gt_bboxes, mask_gt)
    return out, (scores, boxes, points, gt_labels, gt_bboxes, mask_gt)


def assert_tal_margins(inputs, topk=13):
    """Every TAL decision of the float64 run decided by a margin (see the module docstring)."""
    scores, boxes, points, gt_labels, gt_bboxes, mask_gt = (t.double() for t in inputs)
    iou = yolov6('assigners.assigner_utils').iou_calculator
    for b in range(scores.shape[0]):
        valid = mask_gt[b, :, 0] > 0
        gts, labels = gt_bboxes[b][valid], gt_labels[b][valid, 0].long()
        if not len(gts):
            continue
        deltas = torch.cat([points[None] - gts[:, None, :2], gts[:, None, 2:] - points[None]], -1)
        inside = deltas.min(-1).values
        assert float(inside.abs().min()) >= 0.05, 'an anchor point on a box edge'
        overlaps = iou(gts[None], boxes[b][None])[0]
        metric = scores[b][:, labels].T * overlaps.pow(6) * (inside > 0)
        top = metric.sort(-1, descending=True).values
        cut = top[:, topk - 1:topk + 1]
        live = cut[:, 0] > 0
        gaps = (cut[live, 0] - cut[live, 1]) / cut[live, 0]
        assert gaps.numel() == 0 or float(gaps.min()) >= 1e-4, 'a top-k cut within 1e-4'
        if len(gts) > 1:
            two = overlaps.sort(0, descending=True).values
            assert float((two[0] - two[1]).abs().min()) >= 1e-4, 'an IoU tie between two boxes'


def jittor_gts(inputs):
    _, _, _, gt_labels, gt_bboxes, mask_gt = inputs
    gts = []
    for b in range(BATCH):
        valid = mask_gt[b, :, 0] > 0
        gts.append(dict(bboxes=jt.array(gt_bboxes[b][valid].numpy().astype(np.float32)),
                        labels=jt.array(gt_labels[b][valid, 0].numpy().astype(np.int64))))
    return gts


def test_assignment_matches_yolov6_tal():
    logits, distri = loss_inputs()
    (labels32, bboxes32, scores32, fg32), inputs = yolov6_assignment(logits, distri,
                                                                     torch.float32)
    (_, _, _, fg64), inputs64 = yolov6_assignment(logits, distri, torch.float64)
    assert_tal_margins(inputs64)
    assert torch.equal(fg32, fg64)
    assert int(fg32.sum()) > 10 and not fg32[2].any()  # positives; none in the empty image
    head = EffiDeHead(num_classes=NC, in_channels=CHANNELS)
    assigned = head.assign([jt.array(m) for m in to_levels(logits)],
                           [jt.array(m) for m in to_levels(distri)], jittor_gts(inputs))
    for b, result in enumerate(assigned):
        fg = result['fg_mask'].numpy()
        assert np.array_equal(fg, fg32[b].numpy()), b
        assert np.array_equal(result['labels'].numpy()[fg], labels32[b].numpy()[fg])
        assert np.abs(result['bboxes'].numpy()[fg] - bboxes32[b].numpy()[fg]).max(initial=0) \
            <= 1e-5
        assert np.abs(result['scores'].numpy() - scores32[b].numpy()).max() <= 1e-5


def test_losses_and_gradients_match_yolov6_compute_loss():
    logits, distri = loss_inputs()
    _, inputs64 = yolov6_assignment(logits, distri, torch.float64)
    assert_tal_margins(inputs64)
    loss = compute_loss()
    t_logits = torch.from_numpy(logits).requires_grad_()
    t_distri = torch.from_numpy(distri).requires_grad_()
    feats = [torch.zeros(BATCH, 1, h, w) for h, w in SIZES]
    total, parts = loss((feats, t_logits.sigmoid(), t_distri), TARGETS.clone(), 0, 1)
    total.backward()
    expected = dict(loss_iou=float(parts[0]), loss_dfl=float(parts[1]), loss_cls=float(parts[2]))

    head = EffiDeHead(num_classes=NC, in_channels=CHANNELS)
    cls_maps = [jt.array(m) for m in to_levels(logits)]
    reg_maps = [jt.array(m) for m in to_levels(distri)]
    _, inputs = yolov6_assignment(logits, distri, torch.float32)
    losses = head.loss_by_feat(cls_maps, reg_maps, jittor_gts(inputs), [{}] * BATCH)
    for key, value in expected.items():
        got = float(losses[key].item())
        assert abs(got - value) <= 1e-5 * max(1.0, abs(value)), (key, got, value)
    grads = jt.grad(sum(losses.values()), cls_maps + reg_maps)
    for ours, ref in ((from_levels([g.numpy() for g in grads[:3]]), t_logits.grad.numpy()),
                      (from_levels([g.numpy() for g in grads[3:]]), t_distri.grad.numpy())):
        assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()


def test_no_ground_truth_anywhere():
    head = EffiDeHead(num_classes=NC, in_channels=CHANNELS)
    logits, distri = loss_inputs(1)
    empty = [dict(bboxes=jt.zeros((0, 4)), labels=jt.zeros((0, ), 'int64'))] * BATCH
    losses = head.loss_by_feat([jt.array(m) for m in to_levels(logits)],
                               [jt.array(m) for m in to_levels(distri)], empty, [{}] * BATCH)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))  # only the negatives' varifocal term
    expected = (-np.log(1 - p) * 0.75 * p ** 2).sum()
    assert abs(float(losses['loss_cls'].item()) - expected) <= 1e-5 * expected
    assert float(losses['loss_iou'].item()) == 0 and float(losses['loss_dfl'].item()) == 0


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(atss_warmup_epoch=4), NotImplementedError, 'ATSS'),
    (dict(iou_type='siou'), NotImplementedError, 'giou'),
    (dict(use_dfl=False), NotImplementedError, 'use_dfl'),
    (dict(strides=(8, 16)), ValueError, 'strides'),
])
def test_unbuilt_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        EffiDeHead(num_classes=NC, in_channels=CHANNELS, **kwargs)
