"""``JittorGFLHead`` against mmdet 3.3.0's ``GFLHead`` with identical weights.

Set-up: mmdet's head (2 stacked convs per tower with GN, 3 classes, reg_max 7, 3 levels of strides
8/16/32, one anchor per location, ATSS assignment, QFL + GIoU + DFL) gets random weights (convs
N(0, 0.1), biases N(0, 0.05), GN affine 1 + N(0, 0.1) / N(0, 0.1), scales 1 + N(0, 0.1)); its state
dict loads into the Jittor head by name (``state_dict_to_jittor``: every key, sizes checked; mmdet's
0-d ``scales.*.scale`` fill Jittor's (1,) Vars). Both see the same features (batch 2, 8 channels,
8x8 / 4x4 / 2x2) and ground truth: image 0 has boxes (or eight crowded ones), image 1 boxes or
none; and batches without any positive (no gt at all, gt outside the image), where the box losses
must be exact zeros and the classification loss finite, as mmdet's.

Compared: head outputs; every loss per level; gradients of the summed loss for the features and
every weight (pure Jittor with ``jt.grad``, and through the bridge from torch); predictions of both
images (``predict``), through the bridged head with mmdet's ``DetDataSample`` interface too.

Near-ties (float32 must not decide anything the float64 computation puts within a margin):
* the towers' ReLUs: every pre-activation (GN output) of a float64 run of the mmdet head is at
  least ``RELU_MARGIN_FACTOR`` times the float32 run's own error away from 0;
* ATSS: the margins of ``test_gfl_parts.assert_atss_margins`` (top-k cut, mean + std threshold,
  centre-in-box, best gt);
* GIoU's gradient has kinks where a predicted side meets the gt side (intersection and enclosing
  boxes switch sides) and where the intersection is empty: every positive's decoded sides are at
  least ``MARGIN`` (in strides) from the gt's, and intersections ``MARGIN`` from empty;
* predictions: ``score_thr``, the ``nms_pre`` cut per level, the NMS order (distinct scores) and
  same-class IoUs against the NMS threshold, all ``MARGIN`` away, on the reference outputs.
QFL (``|q - p|^2``), DFL (interpolation between the bins around the target), the Integral and the
weights ``max_c sigmoid(score)`` are continuous with continuous gradients and need none.

Tolerances (float32): head outputs 1e-4 absolute; losses 1e-5 absolute + 1e-4 relative; gradients
1e-3 relative (``max|a - b| / max|b|``); boxes 1e-4 absolute (pixels, 64 px images); scores 1e-5.
"""
import copy

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge import build_jittor_module, call_jittor, state_dict_to_jittor
from jt_mm_plugins.models.dense_heads import JittorGFLHead
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from test_dense_head_base import assert_nms_margins, level_candidates
from test_gfl_parts import assert_atss_margins

pytest.importorskip('mmdet.models.dense_heads')
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

OUT_ATOL = 1e-4
LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4
GRAD_RTOL = 1e-3
BOX_ATOL, SCORE_ATOL = 1e-4, 1e-5
MARGIN = 1e-4
RELU_MARGIN_FACTOR = 10.0

NUM_CLASSES, IN_CHANNELS, REG_MAX = 3, 8, 7
FEAT_SIZES = [8, 4, 2]
STRIDES = [8, 16, 32]
TOPK = 9
TEST_CFG = dict(nms_pre=12, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=30)
HEAD_CFG = dict(
    num_classes=NUM_CLASSES, in_channels=IN_CHANNELS, feat_channels=8, stacked_convs=2,
    norm_cfg=dict(type='GN', num_groups=4, requires_grad=True), reg_max=REG_MAX,
    anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=4,
                          scales_per_octave=1, strides=STRIDES),
    loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
    loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
    loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=TOPK), allowed_border=-1,
                   pos_weight=-1, debug=False),
    test_cfg=TEST_CFG)
