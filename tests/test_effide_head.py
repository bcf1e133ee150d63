"""EffiDeHead (Jittor) against yolov6detect's ``Detect`` (outputs, gradients) and ``ComputeLoss`` /
``TaskAlignedAssigner`` / ``ATSSAssigner`` (assignments, losses, gradients) on identical inputs:
TAL with DFL and GIoU (Gold-YOLO-S), the ATSS warm-up (``atss_warmup_epoch``; ComputeLoss's
``warmup_epoch``), SIoU without DFL (Gold-YOLO-N: ``use_dfl=False``, ``reg_max=0``).

Tiny head: 3 classes, levels of 8 / 16 / 32 channels at strides 8 / 16 / 32 of 64-px images
(8x8, 4x4, 2x2 maps: 84 anchors), batch 3 (two, one and no ground truths). Tolerances: outputs
1e-4 max abs, gradients 1e-3 relative (``compare_modules`` with float64 twins for the forward;
losses 1e-5 relative). Robust by construction: before comparing assignments and losses, the float64
run of yolov6's assigner is checked to decide every decision by a margin (TAL: anchor points at
least 0.05 px inside or outside each box, the top-k cut at least 1e-4 relative, the largest-IoU
choice for anchors claimed twice at least 1e-4; ATSS: the same for anchor centres and the
largest-IoU choice, each level's top-k distance cut 1e-4 relative, candidate IoUs 1e-4 from the
mean + std threshold; SIoU: its branches 1e-4 from their switch), and its float32 run gives the
same assignment.
"""
import numpy as np
import pytest
import torch
from torch import nn

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401  (registers EffiDeHead in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import compare_modules
from jt_mm_plugins.alignment.yolov6_reference import (DetectOutputs, EffiDeHeadOutputs,
                                                      yolov6_compute_loss)
from jt_mm_plugins.alignment.yolov6_reference import reference_detect as yolov6_reference_detect
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.models.dense_heads.effide_head import EffiDeHead

from alignment_checks import assert_aligned, bridged_twins
from yolov6_reference import yolov6

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


def reference_detect(seed=0, use_dfl=True):
    return yolov6_reference_detect(CHANNELS, NC, make_feats(seed + 1), seed, use_dfl)


def test_forward_matches_yolov6_detect_train_mode():
    detect = reference_detect()
    cfg = dict(type='EffiDeHead', num_classes=NC, in_channels=CHANNELS)
    head, head64 = bridged_twins(cfg, detect.state_dict())
    assert list(head.state_dict()) == sorted(detect.state_dict(), key=list(
        head.state_dict()).index)
    rows = compare_modules(EffiDeHeadOutputs(head), DetectOutputs(detect), [make_feats()],
                           training=True, candidate64=EffiDeHeadOutputs(head64))
    assert_aligned(rows)


@pytest.mark.parametrize('use_dfl', [True, False], ids=['dfl', 'no_dfl'])
def test_predict_raw_matches_yolov6_detect_eval_mode(use_dfl):
    detect = reference_detect(use_dfl=use_dfl).eval()
    module = EffiDeHead(num_classes=NC, in_channels=CHANNELS, use_dfl=use_dfl,
                        reg_max=16 if use_dfl else 0)
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
# ATSS's case: centres moved off the anchor grid's symmetries (with TARGETS' centres at 96 px two
# anchors lie at exactly equal distances from a centre at the top-k cut)
ATSS_TARGETS = TARGETS + torch.tensor([0, 0, 0.0137, -0.0071, 0, 0])
# (EffiDeHead options, ComputeLoss options, image size, targets): TAL with DFL and GIoU
# (Gold-YOLO-S), the ATSS warm-up (epoch 0 of 4; 96 px: yolov6's ATSSAssigner fails on a level of
# fewer than topk 9 anchors), N's SIoU without DFL
CASES = {'tal': (dict(), dict(), IMG, TARGETS),
         'atss_warmup': (dict(atss_warmup_epoch=4), dict(warmup_epoch=4), 96, ATSS_TARGETS),
         'siou_no_dfl': (dict(use_dfl=False, reg_max=0, iou_type='siou'),
                         dict(reg_max=0, iou_type='siou'), IMG, TARGETS)}


def level_sizes(img=IMG):
    return [(img // s, img // s) for s in (8, 16, 32)]


def compute_loss(img=IMG, **kwargs):
    return yolov6_compute_loss(NC, img, **kwargs)


def loss_inputs(seed=0, use_dfl=True, img=IMG):
    rng = np.random.RandomState(seed)
    anchors = sum(h * w for h, w in level_sizes(img))
    logits = rng.randn(BATCH, anchors, NC).astype(np.float32)
    if use_dfl:
        distri = (rng.randn(BATCH, anchors, 68) * 1.5).astype(np.float32)
    else:  # the 4 distances themselves (stride units)
        distri = (np.abs(rng.randn(BATCH, anchors, 4)) * 1.5 + 0.3).astype(np.float32)
    return logits, distri


def to_levels(flat, img=IMG):
    """(N, L, C) -> per-level (N, C, H, W) (inverse of Detect's flattening)."""
    out, start = [], 0
    for h, w in level_sizes(img):
        chunk = flat[:, start:start + h * w]
        chunk = chunk.reshape(flat.shape[0], h, w, -1).transpose(0, 3, 1, 2)
        out.append(np.ascontiguousarray(chunk))
        start += h * w
    return out


def from_levels(maps):
    return np.concatenate([m.reshape(m.shape[0], m.shape[1], -1).transpose(0, 2, 1)
                           for m in maps], 1)


def yolov6_assignment(logits, distri, dtype, img=IMG, targets=TARGETS, **loss_kwargs):
    """yolov6's assignment on the loss inputs as ComputeLoss makes it at epoch 0 (ATSS when
    ``warmup_epoch`` > 0, TAL otherwise), in ``dtype``. Returns it, the TAL inputs and the ATSS
    anchors (boxes, per-level counts, strides)."""
    loss = compute_loss(img, **loss_kwargs)
    feats = [torch.zeros(BATCH, 1, h, w, dtype=dtype) for h, w in level_sizes(img)]
    anchors, points, counts, strides = yolov6('assigners.anchor_generator').generate_anchors(
        feats, [8, 16, 32], 5.0, 0.5, device='cpu')
    points, strides = points.to(dtype), strides.to(dtype)
    targets = loss.preprocess(targets.clone(), BATCH, torch.full((1, 4), img).to(dtype))
    targets = targets.to(dtype)
    gt_labels, gt_bboxes = targets[:, :, :1], targets[:, :, 1:]
    mask_gt = (gt_bboxes.sum(-1, keepdim=True) > 0).to(dtype)
    scores = torch.from_numpy(logits).to(dtype).sigmoid()
    loss.proj = nn.Parameter(loss.proj.to(dtype), requires_grad=False)
    boxes = loss.bbox_decode(points / strides, torch.from_numpy(distri).to(dtype)) * strides
    if loss.warmup_epoch > 0:
        out = loss.warmup_assigner(anchors, counts, gt_labels, gt_bboxes, mask_gt, boxes)
    else:
        out = loss.formal_assigner(scores, boxes, points, gt_labels, gt_bboxes, mask_gt)
    return out, (scores, boxes, points, gt_labels, gt_bboxes, mask_gt), (anchors, counts, strides)


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
        positive = torch.zeros_like(metric).scatter_(
            1, metric.topk(topk, -1).indices, 1.0) * (inside > 0)
        multi = positive.sum(0) > 1  # anchors claimed twice: the largest IoU decides
        if multi.any():
            two = overlaps[:, multi].sort(0, descending=True).values
            assert float((two[0] - two[1]).min()) >= 1e-4, 'an IoU tie between two boxes'


def assert_atss_margins(inputs, anchors, counts, topk=9):
    """Every ATSS decision of the float64 run decided by a margin: anchor centres at least 0.05 px
    inside or outside each box, each level's top-k distance cut at least 1e-4 relative, every
    candidate's IoU at least 1e-4 from its box's mean + std threshold, and for anchors positive
    for two boxes the largest IoU ahead by at least 1e-4."""
    _, _, _, gt_labels, gt_bboxes, mask_gt = (t.double() for t in inputs)
    anchors = anchors.double()
    iou2d = yolov6('assigners.iou2d_calculator').iou2d_calculator
    dist_calculator = yolov6('assigners.assigner_utils').dist_calculator
    for b in range(gt_bboxes.shape[0]):
        gts = gt_bboxes[b][mask_gt[b, :, 0] > 0]
        if not len(gts):
            continue
        overlaps = iou2d(gts, anchors)
        distances, centres = dist_calculator(gts, anchors)
        inside = torch.cat([centres[None] - gts[:, None, :2],
                            gts[:, None, 2:] - centres[None]], -1).min(-1).values
        assert float(inside.abs().min()) >= 0.05, 'an anchor centre on a box edge'
        candidates, start = [], 0
        for count in counts:
            level = distances[:, start:start + count]
            k = min(topk, count)
            if count > k:
                near = level.sort(-1).values
                assert float(((near[:, k] - near[:, k - 1]) / near[:, k]).min()) >= 1e-4, \
                    'a top-k distance cut within 1e-4'
            candidates.append(level.topk(k, largest=False).indices + start)
            start += count
        candidates = torch.cat(candidates, 1)
        candidate_ious = overlaps.gather(1, candidates)
        threshold = candidate_ious.mean(-1, keepdim=True) + candidate_ious.std(-1, keepdim=True)
        assert float((candidate_ious - threshold).abs().min()) >= 1e-4, 'an IoU at the threshold'
        positive = torch.zeros_like(overlaps).scatter_(
            1, candidates, (candidate_ious > threshold).double()) * (inside > 0)
        multi = positive.sum(0) > 1
        if multi.any():
            two = overlaps[:, multi].sort(0, descending=True).values
            assert float((two[0] - two[1]).min()) >= 1e-4, 'an IoU tie between two boxes'


def assert_siou_margins(assignment, inputs, strides):
    """SIoU's branches (which angle's sine, the larger width / height, |centre offset|) decided
    by at least 1e-4 (stride units) for every positive of the float64 run."""
    _, target_bboxes, _, fg = assignment
    boxes = inputs[1]
    pred, target = (x[fg.bool()] / strides.expand(x.shape[:2] + (1, ))[fg.bool()]
                    for x in (boxes.double(), target_bboxes.double()))
    offsets = (target[:, :2] + target[:, 2:] - pred[:, :2] - pred[:, 2:]) / 2
    sine = offsets[:, 0].abs() / offsets.norm(dim=1)
    sizes = [(pred[:, i + 2] - pred[:, i]) - (target[:, i + 2] - target[:, i]) for i in (0, 1)]
    assert float(offsets.abs().min()) >= 1e-4, 'a centre offset at 0'
    assert float((sine - 0.5 ** 0.5).abs().min()) >= 1e-4, 'an offset angle at 45 degrees'
    assert float(torch.stack(sizes).abs().min()) >= 1e-4, 'equal widths or heights'


def assert_margins(case, assignment64, inputs64, anchors64):
    if case == 'atss_warmup':
        assert_atss_margins(inputs64, *anchors64[:2])
    else:
        assert_tal_margins(inputs64)
    if case == 'siou_no_dfl':
        assert_siou_margins(assignment64, inputs64, anchors64[2])


def jittor_gts(inputs):
    _, _, _, gt_labels, gt_bboxes, mask_gt = inputs
    gts = []
    for b in range(BATCH):
        valid = mask_gt[b, :, 0] > 0
        gts.append(dict(bboxes=jt.array(gt_bboxes[b][valid].numpy().astype(np.float32)),
                        labels=jt.array(gt_labels[b][valid, 0].numpy().astype(np.int64))))
    return gts


@pytest.mark.parametrize('case', ['tal', 'atss_warmup'])
def test_assignment_matches_yolov6(case):
    head_kwargs, loss_kwargs, img, targets = CASES[case]
    logits, distri = loss_inputs(img=img)
    (labels32, bboxes32, scores32, fg32), inputs, _ = yolov6_assignment(
        logits, distri, torch.float32, img, targets, **loss_kwargs)
    assignment64, inputs64, anchors64 = yolov6_assignment(logits, distri, torch.float64, img,
                                                          targets, **loss_kwargs)
    assert_margins(case, assignment64, inputs64, anchors64)
    assert torch.equal(fg32.bool(), assignment64[3].bool())
    assert int(fg32.sum()) > 10 and not fg32[2].any()  # positives; none in the empty image
    head = EffiDeHead(num_classes=NC, in_channels=CHANNELS, **head_kwargs)
    maps = ([jt.array(m) for m in to_levels(logits, img)],
            [jt.array(m) for m in to_levels(distri, img)])
    assigned = head.assign(*maps, jittor_gts(inputs))
    for b, result in enumerate(assigned):
        fg = result['fg_mask'].numpy()
        assert np.array_equal(fg, fg32[b].numpy().astype(bool)), b
        assert np.array_equal(result['labels'].numpy()[fg], labels32[b].numpy()[fg])
        assert np.abs(result['bboxes'].numpy()[fg] - bboxes32[b].numpy()[fg]).max(initial=0) \
            <= 1e-5
        assert np.abs(result['scores'].numpy() - scores32[b].numpy()).max() <= 1e-5
    if case == 'atss_warmup':  # from atss_warmup_epoch on: TAL
        head.set_epoch(4)
        (_, _, _, tal_fg), _, _ = yolov6_assignment(logits, distri, torch.float32, img, targets)
        assert not torch.equal(tal_fg, fg32.bool())
        assert all(np.array_equal(r['fg_mask'].numpy(), tal_fg[b].numpy())
                   for b, r in enumerate(head.assign(*maps, jittor_gts(inputs))))


@pytest.mark.parametrize('case', sorted(CASES))
def test_losses_and_gradients_match_yolov6_compute_loss(case):
    head_kwargs, loss_kwargs, img, targets = CASES[case]
    logits, distri = loss_inputs(use_dfl=head_kwargs.get('use_dfl', True), img=img)
    assert_margins(case, *yolov6_assignment(logits, distri, torch.float64, img, targets,
                                            **loss_kwargs))
    loss = compute_loss(img, **loss_kwargs)
    t_logits = torch.from_numpy(logits).requires_grad_()
    t_distri = torch.from_numpy(distri).requires_grad_()
    feats = [torch.zeros(BATCH, 1, h, w) for h, w in level_sizes(img)]
    total, parts = loss((feats, t_logits.sigmoid(), t_distri), targets.clone(), 0, 1)
    total.backward()
    expected = dict(loss_iou=float(parts[0]), loss_dfl=float(parts[1]), loss_cls=float(parts[2]))

    head = EffiDeHead(num_classes=NC, in_channels=CHANNELS, **head_kwargs)
    cls_maps = [jt.array(m) for m in to_levels(logits, img)]
    reg_maps = [jt.array(m) for m in to_levels(distri, img)]
    _, inputs, _ = yolov6_assignment(logits, distri, torch.float32, img, targets,
                                     **loss_kwargs)
    losses = head.loss_by_feat(cls_maps, reg_maps, jittor_gts(inputs), [{}] * BATCH)
    for key, value in expected.items():
        got = float(losses[key].item())
        assert abs(got - value) <= 1e-5 * max(1.0, abs(value)), (key, got, value)
    assert (expected['loss_dfl'] == 0) == (case == 'siou_no_dfl')
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


def test_set_epoch_hook_reaches_a_bridged_head_in_an_mmdet_detector():
    """Mixed mode: mmdet's detector has no set_epoch; the hook writes the bridged head's
    ``epoch``, which reaches the Jittor head (pure GoldYOLO: test_gold_yolo_detector.py)."""
    from jt_mm_plugins.engine import SetEpochHook
    from mmdet.registry import MODELS
    head = MODELS.build(dict(type='EffiDeHead', num_classes=NC, in_channels=CHANNELS,
                             atss_warmup_epoch=2))
    model = nn.Module()
    model.bbox_head = head
    SetEpochHook().before_train_epoch(type('Runner', (), dict(model=model, epoch=3))())
    assert head.jittor_module.epoch == 3
    with pytest.raises(ValueError, match='set_epoch'):
        SetEpochHook().before_train_epoch(type('Runner', (), dict(model=nn.Linear(1, 1),
                                                                    epoch=0))())


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(iou_type='ciou'), NotImplementedError, 'giou'),
    (dict(use_dfl=False), ValueError, 'reg_max=0'),
    (dict(reg_max=0), ValueError, 'reg_max >= 1'),
    (dict(atss_warmup_epoch=-1), ValueError, 'atss_warmup_epoch'),
    (dict(strides=(8, 16)), ValueError, 'strides'),
])
def test_bad_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        EffiDeHead(num_classes=NC, in_channels=CHANNELS, **kwargs)
