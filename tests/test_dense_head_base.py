"""``JittorBaseDenseHead`` (and ``JittorAnchorHead`` on it) and the shared ``multiclass_nms``
against mmdet 3.3.0's ``BaseDenseHead`` / ``AnchorHead`` / ``multiclass_nms``.

* A tiny anchor head with **three outputs per level** (class logits, box deltas, a score-factor
  logit as FCOS's centerness or ATSS's IoU branch): ``loss``, ``predict`` and
  ``loss_and_predict`` route every output; its class and box losses and their feature gradients
  match mmdet's ``AnchorHead`` with the same 1x1-conv weights.
* ``predict_by_feat`` with score factors, per-level ``nms_pre``, ``score_thr``, ``min_bbox_size``,
  ``rescale`` and ``with_nms=False`` against mmdet's ``AnchorHead.predict_by_feat`` (which is
  ``BaseDenseHead``'s) on the same head outputs, sigmoid and softmax classifiers, two images.
* ``multiclass_nms`` (``jt_mm_plugins.models.utils``) against mmdet's on the same inputs: shared
  and class-specific boxes, score factors, ``max_num``, ``return_inds``, ``class_agnostic``.

Near-ties (see ``assert_decision_margins``): every decision the post-processing takes is made on
inputs built to keep it at least ``MARGIN`` away from its boundary, and the margin is asserted on
a float64 computation before comparing (so neither float32 run can decide differently): the class
scores are a permutation of an evenly spaced logit grid (the ``nms_pre`` cut, ``score_thr``), the
final scores (class score x score factor) of the candidates are pairwise distinct (NMS order,
``max_per_img``), every same-class candidate pair's IoU is away from the NMS threshold, every
width/height away from ``min_bbox_size``. For the losses, every anchor/gt IoU is away from the
assigner's thresholds and each anchor's best gt is unambiguous; the losses themselves
(sigmoid cross-entropy, smooth L1) are continuous with continuous gradients, so they need no
margin.

Tolerances (float32): losses 1e-5 absolute + 1e-4 relative; feature gradients 1e-3 relative
(``max|a - b| / max|b|``); boxes 1e-4 absolute (pixels, images of 64 px); scores 1e-5 absolute.
"""
import copy

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401  (registers the Jittor components)
from jt_mm_plugins.bridge import state_dict_to_jittor
from jt_mm_plugins.models.dense_heads import JittorAnchorHead, JittorBaseDenseHead
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.utils import filter_scores_and_topk, multi_apply, multiclass_nms
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

pytest.importorskip('mmdet.models.dense_heads')
from mmdet.models.layers import multiclass_nms as mm_multiclass_nms  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4
GRAD_RTOL = 1e-3
BOX_ATOL, SCORE_ATOL = 1e-4, 1e-5
MARGIN = 1e-4  # distance of every decision from its boundary, in float64 (see module docstring)
# A seed of ``grid_outputs`` whose decisions keep MARGIN in every case (about one seed in six
# does: with random deltas some same-class IoU often lands near the NMS threshold; the margin
# assertions say so when a change of inputs breaks it).
GRID_SEED = 22

IN_CHANNELS = 4
NUM_CLASSES = 2
FEAT_SIZES = [4, 2, 1]
ANCHOR_GENERATOR = dict(type='AnchorGenerator', scales=[2], ratios=[0.5, 1.0, 2.0],
                        strides=[16, 32, 64])
BBOX_CODER = dict(type='DeltaXYWHBBoxCoder', target_means=(.0, .0, .0, .0),
                  target_stds=(0.1, 0.1, 0.2, 0.2))
NUM_ANCHORS = 3
IMG_METAS = [
    dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64), ori_shape=(64, 64),
         scale_factor=(1.0, 1.0)),
    dict(img_shape=(50, 60), pad_shape=(64, 64), batch_input_shape=(64, 64), ori_shape=(25, 40),
         scale_factor=(1.5, 2.0)),
]
GT_BOXES = [[[4.0, 6.0, 30.0, 40.0], [33.0, 17.0, 61.0, 50.0]],
            [[2.0, 3.0, 25.0, 20.0], [26.0, 22.0, 58.0, 47.0]]]
GT_LABELS = [[0, 1], [1, 0]]
ASSIGNER = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                ignore_iof_thr=-1, match_low_quality=False)
TRAIN_CFG = dict(assigner=ASSIGNER, allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=6, score_thr=0.05, min_bbox_size=0,
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)