IMG_METAS = [
    dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64), ori_shape=(64, 64),
         scale_factor=(1.0, 1.0)),
    dict(img_shape=(56, 60), pad_shape=(64, 64), batch_input_shape=(64, 64), ori_shape=(28, 40),
         scale_factor=(1.5, 2.0)),
]
# irregular coordinates: no gt centre is equidistant from two anchor centres (ATSS's top-k cut)
GT_BOXES = [[[4.3, 6.1, 30.9, 40.6], [33.2, 17.9, 60.7, 50.4], [12.6, 35.3, 44.1, 61.8]],
            [[2.2, 3.7, 25.9, 20.9], [26.4, 22.8, 57.1, 47.6]]]
GT_LABELS = [[0, 2, 1], [1, 0]]
# Weight and feature seeds whose decisions keep every margin above (about half the pairs do;
# the margin assertions say so when a change of inputs breaks them).
SEED, FEAT_SEED = 0, 3
CROWD_SEED = 0  # its crowded gts keep the ATSS and GIoU margins (most seeds do)


def rel_err(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def randomise_(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if '.gn.' in name:
                p.copy_(1 + 0.1 * noise if name.endswith('weight') else 0.1 * noise)
            elif name.startswith('scales'):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(noise * (0.1 if name.endswith('weight') else 0.05))


def build_pair(seed: int = SEED):
    mm_head = MODELS.build(ConfigDict(type='GFLHead', **copy.deepcopy(HEAD_CFG)))
    randomise_(mm_head, seed)
    jt_head = JittorGFLHead(**copy.deepcopy(HEAD_CFG))
    state_dict_to_jittor(jt_head, mm_head.state_dict(), strict=True)
    return mm_head, jt_head


def make_feats(seed: int):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, IN_CHANNELS, s, s)).astype(np.float32) for s in FEAT_SIZES]


def torch_gts(empty_second: bool):
    out = []
    for i, (boxes, labels) in enumerate(zip(GT_BOXES, GT_LABELS)):
        if empty_second and i == 1:
            out.append(InstanceData(bboxes=torch.zeros((0, 4)),
                                    labels=torch.zeros((0, ), dtype=torch.long)))
        else:
            out.append(InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor(labels)))
    return out


def jt_gts(gts):
    return [dict(bboxes=jt.array(g.bboxes.numpy()), labels=jt.array(g.labels.numpy()).int64())
            for g in gts]


# ------------------------------------------------------------------------------------------------
# margins
# ------------------------------------------------------------------------------------------------


def assert_relu_margins(mm_head, feats):
    """The towers' ReLU inputs (GN outputs) of a float64 run are RELU_MARGIN_FACTOR times the
    float32 run's error away from 0."""
    records = {torch.float32: [], torch.float64: []}

    def hook(_module, _inputs, output):
        # clone: the ReLU after GN runs in place
        records[output.dtype].append(output.detach().clone().double().numpy().reshape(-1))

    handles = [conv.gn.register_forward_hook(hook)
               for conv in list(mm_head.cls_convs) + list(mm_head.reg_convs)]
    try:
        with torch.no_grad():
            mm_head([torch.tensor(f) for f in feats])
            mm64 = copy.deepcopy(mm_head).double()
            mm64([torch.tensor(f, dtype=torch.float64) for f in feats])
    finally:
        for h in handles:
            h.remove()
    pre32, pre64 = (np.concatenate(records[t]) for t in (torch.float32, torch.float64))
    err32 = np.abs(pre32 - pre64).max()
    closest = np.abs(pre64).min()
    assert closest >= RELU_MARGIN_FACTOR * err32, (
        f'a ReLU input lies {closest:.2e} from 0; float32 error {err32:.2e}')
    return closest, err32


