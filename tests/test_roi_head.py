"""The Jittor RoI head family against mmdet 3.3.0's ``StandardRoIHead``.

mmdet's ``StandardRoIHead`` (``SingleRoIExtractor`` with mmcv's ``RoIAlign``, ``Shared2FCBBoxHead``,
``MaxIoUAssigner``, ``RandomSampler``) is built from a config, given random weights, and its state
dict is loaded *strictly* into ``JittorStandardRoIHead`` built from the *same* config (mmdet's type
names resolve to the Jittor twins). Both get the same features (4 levels, 16 channels, 2 images of
64x64), proposals and gts.

Randomness: the sampler takes ``num=512`` RoIs with ``pos_fraction=0.25``; each image has at most 24
proposals + 3 gts, so every positive (<= 128) and every negative (<= 512 - positives) is taken and
neither sampler ever draws a random subset (both then return the candidates sorted by index).

Tolerances (float32): losses within 1e-5 abs + 1e-4 rel; ``acc`` exactly (a percentage of equal
argmaxes); predictions after NMS (same count, boxes, scores within 1e-4 abs, labels equal); loss
gradients w.r.t. the features and the parameters within 1e-3 relative (max|a - b| / max|b|).
The Jittor side is called through ``call_jittor`` with torch tensors (nested dicts/lists), so the
bridge's differentiable conversion is exercised as a Jittor detector's adapter would use it.

Robust on any machine by construction (jt_mm_plugins/alignment/margins.py): every loss and predict
case first runs mmdet's head in float32 and a float64 copy and asserts that every decision of the
float64 run is farther from its boundary than 10x the float32 error bound there: the ReLUs of the
shared FCs (the feature and parameter gradients pass through them), sorts / top-k cuts and NMS
(``|IoU - iou_threshold|``, score gaps). The cases' seeds are chosen so that it holds.
"""
import copy
from typing import Dict, List

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401  (configures Jittor, registers the Jittor modules)
from jt_mm_plugins.alignment import margins
from jt_mm_plugins.bridge import JITTOR_MODELS, call_jittor, jittor_type
from jt_mm_plugins.models.roi_heads import JittorSingleRoIExtractor, JittorStandardRoIHead
from jt_mm_plugins.models.roi_heads.convfc_bbox_head import (JittorConvFCBBoxHead,
                                                             JittorShared2FCBBoxHead)
from jt_mm_plugins.runtime import jt

pytest.importorskip('mmcv.ops')
import mmdet.models  # noqa: F401,E402  (registers mmdet's modules)
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4
PRED_ATOL = 1e-4
GRAD_RTOL = 1e-3

NUM_CLASSES = 3
CHANNELS = 16
STRIDES = [4, 8, 16, 32]
IMG_SIZE = 64
META = dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64),
            ori_shape=(71, 80), scale_factor=(0.8, 0.9))


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|b|, 1e-12)."""
    if a.size == 0 and b.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def roi_head_cfg(finest_scale: int = 6, **bbox_head_overrides) -> dict:
    """A small Faster R-CNN R-CNN stage, written for mmdet (mmdet's type names)."""
    bbox_head = dict(
        type='Shared2FCBBoxHead',
        in_channels=CHANNELS,
        fc_out_channels=32,
        roi_feat_size=7,
        num_classes=NUM_CLASSES,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_class_agnostic=False,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0))
    bbox_head.update(bbox_head_overrides)
    return dict(
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=CHANNELS,
            featmap_strides=STRIDES,
            finest_scale=finest_scale),
        bbox_head=bbox_head,
        train_cfg=ConfigDict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False),
        test_cfg=ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                            max_per_img=100))


def randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    """Weights that make scores and deltas spread out (mmdet's init gives near-uniform scores)."""
    gen = torch.Generator().manual_seed(seed)
    scales = {'fc_cls.weight': 0.3, 'fc_reg.weight': 0.05, 'shared_fcs': 0.1}
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = next((s for k, s in scales.items() if k in name), 0.1)
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def load_strictly(module: 'jt.nn.Module', state_dict: Dict[str, torch.Tensor]) -> None:
    """Copy a torch state dict into a Jittor module: same keys, same shapes, or fail.

    (``jt_mm_plugins.bridge.state_dict_to_jittor`` does the same but currently passes a Jittor
    ``NanoVector`` to ``torch.reshape``, which torch 2.14 rejects.)
    """
    own = dict(module.named_parameters())
    assert sorted(own) == sorted(state_dict), (sorted(set(own) ^ set(state_dict)))
    for name, value in state_dict.items():
        assert tuple(own[name].shape) == tuple(value.shape), (name, own[name].shape, value.shape)
        own[name].assign(jt.array(value.detach().numpy()))


def build_pair(cfg: dict, seed: int = 0):
    """mmdet's head with random weights and the Jittor head with the same (strictly loaded)."""
    torch_head = MODELS.build(ConfigDict(type='StandardRoIHead', **copy.deepcopy(cfg)))
    torch_head.init_weights()
    randomise_(torch_head, seed)
    jt_head = JittorStandardRoIHead(**copy.deepcopy(cfg))
    load_strictly(jt_head, torch_head.state_dict())
    return torch_head, jt_head


def random_boxes(rng: np.random.Generator, num: int, min_size: float = 2.) -> np.ndarray:
    x1 = rng.uniform(0, IMG_SIZE - min_size - 1, num)
    y1 = rng.uniform(0, IMG_SIZE - min_size - 1, num)
    w = rng.uniform(min_size, IMG_SIZE - x1)
    h = rng.uniform(min_size, IMG_SIZE - y1)
    return np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)