def head_args(use_sigmoid: bool = True, test_cfg: dict = TEST_CFG) -> dict:
    return dict(num_classes=NUM_CLASSES, in_channels=IN_CHANNELS, feat_channels=IN_CHANNELS,
                anchor_generator=ANCHOR_GENERATOR, bbox_coder=BBOX_CODER,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=use_sigmoid, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0),
                train_cfg=TRAIN_CFG, test_cfg=test_cfg)


class TinyScoreFactorHead(JittorAnchorHead):
    """Three outputs per level: mmdet ``AnchorHead``'s ``conv_cls`` / ``conv_reg`` (1x1 convs)
    plus ``conv_factor``, a score-factor logit per anchor. Its ``loss_by_feat`` takes all three
    (the factor's loss is a plain mean of squares, enough to see gradients arrive)."""

    def _init_layers(self) -> None:
        self.conv_cls = Conv2d(self.in_channels, self.num_base_priors * self.cls_out_channels, 1)
        self.conv_reg = Conv2d(self.in_channels, self.num_base_priors * 4, 1)
        self.conv_factor = Conv2d(self.in_channels, self.num_base_priors, 1)

    def forward_single(self, x):
        return self.conv_cls(x), self.conv_reg(x), self.conv_factor(x)

    def loss_by_feat(self, cls_scores, bbox_preds, score_factors, batch_gt_instances,
                     batch_img_metas, batch_gt_instances_ignore=None):
        losses = super().loss_by_feat(cls_scores, bbox_preds, batch_gt_instances,
                                      batch_img_metas, batch_gt_instances_ignore)
        losses['loss_factor'] = [(f * f).mean() for f in score_factors]
        return losses


def build_pair(use_sigmoid: bool = True, seed: int = 0):
    """mmdet's ``AnchorHead`` with random weights and the tiny Jittor head with the same
    ``conv_cls`` / ``conv_reg`` weights."""
    mm_head = MODELS.build(ConfigDict(type='AnchorHead', **head_args(use_sigmoid)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in mm_head.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if name.endswith('weight') else 0.1))
    jt_head = TinyScoreFactorHead(**head_args(use_sigmoid))
    state = dict(mm_head.state_dict())
    rng = np.random.default_rng(seed)
    state['conv_factor.weight'] = torch.tensor(
        rng.standard_normal((NUM_ANCHORS, IN_CHANNELS, 1, 1)).astype(np.float32))
    state['conv_factor.bias'] = torch.zeros(NUM_ANCHORS)
    state_dict_to_jittor(jt_head, state, strict=True)
    return mm_head, jt_head


def make_feats(seed: int = 1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, IN_CHANNELS, s, s)).astype(np.float32) for s in FEAT_SIZES]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


# ------------------------------------------------------------------------------------------------
# decision margins (float64)
# ------------------------------------------------------------------------------------------------


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair (mmcv's convention: no +1), float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def min_gap(values: np.ndarray) -> float:
    """Smallest distance between two of ``values`` (inf for fewer than two)."""
    values = np.sort(np.asarray(values, np.float64).reshape(-1))
    return float(np.diff(values).min()) if values.size > 1 else float('inf')


def assert_nms_margins(boxes, scores, labels, iou_thr, margin=MARGIN, class_agnostic=False):
    """NMS decides by score order and by IoU against ``iou_thr`` within a class: the scores must
    be pairwise distinct and every same-class IoU away from the threshold by ``margin``."""
    assert min_gap(scores) >= margin, f'near-tie in NMS scores: gap {min_gap(scores):.2e}'
    ious = iou_matrix(boxes, boxes)
    same = np.ones_like(ious, bool) if class_agnostic else labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    if same.any():
        dist = np.abs(ious[same] - iou_thr).min()
        assert dist >= margin, f'an IoU lies {dist:.2e} from the NMS threshold {iou_thr}'


def decode64(priors: np.ndarray, deltas: np.ndarray, max_shape) -> np.ndarray:
    """mmdet's DeltaXYWH decoding (BBOX_CODER's stds, clipped) in float64, for the margins."""
    stds = np.array(BBOX_CODER['target_stds'], np.float64)
    d = deltas.astype(np.float64) * stds
    p = priors.astype(np.float64)
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    px, py = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    max_ratio = abs(np.log(16 / 1000))
    dw, dh = np.clip(d[:, 2], -max_ratio, max_ratio), np.clip(d[:, 3], -max_ratio, max_ratio)
    gw, gh = pw * np.exp(dw), ph * np.exp(dh)
    gx, gy = px + pw * d[:, 0], py + ph * d[:, 1]
    out = np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], -1)
    h, w = max_shape[:2]
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def level_scores64(cls_level: np.ndarray, use_sigmoid: bool) -> np.ndarray:
    """(num_priors, num_classes) probabilities of one image's level, float64."""
    channels = NUM_CLASSES if use_sigmoid else NUM_CLASSES + 1
    logits = cls_level.transpose(1, 2, 0).reshape(-1, channels).astype(np.float64)
    if use_sigmoid:
        return sigmoid64(logits)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True))[:, :-1]