def assert_giou_margins(mm_head, feats, gts):
    """Every positive's decoded box (float64 from the reference outputs) keeps MARGIN from its
    gt's sides and from an empty intersection (GIoU's gradient kinks)."""
    with torch.no_grad():
        _, bbox_preds = mm_head([torch.tensor(f) for f in feats])
    featmap_sizes = [(s, s) for s in FEAT_SIZES]
    anchors = [a.numpy() for a in mm_head.prior_generator.grid_priors(featmap_sizes,
                                                                      device='cpu')]
    num_level = [len(a) for a in anchors]
    flat_anchors = np.concatenate(anchors)
    positives = 0
    for img_id, gt in enumerate(gts):
        if len(gt.bboxes) == 0:
            continue
        result = mm_head.assigner.assign(InstanceData(priors=torch.tensor(flat_anchors)),
                                         num_level, gt)
        gt_inds = result.gt_inds.numpy()
        start = 0
        for lvl, (n, stride) in enumerate(zip(num_level, STRIDES)):
            inds = np.nonzero(gt_inds[start:start + n] > 0)[0]
            start += n
            if len(inds) == 0:
                continue
            logits = bbox_preds[lvl][img_id].permute(1, 2, 0).reshape(-1, REG_MAX + 1)
            prob = torch.softmax(logits.double(), 1).numpy()
            dist = (prob @ np.arange(REG_MAX + 1, dtype=np.float64)).reshape(-1, 4)[inds]
            centres = (anchors[lvl][inds, :2] + anchors[lvl][inds, 2:]) / 2 / stride
            pred = np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], 1)
            target = gt.bboxes.numpy().astype(np.float64)[gt_inds[start - n:][inds] - 1] / stride
            assert np.abs(pred - target).min() >= MARGIN, 'a predicted side meets its gt side'
            inter = np.minimum(pred[:, 2:], target[:, 2:]) - np.maximum(pred[:, :2], target[:, :2])
            assert np.abs(inter).min() >= MARGIN, 'an intersection is about to become empty'
            positives += len(inds)
    return positives


def assert_predict_margins(mm_head, cls_scores, bbox_preds, cfg, metas=IMG_METAS,
                           rescales=(False, True)):
    """``predict`` decisions on the reference outputs (float64) keep MARGIN (see docstring); NMS
    runs after ``rescale``, so its IoUs are checked on the boxes of each ``rescales`` case."""
    featmap_sizes = [tuple(c.shape[-2:]) for c in cls_scores]
    num_classes = cls_scores[0].shape[1]
    reg_max = bbox_preds[0].shape[1] // 4 - 1
    anchors = [a.numpy() for a in mm_head.prior_generator.grid_priors(featmap_sizes,
                                                                      device='cpu')]
    total = 0
    for img_id, meta in enumerate(metas):
        boxes, scores, labels = [], [], []
        for lvl, (stride, _) in enumerate(mm_head.prior_generator.strides):
            logits = cls_scores[lvl][img_id].detach().double().permute(1, 2, 0).reshape(
                -1, num_classes).numpy()
            flat = (1 / (1 + np.exp(-logits))).reshape(-1)
            order = level_candidates(flat, cfg, lvl)
            prior_ids = order // num_classes
            reg = bbox_preds[lvl][img_id].detach().double().permute(1, 2, 0).reshape(
                -1, reg_max + 1)
            dist = (torch.softmax(reg, 1).numpy() @ np.arange(reg_max + 1.0)).reshape(-1, 4)
            dist = dist[prior_ids] * stride
            centres = (anchors[lvl][prior_ids, :2] + anchors[lvl][prior_ids, 2:]) / 2
            b = np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], 1)
            h, w = meta['img_shape']
            b[:, 0::2], b[:, 1::2] = np.clip(b[:, 0::2], 0, w), np.clip(b[:, 1::2], 0, h)
            boxes.append(b)
            scores.append(flat[order])
            labels.append(order % num_classes)
        boxes, scores, labels = (np.concatenate(x) for x in (boxes, scores, labels))
        for rescale in rescales:
            scale = np.array(meta['scale_factor'] * 2, np.float64) if rescale else 1.0
            assert_nms_margins(boxes / scale, scores, labels, cfg['nms']['iou_threshold'], MARGIN)
        total += len(boxes)
    return total


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