def make_case(seed: int = 0, num_props=(18, 14), num_gts=(3, 2)) -> dict:
    """Features, proposals (random + jittered gts, so there are positives) and gts of 2 images."""
    rng = np.random.default_rng(seed)
    sizes = [IMG_SIZE // s for s in STRIDES]
    feats = [rng.standard_normal((2, CHANNELS, s, s)).astype(np.float32) for s in sizes]
    props, gts, labels = [], [], []
    for n_prop, n_gt in zip(num_props, num_gts):
        gt = random_boxes(rng, n_gt, min_size=14)
        jittered = (np.repeat(gt, 2, 0) + rng.normal(0, 1.5, (2 * n_gt, 4))).astype(np.float32)
        # n_prop == 0 means an image without any proposal
        # one box of the whole image, so that (with finest_scale=6) the coarsest level gets a RoI
        whole = np.array([[0.5, 0.5, IMG_SIZE - 0.5, IMG_SIZE - 0.5]])
        prop = (np.concatenate([random_boxes(rng, n_prop - 1), whole, jittered])
                if n_prop else np.zeros((0, 4)))
        props.append(np.clip(prop, 0, IMG_SIZE).astype(np.float32).reshape(-1, 4))
        gts.append(gt.reshape(-1, 4))
        labels.append(rng.integers(0, NUM_CLASSES, n_gt).astype(np.int64))
    return dict(feats=feats, props=props, gts=gts, labels=labels)


# ------------------------------------------------------------------------------------------------
# mmdet side
# ------------------------------------------------------------------------------------------------


def mmdet_inputs(case: dict, requires_grad: bool, dtype=torch.float32):
    feats = tuple(torch.tensor(f, dtype=dtype, requires_grad=requires_grad) for f in case['feats'])
    rpn_results = [InstanceData(bboxes=torch.tensor(p)) for p in case['props']]
    samples = []
    for gt, label in zip(case['gts'], case['labels']):
        sample = DetDataSample(metainfo=dict(META))
        sample.gt_instances = InstanceData(bboxes=torch.tensor(gt), labels=torch.tensor(label))
        samples.append(sample)
    return feats, rpn_results, samples


def mmdet_loss(torch_head, case: dict):
    torch_head.zero_grad()
    feats, rpn_results, samples = mmdet_inputs(case, requires_grad=True)
    losses = torch_head.loss(feats, rpn_results, samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    param_grads = {k: p.grad.numpy().copy() for k, p in torch_head.named_parameters()
                   if p.grad is not None}
    return ({k: v.detach().numpy() for k, v in losses.items()},
            [f.grad.numpy() for f in feats], param_grads)


def assert_float32_decides(torch_head, case: dict, predict: bool = False, rescale: bool = True):
    """Every ReLU / sort / NMS decision of mmdet's loss (or predict) on ``case``, float64 run,
    lies farther from its boundary than the float32 bound (module docstring)."""
    def run(head, dtype):
        feats, rpn_results, samples = mmdet_inputs(case, requires_grad=not predict, dtype=dtype)
        if predict:
            with torch.no_grad():
                head.predict(feats, rpn_results, samples, rescale=rescale)
        else:
            losses = head.loss(feats, rpn_results, samples)
            sum(v for k, v in losses.items() if 'loss' in k).backward()
    return margins.assert_float32_decides(torch_head, run)


def mmdet_predict(torch_head, case: dict, rescale: bool = True):
    feats, rpn_results, samples = mmdet_inputs(case, requires_grad=False)
    with torch.no_grad():
        results = torch_head.predict(feats, rpn_results, samples, rescale=rescale)
    return [{k: r.get(k).numpy() for k in ('bboxes', 'scores', 'labels')} for r in results]


# ------------------------------------------------------------------------------------------------
# Jittor side, through the bridge (torch tensors in, torch tensors out, differentiable)
# ------------------------------------------------------------------------------------------------


def torch_structures(case: dict, requires_grad: bool):
    feats = [torch.tensor(f, requires_grad=requires_grad) for f in case['feats']]
    proposals = [dict(bboxes=torch.tensor(p), scores=torch.ones(len(p)),
                      labels=torch.zeros(len(p), dtype=torch.long)) for p in case['props']]
    gts = [dict(bboxes=torch.tensor(g), labels=torch.tensor(l))
           for g, l in zip(case['gts'], case['labels'])]
    return feats, proposals, gts


def jittor_loss_via_bridge(jt_head: JittorStandardRoIHead, case: dict):
    feats, proposals, gts = torch_structures(case, requires_grad=True)
    metas = [dict(META) for _ in proposals]
    losses = call_jittor(lambda f, p, g: jt_head.loss(f, p, g, metas), (feats, proposals, gts))
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    total.backward()
    return ({k: v.detach().numpy() for k, v in losses.items()}, [f.grad.numpy() for f in feats],
            proposals)


def jittor_predict_via_bridge(jt_head: JittorStandardRoIHead, case: dict, rescale: bool = True):
    feats, proposals, _ = torch_structures(case, requires_grad=False)
    metas = [dict(META) for _ in proposals]
    with torch.no_grad():
        results = call_jittor(lambda f, p: jt_head.predict(f, p, metas, rescale=rescale),
                              (feats, proposals))
    return [{k: v.numpy() for k, v in r.items()} for r in results]


def jittor_param_grads(jt_head: JittorStandardRoIHead, case: dict) -> Dict[str, np.ndarray]:
    """Pure Jittor: loss on Vars, ``jt.grad`` w.r.t. every parameter."""
    feats = [jt.array(f) for f in case['feats']]
    proposals = [dict(bboxes=jt.array(p)) for p in case['props']]
    gts = [dict(bboxes=jt.array(g), labels=jt.array(l)) for g, l in zip(case['gts'],
                                                                       case['labels'])]
    losses = jt_head.loss(feats, proposals, gts, [dict(META) for _ in proposals])
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    params = dict(jt_head.named_parameters())
    grads = jt.grad(total, list(params.values()))
    return {k: g.numpy() for k, g in zip(params, grads)}


# ------------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------------


def compare_losses(got: dict, ref: dict) -> Dict[str, float]:
    assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
    errors = {}
    for key in ref:
        a = float(np.asarray(got[key]).reshape(-1)[0])
        b = float(np.asarray(ref[key]).reshape(-1)[0])
        errors[key] = abs(a - b)
        if key == 'acc':
            assert a == pytest.approx(b, abs=1e-4), (key, a, b)
        else:
            assert abs(a - b) <= LOSS_ATOL + LOSS_RTOL * abs(b), (key, a, b)
    return errors


def compare_grads(got: List[np.ndarray], ref: List[np.ndarray], label: str) -> float:
    worst = 0.0
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape, (label, i, a.shape, b.shape)
        err = rel_err(a, b)
        worst = max(worst, err)
        assert err <= GRAD_RTOL, (label, i, err)
    return worst


def compare_predictions(got: List[dict], ref: List[dict]) -> float:
    worst = 0.0
    assert len(got) == len(ref)
    for img, (g, r) in enumerate(zip(got, ref)):
        assert g['bboxes'].shape == r['bboxes'].shape, (img, g['bboxes'].shape, r['bboxes'].shape)
        assert g['scores'].shape == r['scores'].shape, img
        np.testing.assert_array_equal(g['labels'], r['labels'])
        assert g['labels'].dtype == np.int64
        for key in ('bboxes', 'scores'):
            if r[key].size:
                err = float(np.abs(g[key] - r[key]).max())
                worst = max(worst, err)
                assert err <= PRED_ATOL, (img, key, err)
    return worst


# ------------------------------------------------------------------------------------------------
# tests: the whole RoI head
# ------------------------------------------------------------------------------------------------

HEAD_CASES = {
    'shared2fc-l1': {},
    'class-agnostic-smoothl1': dict(reg_class_agnostic=True,
                                    loss_bbox=dict(type='SmoothL1Loss', beta=1.0,
                                                   loss_weight=1.0)),
    'decoded-giou': dict(reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
}


@pytest.mark.parametrize('name', list(HEAD_CASES))
def test_roi_head_loss_matches_mmdet(name):
    torch_head, jt_head = build_pair(roi_head_cfg(**HEAD_CASES[name]))
    # seed 3: with seed 1, class-agnostic-smoothl1 had a shared-FC ReLU input 1.3e-5 from zero,
    # where float32's error bound is 2.9e-5
    case = make_case(seed=3)
    assert_float32_decides(torch_head, case)
    ref_losses, ref_feat_grads, ref_param_grads = mmdet_loss(torch_head, case)
    got_losses, got_feat_grads, proposals = jittor_loss_via_bridge(jt_head, case)

    assert sorted(ref_losses) == ['acc', 'loss_bbox', 'loss_cls']
    assert float(ref_losses['loss_bbox']) > 0  # positives exist, so regression is exercised
    errors = compare_losses(got_losses, ref_losses)
    feat_err = compare_grads(got_feat_grads, ref_feat_grads, 'features')
    # every level receives RoIs (finest_scale=6), so every level has a non-zero gradient
    assert all(np.abs(g).max() > 0 for g in ref_feat_grads)

    got_param_grads = jittor_param_grads(jt_head, case)
    assert sorted(got_param_grads) == sorted(ref_param_grads)
    param_err = compare_grads([got_param_grads[k] for k in sorted(ref_param_grads)],
                              [ref_param_grads[k] for k in sorted(ref_param_grads)], 'params')
    # the caller's proposals are not modified (mmdet renames bboxes -> priors in place)
    assert all('bboxes' in p for p in proposals)
    print(f'\n[{name}] loss abs errors {errors}; feature grad rel err {feat_err:.2e}; '
          f'param grad rel err {param_err:.2e}')


def test_roi_head_predict_matches_mmdet():
    torch_head, jt_head = build_pair(roi_head_cfg())
    case = make_case(seed=2)
    for rescale in (True, False):
        assert_float32_decides(torch_head, case, predict=True, rescale=rescale)
        ref = mmdet_predict(torch_head, case, rescale=rescale)
        got = jittor_predict_via_bridge(jt_head, case, rescale=rescale)
        assert sum(len(r['labels']) for r in ref) > 0
        err = compare_predictions(got, ref)
        print(f'\n[predict rescale={rescale}] {[len(r["labels"]) for r in ref]} detections, '
              f'max abs err {err:.2e}')


def test_roi_head_predict_raw_without_test_cfg():
    """``test_cfg=None``: raw per-class boxes and scores without NMS, as mmdet."""
    cfg = roi_head_cfg()
    cfg['test_cfg'] = None
    torch_head, jt_head = build_pair(cfg)
    case = make_case(seed=3)
    feats, rpn_results, samples = mmdet_inputs(case, requires_grad=False)
    with torch.no_grad():
        ref = torch_head.predict(feats, rpn_results, samples, rescale=False)
    got = jt_head.predict([jt.array(f) for f in case['feats']],
                          [dict(bboxes=jt.array(p)) for p in case['props']],
                          [dict(META) for _ in case['props']])
    for g, r in zip(got, ref):
        assert sorted(g) == ['bboxes', 'scores']
        np.testing.assert_allclose(g['bboxes'].numpy(), r.bboxes.numpy(), atol=PRED_ATOL)
        np.testing.assert_allclose(g['scores'].numpy(), r.scores.numpy(), atol=PRED_ATOL)


def test_roi_head_loss_without_gt_as_proposals_and_pos_weight():
    """``add_gt_as_proposals=False`` (gts are not prepended) and ``pos_weight=2`` match mmdet."""
    cfg = roi_head_cfg()
    cfg['train_cfg']['sampler']['add_gt_as_proposals'] = False
    cfg['train_cfg']['pos_weight'] = 2.0
    torch_head, jt_head = build_pair(cfg)
    case = make_case(seed=11)
    assert_float32_decides(torch_head, case)
    ref_losses, ref_feat_grads, _ = mmdet_loss(torch_head, case)
    got_losses, got_feat_grads, _ = jittor_loss_via_bridge(jt_head, case)
    assert float(ref_losses['loss_bbox']) > 0
    compare_losses(got_losses, ref_losses)
    compare_grads(got_feat_grads, ref_feat_grads, 'features')


EDGE_CASES = {
    'no-proposals-one-image': dict(num_props=(0, 12), num_gts=(2, 2)),
    'no-proposals-at-all': dict(num_props=(0, 0), num_gts=(2, 3)),
    'no-gt-one-image': dict(num_props=(10, 12), num_gts=(0, 2)),
    'no-gt-at-all': dict(num_props=(10, 12), num_gts=(0, 0)),
    'nothing-at-all': dict(num_props=(0, 0), num_gts=(0, 0)),
}


@pytest.mark.parametrize('name', list(EDGE_CASES))
def test_roi_head_edge_cases_match_mmdet(name):
    torch_head, jt_head = build_pair(roi_head_cfg())
    case = make_case(seed=4, **EDGE_CASES[name])
    assert_float32_decides(torch_head, case)
    ref_losses, ref_feat_grads, _ = mmdet_loss(torch_head, case)
    got_losses, got_feat_grads, _ = jittor_loss_via_bridge(jt_head, case)
    compare_losses(got_losses, ref_losses)
    compare_grads(got_feat_grads, ref_feat_grads, 'features')
    if name == 'nothing-at-all':  # mmdet: no RoI -> neither loss_cls nor acc
        assert sorted(got_losses) == ['loss_bbox']
        assert float(got_losses['loss_bbox'].reshape(-1)[0]) == 0
    compare_predictions(jittor_predict_via_bridge(jt_head, case), mmdet_predict(torch_head, case))


def test_roi_head_empty_predictions_shapes():
    _, jt_head = build_pair(roi_head_cfg())
    case = make_case(seed=5, num_props=(0, 0), num_gts=(1, 1))
    got = jittor_predict_via_bridge(jt_head, case)
    for r in got:
        assert r['bboxes'].shape == (0, 4) and r['scores'].shape == (0, )
        assert r['labels'].shape == (0, ) and r['labels'].dtype == np.int64


# ------------------------------------------------------------------------------------------------
# tests: the RoI extractor alone
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('finest_scale,roi_scale_factor', [(8, None), (56, None), (8, 1.3)])
def test_single_roi_extractor_matches_mmdet(finest_scale, roi_scale_factor):
    cfg = dict(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
               out_channels=CHANNELS, featmap_strides=STRIDES, finest_scale=finest_scale)
    torch_ext = MODELS.build(dict(type='SingleRoIExtractor', **cfg))
    jt_ext = JittorSingleRoIExtractor(**cfg)
    case = make_case(seed=6)
    boxes = np.concatenate(case['props'])
    img_ids = np.repeat([0, 1], [len(p) for p in case['props']]).astype(np.float32)
    rois = torch.tensor(np.concatenate([img_ids[:, None], boxes], 1))

    feats_t = [torch.tensor(f, requires_grad=True) for f in case['feats']]
    ref = torch_ext(feats_t, rois, roi_scale_factor)
    weights = torch.tensor(np.random.default_rng(7).standard_normal(ref.shape).astype(np.float32))
    (ref * weights).sum().backward()

    feats_j = [torch.tensor(f, requires_grad=True) for f in case['feats']]
    got = call_jittor(jt_ext, (feats_j, rois, roi_scale_factor))
    (got * weights).sum().backward()

    out_err = float((got - ref).detach().abs().max())
    assert out_err <= 1e-5, out_err
    grad_err = compare_grads([f.grad.numpy() for f in feats_j], [f.grad.numpy() for f in feats_t],
                             'extractor features')
    np.testing.assert_array_equal(
        jt_ext.map_roi_levels(jt.array(rois.numpy()), len(STRIDES)).numpy(),
        torch_ext.map_roi_levels(rois, len(STRIDES)).numpy())
    print(f'\n[extractor finest={finest_scale} scale={roi_scale_factor}] out abs err '
          f'{out_err:.2e}, grad rel err {grad_err:.2e}')


def test_single_roi_extractor_negative_area_roi_gets_zeros_like_mmdet():
    """A box with x2 < x1 has a NaN scale: mmdet maps it to no level, so its features stay 0."""
    cfg = dict(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
               out_channels=CHANNELS, featmap_strides=STRIDES)
    torch_ext = MODELS.build(dict(type='SingleRoIExtractor', **cfg))
    jt_ext = JittorSingleRoIExtractor(**cfg)
    feats = [torch.randn(2, CHANNELS, s, s) for s in (16, 8, 4, 2)]
    rois = torch.tensor([[0, 4, 4, 40, 40], [1, 30, 5, 10, 20], [1, 0, 0, 64, 64.]])
    ref = torch_ext(feats, rois)
    got = call_jittor(jt_ext, (feats, rois))
    assert float(got[1].abs().max()) == 0 and float(ref[1].abs().max()) == 0
    assert float((got - ref).abs().max()) <= 1e-5


def test_single_roi_extractor_no_rois_keeps_levels_in_graph():
    ext = JittorSingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                   CHANNELS, STRIDES)
    feats = [torch.randn(2, CHANNELS, s, s, requires_grad=True) for s in (16, 8, 4, 2)]
    out = call_jittor(ext, (feats, torch.zeros(0, 5)))
    assert tuple(out.shape) == (0, CHANNELS, 7, 7)
    out.sum().backward()
    assert all(f.grad is not None and float(f.grad.abs().max()) == 0 for f in feats)


# ------------------------------------------------------------------------------------------------
# tests: bbox heads, state dicts, initialisation, names
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('head_type,extra', [
    ('BBoxHead', dict(with_avg_pool=True)),
    ('Shared2FCBBoxHead', {}),
    ('Shared4Conv1FCBBoxHead', dict(conv_out_channels=8, norm_cfg=dict(type='GN', num_groups=4))),
    ('ConvFCBBoxHead', dict(num_cls_convs=1, num_cls_fcs=1, num_reg_convs=1, num_reg_fcs=1,
                            conv_out_channels=8, fc_out_channels=16)),
])
def test_bbox_head_forward_matches_mmdet(head_type, extra):
    cfg = dict(in_channels=CHANNELS, roi_feat_size=7, num_classes=NUM_CLASSES, **extra)
    if head_type.startswith('Shared'):
        cfg.setdefault('fc_out_channels', 32)
    torch_bbox = MODELS.build(dict(type=head_type, **cfg))
    torch_bbox.init_weights()
    randomise_(torch_bbox, seed=8)
    jt_bbox = JITTOR_MODELS.get(jittor_type(head_type))(**cfg)
    load_strictly(jt_bbox, torch_bbox.state_dict())

    x = np.random.default_rng(9).standard_normal((5, CHANNELS, 7, 7)).astype(np.float32)
    # the ReLUs between the FCs / convs keep their margins (module docstring)
    margins.assert_float32_decides(torch_bbox, lambda head, dtype: head(torch.tensor(x, dtype=dtype)))
    xt = torch.tensor(x, requires_grad=True)
    ref = torch_bbox(xt)
    xj = torch.tensor(x, requires_grad=True)
    got = call_jittor(jt_bbox, (xj, ))
    for a, b in zip(got, ref):
        assert float((a - b).detach().abs().max()) <= 1e-4
    (sum(o.sum() * (i + 1) for i, o in enumerate(ref))).backward()
    (sum(o.sum() * (i + 1) for i, o in enumerate(got))).backward()
    assert rel_err(xj.grad.numpy(), xt.grad.numpy()) <= GRAD_RTOL


def test_faster_rcnn_checkpoint_keys_load_strictly():
    """mmdet's Faster R-CNN R50-FPN ``roi_head`` config: same parameter names and shapes, and the
    bridged ``JittorStandardRoIHead`` (built from mmdet's MODELS) loads the state dict strictly."""
    import os

    import mmdet
    cfg_path = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs', '_base_', 'models',
                            'faster-rcnn_r50_fpn.py')
    model_cfg = Config.fromfile(cfg_path).model
    roi_cfg = copy.deepcopy(model_cfg.roi_head)
    roi_cfg.update(train_cfg=model_cfg.train_cfg.rcnn, test_cfg=model_cfg.test_cfg.rcnn)
    roi_cfg.pop('type')
    torch_head = MODELS.build(ConfigDict(type='StandardRoIHead', **roi_cfg))
    bridged = MODELS.build(ConfigDict(type='JittorStandardRoIHead', **roi_cfg))
    ref = {k: tuple(v.shape) for k, v in torch_head.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in bridged.state_dict().items()}
    assert got == ref
    bridged.load_state_dict(torch_head.state_dict(), strict=True)
    assert sorted(ref) == ['bbox_head.fc_cls.bias', 'bbox_head.fc_cls.weight',
                           'bbox_head.fc_reg.bias', 'bbox_head.fc_reg.weight',
                           'bbox_head.shared_fcs.0.bias', 'bbox_head.shared_fcs.0.weight',
                           'bbox_head.shared_fcs.1.bias', 'bbox_head.shared_fcs.1.weight']


def test_bbox_head_init_like_mmdet():
    np.random.seed(0)
    head = JittorShared2FCBBoxHead(in_channels=64, fc_out_channels=256, num_classes=20)
    params = dict(head.named_parameters())
    assert params['fc_cls.weight'].numpy().std() == pytest.approx(0.01, rel=0.05)
    assert params['fc_reg.weight'].numpy().std() == pytest.approx(0.001, rel=0.05)
    for i, (fan_in, fan_out) in enumerate([(64 * 49, 256), (256, 256)]):
        w = params[f'shared_fcs.{i}.weight'].numpy()
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
        assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    for name in ('fc_cls.bias', 'fc_reg.bias', 'shared_fcs.0.bias', 'shared_fcs.1.bias'):
        assert np.all(params[name].numpy() == 0), name


def test_mmdet_and_jittor_type_names():
    assert jittor_type('SingleRoIExtractor') == 'JittorSingleRoIExtractor'
    assert jittor_type('Shared2FCBBoxHead') == 'JittorShared2FCBBoxHead'
    assert jittor_type('JittorShared2FCBBoxHead') == 'JittorShared2FCBBoxHead'
    assert jittor_type('StandardRoIHead') == 'JittorStandardRoIHead'
    # the Jittor names work in the config too
    cfg = roi_head_cfg()
    cfg['bbox_roi_extractor']['type'] = 'JittorSingleRoIExtractor'
    cfg['bbox_head']['type'] = 'JittorShared2FCBBoxHead'
    head = JittorStandardRoIHead(**cfg)
    assert isinstance(head.bbox_roi_extractor, JittorSingleRoIExtractor)
    assert isinstance(head.bbox_head, JittorShared2FCBBoxHead)
    # and mmdet's MODELS builds the bridged modules under the Jittor names
    for name in ('JittorSingleRoIExtractor', 'JittorShared2FCBBoxHead', 'JittorConvFCBBoxHead',
                 'JittorStandardRoIHead', 'JittorShared4Conv1FCBBoxHead'):
        assert MODELS.get(name) is not None, name


# ------------------------------------------------------------------------------------------------
# tests: clear errors
# ------------------------------------------------------------------------------------------------


def _with(cfg: dict, path: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, leaf = path.split('.')
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value
    return cfg


@pytest.mark.parametrize('path,value,error,match', [
    ('bbox_head.type', 'NoSuchBBoxHead', KeyError, 'NoSuchBBoxHead'),
    ('bbox_roi_extractor.roi_layer', dict(type='RoIPool', output_size=7), NotImplementedError,
     'RoIPool'),
    ('bbox_roi_extractor.roi_layer', dict(type='RoIAlign', output_size=7, spatial_scale=0.5),
     ValueError, 'spatial_scale'),
    ('mask_head', dict(type='FCNMaskHead'), NotImplementedError, 'mask'),
    # shared heads are built as Jittor modules (CLIPResLayer); mmdet's ResLayer has no twin
    ('shared_head', dict(type='ResLayer', depth=50), KeyError, 'shared_head.*ResLayer'),
    ('bbox_head.cls_predictor_cfg', dict(type='NormedLinear'), NotImplementedError,
     'cls_predictor_cfg'),
    ('bbox_head.loss_cls', dict(type='NoSuchLoss'), KeyError, 'NoSuchLoss'),
    ('bbox_roi_extractor', None, TypeError, 'bbox_roi_extractor'),  # as mmdet (None config)
])
def test_bad_configs_fail_loudly(path, value, error, match):
    with pytest.raises(error, match=match):
        JittorStandardRoIHead(**_with(roi_head_cfg(), path, value))


def test_bad_calls_fail_loudly():
    cfg = roi_head_cfg()
    head = JittorStandardRoIHead(**cfg)
    case = make_case(seed=10)
    feats = [jt.array(f) for f in case['feats']]
    props = [dict(bboxes=jt.array(p)) for p in case['props']]
    gts = [dict(bboxes=jt.array(g), labels=jt.array(l)) for g, l in zip(case['gts'],
                                                                       case['labels'])]
    metas = [dict(META), dict(META)]
    with pytest.raises(ValueError, match='proposal lists'):
        head.loss(feats, props[:1], gts, metas)
    with pytest.raises(KeyError, match="'bboxes'"):
        head.loss(feats, [dict(boxes=props[0]['bboxes']), props[1]], gts, metas)
    with pytest.raises(ValueError, match='out_channels'):
        head.predict([jt.array(f[:, :8]) for f in case['feats']], props, metas)
    no_train = JittorStandardRoIHead(**_with(cfg, 'train_cfg', None))
    with pytest.raises(RuntimeError, match='train_cfg'):
        no_train.loss(feats, props, gts, metas)
    with pytest.raises(ValueError, match='not all 0'):
        JittorConvFCBBoxHead(in_channels=CHANNELS, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match='num_shared_fcs=0'):
        JittorConvFCBBoxHead(num_cls_convs=1, num_shared_fcs=1, in_channels=CHANNELS)