def level_candidates(flat: np.ndarray, cfg: dict, lvl: int) -> np.ndarray:
    """The (prior, class) entries of one level's flattened float64 scores that ``score_thr`` and
    the ``nms_pre`` cut keep, in descending order, after asserting both decisions keep MARGIN."""
    assert np.abs(flat - cfg['score_thr']).min() >= MARGIN, ('score_thr', lvl)
    valid = np.nonzero(flat > cfg['score_thr'])[0]
    order = valid[np.argsort(-flat[valid], kind='stable')]
    if 0 < cfg['nms_pre'] < len(order):
        gap = flat[order[cfg['nms_pre'] - 1]] - flat[order[cfg['nms_pre']]]
        assert gap >= MARGIN, f'nms_pre cut at level {lvl}: gap {gap:.2e}'
        order = order[:cfg['nms_pre']]
    return order


def assert_decision_margins(outs, cfg, use_sigmoid, mlvl_priors, rescale=False):
    """Every decision of ``predict_by_feat`` on ``outs`` (numpy per-level outputs) is at least
    MARGIN from its boundary, computed in float64: the ``score_thr`` test, the ``nms_pre`` cut
    per level, ``min_bbox_size``, the NMS order and IoU tests (on the rescaled boxes where
    ``rescale``, as NMS sees them). Returns the number of candidates."""
    cls_scores, bbox_preds, factors = outs
    total = 0
    for img_id, meta in enumerate(IMG_METAS):
        cand_boxes, cand_scores, cand_labels = [], [], []
        for lvl, priors in enumerate(mlvl_priors):
            s = level_scores64(cls_scores[lvl][img_id], use_sigmoid)
            flat = s.reshape(-1)
            order = level_candidates(flat, cfg, lvl)
            prior_ids, labels = order // NUM_CLASSES, order % NUM_CLASSES
            deltas = bbox_preds[lvl][img_id].transpose(1, 2, 0).reshape(-1, 4)[prior_ids]
            boxes = decode64(priors[prior_ids], deltas, meta['img_shape'])
            factor = sigmoid64(factors[lvl][img_id].transpose(1, 2, 0).reshape(-1))[prior_ids]
            cand_boxes.append(boxes)
            cand_scores.append(flat[order] * factor)
            cand_labels.append(labels)
        boxes = np.concatenate(cand_boxes)
        if rescale:
            boxes = boxes / np.array(meta['scale_factor'] * 2, np.float64)
        wh = np.concatenate([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
        # a box clipped to one image border on both sides has a size of exactly 0 in any precision
        dist = np.abs(wh[wh != 0] - cfg['min_bbox_size'])
        assert dist.min(initial=1) >= MARGIN, f'a box size lies {dist.min():.2e} from min_bbox_size'
        assert_nms_margins(boxes, np.concatenate(cand_scores), np.concatenate(cand_labels),
                           cfg['nms']['iou_threshold'],
                           class_agnostic=cfg['nms'].get('class_agnostic', False))
        total += len(boxes)
    return total


def grid_outputs(use_sigmoid: bool, seed: int):
    """Head outputs whose class probabilities are an evenly spaced logit grid (permuted), so the
    ``nms_pre`` cut and ``score_thr`` are decided far from ties; deltas and factors random."""
    rng = np.random.default_rng(seed)
    channels = NUM_CLASSES if use_sigmoid else NUM_CLASSES + 1
    cls_scores, bbox_preds, factors = [], [], []
    for s in FEAT_SIZES:
        n = 2 * NUM_ANCHORS * channels * s * s
        grid = np.linspace(-4.0, 4.0, n) + rng.uniform(-0.01, 0.01)
        cls_scores.append(rng.permutation(grid).reshape(2, NUM_ANCHORS * channels, s, s))
        bbox_preds.append(rng.standard_normal((2, NUM_ANCHORS * 4, s, s)))
        factors.append(rng.standard_normal((2, NUM_ANCHORS, s, s)))
    as32 = lambda xs: [x.astype(np.float32) for x in xs]  # noqa: E731
    return as32(cls_scores), as32(bbox_preds), as32(factors)


def compare_results(got, ref, label):
    assert len(got) == len(ref), label
    for img_id, (g, r) in enumerate(zip(got, ref)):
        rb = r.bboxes.numpy()
        assert g['bboxes'].shape[0] == rb.shape[0], (label, img_id, g['bboxes'].shape, rb.shape)
        assert str(g['labels'].dtype) == 'int64', (label, g['labels'].dtype)
        assert np.array_equal(g['labels'].numpy(), r.labels.numpy()), (label, img_id)
        assert np.abs(g['bboxes'].numpy() - rb).max(initial=0) <= BOX_ATOL, (label, img_id)
        assert np.abs(g['scores'].numpy() - r.scores.numpy()).max(initial=0) <= SCORE_ATOL, (
            label, img_id)


# ------------------------------------------------------------------------------------------------
# predict_by_feat
# ------------------------------------------------------------------------------------------------

PREDICT_CASES = {
    'sigmoid': dict(use_sigmoid=True, cfg=TEST_CFG, rescale=False),
    'sigmoid-rescale-minsize': dict(use_sigmoid=True, cfg=dict(TEST_CFG, min_bbox_size=4.0),
                                    rescale=True),
    'softmax-agnostic': dict(
        use_sigmoid=False, rescale=False,
        cfg=dict(TEST_CFG, nms_pre=5, nms=dict(type='nms', iou_threshold=0.4,
                                               class_agnostic=True), max_per_img=7)),
}


@pytest.mark.parametrize('case_name', list(PREDICT_CASES))
@pytest.mark.parametrize('with_score_factors', [True, False])
def test_predict_by_feat_matches_mmdet(case_name, with_score_factors):
    case = PREDICT_CASES[case_name]
    cfg = case['cfg']
    mm_head = MODELS.build(ConfigDict(type='AnchorHead', **head_args(case['use_sigmoid'])))
    jt_head = TinyScoreFactorHead(**head_args(case['use_sigmoid']))
    outs = grid_outputs(case["use_sigmoid"], seed=GRID_SEED)
    priors = [p.numpy() for p in jt_head.prior_generator.grid_priors(
        [(s, s) for s in FEAT_SIZES])]
    if not with_score_factors:  # factor logits of 50 (sigmoid 1 in float64): the plain scores
        outs = (outs[0], outs[1], [np.full_like(f, 50.0) for f in outs[2]])
    n = assert_decision_margins(outs, cfg, case['use_sigmoid'], priors, case['rescale'])
    assert n > 0

    factors = outs[2] if with_score_factors else None
    ref = mm_head.predict_by_feat(
        [torch.tensor(x) for x in outs[0]], [torch.tensor(x) for x in outs[1]],
        score_factors=None if factors is None else [torch.tensor(x) for x in factors],
        batch_img_metas=IMG_METAS, cfg=ConfigDict(copy.deepcopy(cfg)), rescale=case['rescale'])
    got = jt_head.predict_by_feat(
        [jt.array(x) for x in outs[0]], [jt.array(x) for x in outs[1]],
        score_factors=None if factors is None else [jt.array(x) for x in factors],
        batch_img_metas=IMG_METAS, cfg=copy.deepcopy(cfg), rescale=case['rescale'])
    compare_results(got, ref, case_name)
    assert all(r.bboxes.shape[0] > 0 for r in ref)
    # the per-level nms_pre cut keeps at most nms_pre candidates per level and image
    assert all(r.bboxes.shape[0] <= min(cfg['max_per_img'], cfg['nms_pre'] * len(FEAT_SIZES))
               for r in ref)


def test_predict_by_feat_without_nms_returns_every_candidate():
    """``with_nms=False``: the candidates of every level in order (``nms_pre`` per level)."""
    mm_head = MODELS.build(ConfigDict(type='AnchorHead', **head_args()))
    jt_head = TinyScoreFactorHead(**head_args())
    outs = grid_outputs(True, seed=GRID_SEED)
    priors = [p.numpy() for p in jt_head.prior_generator.grid_priors(
        [(s, s) for s in FEAT_SIZES])]
    num_candidates = assert_decision_margins(outs, TEST_CFG, True, priors)
    torch_outs = [[torch.tensor(x) for x in o] for o in outs]
    ref = mm_head.predict_by_feat(*torch_outs[:2], score_factors=torch_outs[2],
                                  batch_img_metas=IMG_METAS, cfg=ConfigDict(TEST_CFG),
                                  with_nms=False)
    got = jt_head.predict_by_feat(*[[jt.array(x) for x in o] for o in outs[:2]],
                                  score_factors=[jt.array(x) for x in outs[2]],
                                  batch_img_metas=IMG_METAS, cfg=TEST_CFG, with_nms=False)
    compare_results(got, ref, 'with_nms=False')
    assert sum(r.bboxes.shape[0] for r in ref) == num_candidates


def test_predict_by_feat_everything_below_score_thr():
    jt_head = TinyScoreFactorHead(**head_args())
    outs = [[jt.full((2, NUM_ANCHORS * c, s, s), -20.0) for s in FEAT_SIZES]
            for c in (NUM_CLASSES, 4, 1)]
    results = jt_head.predict_by_feat(*outs[:2], score_factors=outs[2], batch_img_metas=IMG_METAS)
    for r in results:
        assert tuple(r['bboxes'].shape) == (0, 4) and tuple(r['scores'].shape) == (0, )
        assert tuple(r['labels'].shape) == (0, ) and str(r['labels'].dtype) == 'int64'


def test_predict_by_feat_refusals():
    jt_head = TinyScoreFactorHead(**head_args())
    outs = [[jt.zeros((1, NUM_ANCHORS * c, s, s)) for s in FEAT_SIZES] for c in (NUM_CLASSES, 4, 1)]
    with pytest.raises(InputError, match='levels'):
        jt_head.predict_by_feat(outs[0], outs[1][:2], batch_img_metas=IMG_METAS[:1])
    with pytest.raises(InputError, match='score_factors levels'):
        jt_head.predict_by_feat(outs[0], outs[1], outs[2][:1], batch_img_metas=IMG_METAS[:1])
    with pytest.raises(InputError, match='batch_img_metas'):
        jt_head.predict_by_feat(outs[0], outs[1])
    no_cfg = TinyScoreFactorHead(**head_args(test_cfg=None))
    with pytest.raises(InputError, match='test_cfg'):
        no_cfg.predict_by_feat(outs[0], outs[1], batch_img_metas=IMG_METAS[:1])
    with pytest.raises(KeyError, match='max_per_img'):
        no_cfg.predict_by_feat(outs[0], outs[1], batch_img_metas=IMG_METAS[:1],
                               cfg=dict(score_thr=-1.0, nms=dict(type='nms', iou_threshold=0.5)))
    with pytest.raises(TypeError, match='list/tuple'):
        jt_head(jt.zeros((1, IN_CHANNELS, 4, 4)))


# ------------------------------------------------------------------------------------------------
# loss / predict / loss_and_predict with three outputs per level
# ------------------------------------------------------------------------------------------------


def assert_assignment_margins():
    """MaxIoUAssigner decides by IoU >= pos_iou_thr / < neg_iou_thr and by the best gt per anchor:
    all at least MARGIN from their boundaries (float64)."""
    head = TinyScoreFactorHead(**head_args())
    anchors = np.concatenate(
        [p.numpy() for p in head.prior_generator.grid_priors([(s, s) for s in FEAT_SIZES])])
    positives = 0
    for boxes in GT_BOXES:
        ious = iou_matrix(anchors, np.array(boxes))
        for thr in (ASSIGNER['pos_iou_thr'], ASSIGNER['neg_iou_thr']):
            assert np.abs(ious - thr).min() >= MARGIN, thr
        top2 = np.sort(ious, axis=1)[:, -2:]
        contested = top2[:, 1] >= ASSIGNER['neg_iou_thr']
        assert (top2[contested, 1] - top2[contested, 0]).min(initial=1) >= MARGIN
        positives += int((top2[:, 1] >= ASSIGNER['pos_iou_thr']).sum())
    assert positives > 0


def jt_gts():
    return [dict(bboxes=jt.array(np.array(b, np.float32)), labels=jt.array(np.array(l)).int64())
            for b, l in zip(GT_BOXES, GT_LABELS)]


@pytest.mark.parametrize('use_sigmoid', [True, False])
def test_three_output_head_losses_and_gradients_match_mmdet(use_sigmoid):
    assert_assignment_margins()
    mm_head, jt_head = build_pair(use_sigmoid, seed=2)
    feats = make_feats(seed=3)

    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    gts = [InstanceData(bboxes=torch.tensor(b), labels=torch.tensor(l))
           for b, l in zip(GT_BOXES, GT_LABELS)]
    ref = mm_head.loss_by_feat(*mm_head(xs), gts, IMG_METAS)
    sum(sum(v) for v in ref.values()).backward()

    jxs = [jt.array(f) for f in feats]
    outs = jt_head(jxs)
    assert len(outs) == 3 and all(len(o) == len(FEAT_SIZES) for o in outs)
    assert [tuple(o.shape) for o in outs[2]] == [(2, NUM_ANCHORS, s, s) for s in FEAT_SIZES]
    got = jt_head.loss(jxs, jt_gts(), IMG_METAS)
    assert sorted(got) == ['loss_bbox', 'loss_cls', 'loss_factor']
    for name in ('loss_cls', 'loss_bbox'):
        a = np.array([float(v.item()) for v in got[name]])
        b = np.array([float(v.detach()) for v in ref[name]])
        assert np.allclose(a, b, atol=LOSS_ATOL, rtol=LOSS_RTOL), (name, a, b)
    assert sum(float(v.detach()) for v in ref['loss_bbox']) > 0  # there are positives

    main = sum(sum(got[k]) for k in ('loss_cls', 'loss_bbox'))
    grads = jt.grad(main, jxs)
    errs = [rel_err(g.numpy(), x.grad.numpy()) for g, x in zip(grads, xs)]
    print(f'\n[three outputs, sigmoid={use_sigmoid}] feature grad rel errs {errs}')
    assert max(errs) <= GRAD_RTOL, errs
    # the third output's loss reaches its own layer and only it
    factor_grads = jt.grad(sum(got['loss_factor']),
                           [jt_head.conv_factor.weight, jt_head.conv_cls.weight])
    assert np.abs(factor_grads[0].numpy()).max() > 0
    assert np.abs(factor_grads[1].numpy()).max() == 0


def test_loss_and_predict_and_predict_route_every_output():
    """``loss_and_predict`` = ``loss`` + ``predict_by_feat(*outs, ...)`` with the third output as
    score factors; ``predict`` the same with ``test_cfg``."""
    _, jt_head = build_pair(seed=4)
    jxs = [jt.array(f) for f in make_feats(seed=5)]
    losses, preds = jt_head.loss_and_predict(jxs, jt_gts(), IMG_METAS, proposal_cfg=TEST_CFG)
    ref_losses = jt_head.loss(jxs, jt_gts(), IMG_METAS)
    for name in ref_losses:
        assert [float(v.item()) for v in losses[name]] == [
            float(v.item()) for v in ref_losses[name]], name
    ref_preds = jt_head.predict_by_feat(*jt_head(jxs), batch_img_metas=IMG_METAS, cfg=TEST_CFG)
    for p, r in ((preds, ref_preds), (jt_head.predict(jxs, IMG_METAS), ref_preds)):
        for a, b in zip(p, r):
            for key in ('bboxes', 'scores', 'labels'):
                assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    # the third output is used as score factors: without it the scores differ
    no_factor = jt_head.predict_by_feat(*jt_head(jxs)[:2], batch_img_metas=IMG_METAS,
                                        cfg=TEST_CFG)
    assert not all(np.array_equal(a['scores'].numpy(), b['scores'].numpy())
                   for a, b in zip(no_factor, ref_preds))


def test_base_is_abstract_where_mmdet_is():
    head = JittorBaseDenseHead()
    with pytest.raises(NotImplementedError, match='forward_single'):
        head([jt.zeros((1, 1, 2, 2))])
    with pytest.raises(NotImplementedError, match='loss_by_feat'):
        head.loss_by_feat([], [], [], [])


# ------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------


def test_multi_apply_and_filter_scores_and_topk():
    outs = multi_apply(lambda a, b, k=0: (a + b, a * b + k, -a), [1, 2, 3], [4, 5, 6], k=1)
    assert outs == ([5, 7, 9], [5, 11, 19], [-1, -2, -3])
    scores = jt.array(np.array([[0.1, 0.7], [0.9, 0.3], [0.2, 0.05], [0.7, 0.6]], np.float32))
    extra = jt.array(np.arange(8, dtype=np.float32).reshape(4, 2))
    kept, labels, keep_idxs, filtered = filter_scores_and_topk(scores, 0.15, 4, dict(x=extra))
    # 0.7 occurs twice: the stable order keeps row-major order (prior 0 class 1 first)
    assert np.allclose(kept.numpy(), [0.9, 0.7, 0.7, 0.6])
    assert labels.numpy().tolist() == [0, 1, 0, 1] and str(labels.dtype) == 'int64'
    assert keep_idxs.tolist() == [1, 0, 3, 3]
    assert filtered['x'].numpy()[:, 0].tolist() == [2.0, 0.0, 6.0, 6.0]
    kept_all, _, _, _ = filter_scores_and_topk(scores, 0.15, -1)
    assert kept_all.shape[0] == 6  # topk <= 0 keeps every candidate above score_thr


MCNMS_CASES = {
    'shared-boxes': dict(class_specific=False, factors=False, max_num=-1, agnostic=False),
    'class-specific-factors-max': dict(class_specific=True, factors=True, max_num=6,
                                       agnostic=False),
    'agnostic-factors': dict(class_specific=False, factors=True, max_num=-1, agnostic=True),
}


def mcnms_inputs(class_specific: bool, seed: int):
    """Boxes of a 64 px image, scores on an evenly spaced grid (permuted), random factors."""
    rng = np.random.default_rng(seed)
    n, c = 12, 3
    cols = c if class_specific else 1
    xy = rng.uniform(0, 40, (n, cols, 2))
    wh = rng.uniform(8, 24, (n, cols, 2))
    boxes = np.concatenate([xy, xy + wh], -1).reshape(n, cols * 4).astype(np.float32)
    grid = np.linspace(0.02, 0.98, n * (c + 1))
    scores = rng.permutation(grid).reshape(n, c + 1).astype(np.float32)
    factors = rng.uniform(0.3, 1.0, n).astype(np.float32)
    return boxes, scores, factors


@pytest.mark.parametrize('case_name', list(MCNMS_CASES))
def test_multiclass_nms_matches_mmdet(case_name):
    case = MCNMS_CASES[case_name]
    score_thr, iou_thr = 0.3, 0.3
    boxes, scores, factors = mcnms_inputs(case['class_specific'], seed=21)
    # margins: score_thr on the raw class scores; NMS on the factored scores and the IoUs
    n, c = scores.shape[0], scores.shape[1] - 1
    flat = scores[:, :-1].astype(np.float64).reshape(-1)
    assert np.abs(flat - score_thr).min() >= MARGIN
    cand = np.nonzero(flat > score_thr)[0]
    cand_boxes = (boxes.reshape(n, -1, 4)[:, np.arange(c) if case['class_specific'] else [0] * c]
                  .reshape(-1, 4)[cand])
    cand_scores = flat[cand] * (np.repeat(factors, c)[cand] if case['factors'] else 1.0)
    assert_nms_margins(cand_boxes, cand_scores, cand % c, iou_thr,
                       class_agnostic=case['agnostic'])

    nms_cfg = dict(type='nms', iou_threshold=iou_thr)
    if case['agnostic']:
        nms_cfg['class_agnostic'] = True
    kwargs = dict(max_num=case['max_num'], return_inds=True)
    ref_dets, ref_labels, ref_inds = mm_multiclass_nms(
        torch.tensor(boxes), torch.tensor(scores), score_thr, dict(nms_cfg),
        score_factors=torch.tensor(factors) if case['factors'] else None, **kwargs)
    dets, labels, inds = multiclass_nms(
        jt.array(boxes), jt.array(scores), score_thr, dict(nms_cfg),
        score_factors=jt.array(factors) if case['factors'] else None, **kwargs)
    assert dets.shape[0] == ref_dets.shape[0] > 1, (case_name, dets.shape, ref_dets.shape)
    assert np.abs(dets.numpy() - ref_dets.numpy()).max() <= SCORE_ATOL
    assert np.array_equal(labels.numpy(), ref_labels.numpy())
    assert np.array_equal(inds.numpy(), ref_inds.numpy())
    if case['max_num'] > 0:
        assert dets.shape[0] <= case['max_num']