def test_structure_and_outputs_match_mmdet():
    mm_head, jt_head = build_pair()
    mm_names = dict(mm_head.named_parameters())
    jt_params = dict(jt_head.named_parameters())
    assert set(jt_params) == set(mm_head.state_dict())
    assert set(mm_names) | {'integral.project'} == set(jt_params)
    assert not jt_params['integral.project'].requires_grad  # a buffer in mmdet
    # inside a Jittor parent, mmdet's name builds the Jittor twin
    assert type(build_jittor_module(dict(type='GFLHead', **copy.deepcopy(HEAD_CFG)))) is \
        JittorGFLHead
    feats = make_feats(FEAT_SEED)
    with torch.no_grad():
        ref = mm_head([torch.tensor(f) for f in feats])
    got = jt_head([jt.array(f) for f in feats])
    assert len(got) == 2
    for r_lvls, g_lvls in zip(ref, got):
        for r, g in zip(r_lvls, g_lvls):
            assert tuple(g.shape) == tuple(r.shape)
            assert np.abs(g.numpy() - r.numpy()).max() <= OUT_ATOL


def crowded_gts(seed: int, num: int = 8):
    """Image 0: ``num`` overlapping boxes around the image centre (anchors contested by several
    gts); image 1: its usual boxes."""
    rng = np.random.default_rng(seed)
    centres = 32 + rng.uniform(-10, 10, (num, 2))
    half = rng.uniform(6, 16, (num, 2))
    boxes = np.concatenate([centres - half, centres + half], 1).astype(np.float32)
    labels = torch.tensor(rng.integers(0, NUM_CLASSES, num))
    return [InstanceData(bboxes=torch.tensor(boxes), labels=labels), torch_gts(False)[1]]


def empty_gts():
    return [InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))
            for _ in IMG_METAS]


def check_losses_and_gradients(gts, label: str, seed: int = SEED, feat_seed: int = FEAT_SEED,
                               expect_positives: bool = True):
    mm_head, jt_head = build_pair(seed)
    feats = make_feats(feat_seed)
    closest, err32 = assert_relu_margins(mm_head, feats)
    priors = np.concatenate([a.numpy() for a in mm_head.prior_generator.grid_priors(
        [(s, s) for s in FEAT_SIZES], device='cpu')])
    num_level = [s * s for s in FEAT_SIZES]
    for g in gts:
        if len(g.bboxes):
            assert_atss_margins(priors, num_level, g.bboxes.numpy(), TOPK)
    assert (assert_giou_margins(mm_head, feats, gts) > 0) == expect_positives

    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    ref = mm_head.loss_by_feat(*mm_head(xs), gts, IMG_METAS)
    sum(sum(v) for v in ref.values()).backward()

    jxs = [jt.array(f) for f in feats]
    got = jt_head.loss(jxs, jt_gts(gts), IMG_METAS)
    errs, worst = compare_losses_and_gradients(got, ref, jt_head, jxs, xs,
                                               dict(mm_head.named_parameters()))
    print(f'\n[gfl losses, {label}] relu margin {closest:.1e} '
          f'(float32 err {err32:.1e}); worst grad {worst} {errs[worst]:.2e}')
    assert errs[worst] <= GRAD_RTOL, errs
    return ref


def compare_losses_and_gradients(got, ref, jt_head, jt_feats, ref_feats, ref_params):
    """Every loss of ``got`` (Jittor, per level) within LOSS_ATOL + LOSS_RTOL of ``ref`` (torch,
    already back-propagated from its summed losses); the relative errors of the gradients of the
    summed Jittor losses w.r.t. the features and every trainable weight against the torch ones
    (``ref_params`` by the Jittor head's parameter names) and the worst of them."""
    assert sorted(got) == sorted(ref) == ['loss_bbox', 'loss_cls', 'loss_dfl']
    for name in ref:
        a = np.array([float(v.item()) for v in got[name]])
        b = np.array([float(v.detach()) for v in ref[name]])
        assert np.all(np.isfinite(a)), (name, a)
        assert np.allclose(a, b, atol=LOSS_ATOL, rtol=LOSS_RTOL), (name, a, b)
    params = dict(jt_head.named_parameters())
    trainable = [n for n, p in params.items() if p.requires_grad]
    grads = jt.grad(sum(sum(v) for v in got.values()), list(jt_feats) +
                    [params[n] for n in trainable])
    errs = {f'feat{i}': rel_err(g.numpy(), x.grad.numpy())
            for i, (g, x) in enumerate(zip(grads, ref_feats))}
    for g, name in zip(grads[len(jt_feats):], trainable):
        errs[name] = rel_err(g.numpy(), ref_params[name].grad.numpy().reshape(g.shape))
    return errs, max(errs, key=errs.get)


def test_losses_and_gradients_match_mmdet():
    check_losses_and_gradients(torch_gts(empty_second=False), 'two images')


def test_losses_and_gradients_with_an_image_without_gt():
    ref = check_losses_and_gradients(torch_gts(empty_second=True), 'image 1 without gt')
    assert sum(float(v.detach()) for v in ref['loss_bbox']) > 0


def test_losses_and_gradients_with_crowded_gt():
    """Eight overlapping gts in one image: priors positive for several gts take the best IoU."""
    check_losses_and_gradients(crowded_gts(CROWD_SEED), 'crowded gt')


@pytest.mark.parametrize('kind', ['no gt at all', 'gt outside the image'])
def test_losses_without_positives_are_finite_and_match_mmdet(kind):
    """No image has a positive: the box losses are exact zeros (that still back-propagate), the
    classification loss pushes every score down; both as mmdet."""
    gts = empty_gts()
    if kind == 'gt outside the image':  # boxes beyond the 64 px image: no prior centre inside
        gts = [InstanceData(bboxes=torch.tensor([[70.3, 66.1, 90.7, 95.2]]),
                            labels=torch.tensor([1])) for _ in IMG_METAS]
    ref = check_losses_and_gradients(gts, kind, expect_positives=False)
    values = {k: [float(v.detach()) for v in vs] for k, vs in ref.items()}
    assert all(v == 0 for v in values['loss_bbox'] + values['loss_dfl'])
    assert all(np.isfinite(v) and v > 0 for v in values['loss_cls'])


def test_predict_matches_mmdet_on_two_images():
    mm_head, jt_head = build_pair()
    feats = make_feats(FEAT_SEED)
    with torch.no_grad():
        outs = mm_head([torch.tensor(f) for f in feats])
    assert assert_predict_margins(mm_head, *outs, TEST_CFG) > 0
    for rescale in (False, True):
        with torch.no_grad():
            ref = mm_head.predict_by_feat(*outs, batch_img_metas=IMG_METAS, rescale=rescale)
        got = jt_head.predict([jt.array(f) for f in feats], IMG_METAS, rescale=rescale)
        assert_same_detections(ref, got)


def assert_same_detections(ref, got):
    """Per image: the same non-empty detections (labels exact, boxes BOX_ATOL, scores
    SCORE_ATOL) in mmdet's ``InstanceData`` (``ref``) and the Jittor head's dicts (``got``)."""
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert g['bboxes'].shape[0] == r.bboxes.shape[0] > 0
        assert np.array_equal(g['labels'].numpy(), r.labels.numpy())
        assert np.abs(g['bboxes'].numpy() - r.bboxes.numpy()).max() <= BOX_ATOL
        assert np.abs(g['scores'].numpy() - r.scores.numpy()).max() <= SCORE_ATOL


def bridged_head(cfg: dict, state_dict):
    """The head built by mmdet's registry (bridged) with ``state_dict`` loaded strictly."""
    bridged = MODELS.build(ConfigDict(cfg))
    own = dict(bridged.state_dict())
    bridged.load_state_dict({k: v.reshape(own[k].shape) for k, v in state_dict.items()},
                            strict=True)
    return bridged


def det_data_samples(gts, metas=IMG_METAS):
    """mmdet's ``DetDataSample`` per image, with its meta information and gt instances."""
    samples = []
    for meta, gt in zip(metas, gts):
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = gt
        samples.append(sample)
    return samples


def test_bridged_head_speaks_mmdet_dense_head_interface():
    """``MODELS.build(dict(type='JittorGFLHead'))`` is a ``BridgedDenseHead``: mmdet's GFL detector
    calls ``loss(x, data_samples)`` / ``predict(x, data_samples)`` on it as on ``GFLHead``."""
    mm_head, _ = build_pair()
    bridged = bridged_head(dict(type='JittorGFLHead', **copy.deepcopy(HEAD_CFG)),
                           mm_head.state_dict())
    feats = make_feats(FEAT_SEED)
    samples = det_data_samples(torch_gts(empty_second=True))
    xs_ref = [torch.tensor(f, requires_grad=True) for f in feats]
    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    ref = mm_head.loss(xs_ref, samples)
    got = bridged.loss(xs, samples)
    for name in ref:
        assert np.allclose([float(v) for v in got[name]], [float(v) for v in ref[name]],
                           atol=LOSS_ATOL, rtol=LOSS_RTOL), name
    sum(sum(v) for v in ref.values()).backward()
    sum(sum(v) for v in got.values()).backward()
    assert max(rel_err(a.grad.numpy(), b.grad.numpy()) for a, b in zip(xs, xs_ref)) <= GRAD_RTOL
    for name, p in bridged.named_parameters():
        if p.requires_grad:
            ref_grad = dict(mm_head.named_parameters())[name].grad.numpy().reshape(p.shape)
            assert rel_err(p.grad.numpy(), ref_grad) <= GRAD_RTOL, name
    with torch.no_grad():
        ref_pred = mm_head.predict([torch.tensor(f) for f in feats], samples)
        got_pred = bridged.predict([torch.tensor(f) for f in feats], samples)
    for r, g in zip(ref_pred, got_pred):
        assert np.array_equal(g.labels.numpy(), r.labels.numpy())
        assert np.abs(g.bboxes.numpy() - r.bboxes.numpy()).max() <= BOX_ATOL


def test_refusals():
    with pytest.raises(InputError, match='one anchor per location'):
        JittorGFLHead(**dict(copy.deepcopy(HEAD_CFG), anchor_generator=dict(
            type='AnchorGenerator', ratios=[0.5, 1.0], octave_base_scale=4, scales_per_octave=1,
            strides=STRIDES)))
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):  # as mmdet's
        MODELS.build(ConfigDict(type='JittorGFLHead', foo=1, **copy.deepcopy(HEAD_CFG)))
    with pytest.raises(KeyError, match='bogus'):
        JittorGFLHead(**dict(copy.deepcopy(HEAD_CFG),
                             train_cfg=dict(HEAD_CFG['train_cfg'], bogus=1)))
    head = JittorGFLHead(**copy.deepcopy(HEAD_CFG))
    with pytest.raises(InputError, match='feature levels'):
        head([jt.zeros((1, IN_CHANNELS, 4, 4))])
    outs = head([jt.zeros((1, IN_CHANNELS, s, s)) for s in FEAT_SIZES])
    with pytest.raises(KeyError, match='score_thr'):
        head.predict_by_feat(*outs, batch_img_metas=IMG_METAS[:1],
                             cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=5))
    with pytest.raises(InputError, match='levels'):
        head.predict_by_feat(outs[0], outs[1][:2], batch_img_metas=IMG_METAS[:1])


def test_bridged_training_forward_through_call_jittor():
    """The Jittor-native ``loss`` called from torch through the bridge (``call_jittor``) gives the
    pure-Jittor losses."""
    _, jt_head = build_pair()
    feats = make_feats(FEAT_SEED)
    gts = torch_gts(empty_second=False)
    dict_gts = [dict(bboxes=g.bboxes, labels=g.labels) for g in gts]
    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    bridged = call_jittor(jt_head.loss, (xs, dict_gts, IMG_METAS))
    pure = jt_head.loss([jt.array(f) for f in feats], jt_gts(gts), IMG_METAS)
    for name in pure:
        assert np.allclose([float(v) for v in bridged[name]], [float(v.item()) for v in pure[name]],
                           atol=1e-6), name
