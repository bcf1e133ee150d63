"""``JittorRPNHead`` against mmdet 3.3.0's ``RPNHead``.

Set-up of every alignment case: mmdet's head is built from a config, given random weights (conv
weights N(0, 0.1), biases N(0, 0.05), so scores and deltas spread out), and its state dict is loaded
strictly into the Jittor head (``state_dict_to_jittor``: keys and shapes must match). Both see the
same features (3 levels, 16 channels, strides 8/16/32, batch 2; image 0 is 64x64, image 1 has
``img_shape`` 44x60 inside a 48x64 ``pad_shape``, so valid flags, inside flags and box clipping
differ per image) and the same gt boxes (labels 0, as mmdet's two-stage detectors give the RPN).

Randomness is removed in the target computation: the ``RandomSampler`` cases use ``num=512`` while
there are 252 anchors per image, so every positive and every negative is taken and no random choice
is made; the other cases use no sampler (mmdet and Jittor then use a ``PseudoSampler``).

Tolerances (float32): losses within 1e-5 absolute + 1e-4 relative per level (``np.allclose``);
proposals (boxes, scores; same count, same order) within 1e-4 absolute; gradients of the summed loss
w.r.t. the features (and, on the pure-Jittor path, w.r.t. the head's weights) within 1e-3 relative
(``max|a - b| / max|b|``). The measured errors are printed (``pytest -s``).

Robust on any machine by construction (jt_mm_plugins/alignment/margins.py): each case first runs
mmdet's head in float32 and a float64 copy of it and asserts that every decision of the float64 run
is farther from its boundary than 10x the float32 error bound there: the ReLU after ``rpn_conv``
(the feature and weight gradients pass through it), and for proposals every score sort (the
``nms_pre`` cut), every NMS (``|IoU - iou_threshold|`` over all pairs, and the gaps between the
scores, which decide the survivors and their order). The seeds are chosen so that it holds
(``make_feats(seed=16)`` for the proposals: seed 10 had two level-0 scores 3e-7 apart, where
float32's error is 8e-8).
"""
import copy

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401  (registers the Jittor components)
from jt_mm_plugins.alignment import margins
from jt_mm_plugins.bridge import call_jittor, state_dict_to_jittor
from jt_mm_plugins.models.dense_heads.rpn_head import JittorRPNHead
from jt_mm_plugins.runtime import jt

pytest.importorskip('mmdet.models.dense_heads')
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4
PROPOSAL_ATOL = 1e-4
GRAD_RTOL = 1e-3

IN_CHANNELS = 16
FEAT_SIZES = [8, 4, 2]
ANCHOR_GENERATOR = dict(type='AnchorGenerator', scales=[2], ratios=[0.5, 1.0, 2.0],
                        strides=[8, 16, 32])
IMG_METAS = [
    dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64), ori_shape=(64, 64),
         scale_factor=(1.0, 1.0)),
    dict(img_shape=(44, 60), pad_shape=(48, 64), batch_input_shape=(64, 64), ori_shape=(22, 40),
         scale_factor=(1.5, 2.0)),
]
GT_BOXES = [
    [[4.0, 6.0, 30.0, 40.0], [20.0, 12.0, 61.0, 50.0], [40.0, 40.0, 56.0, 60.0],
     [2.0, 1.0, 62.0, 63.0]],
    [[2.0, 3.0, 25.0, 20.0], [30.5, 10.0, 58.0, 43.0], [10.0, 5.0, 50.0, 44.0]],
]
IGNORE_BOXES = [[[0.0, 40.0, 20.0, 63.0]], [[40.0, 0.0, 60.0, 12.0]]]

MAX_IOU = dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
               match_low_quality=True, ignore_iof_thr=-1)
ALL_CANDIDATES_SAMPLER = dict(type='RandomSampler', num=512, pos_fraction=0.5, neg_pos_ub=-1,
                              add_gt_as_proposals=False)
TEST_CFG = dict(nms_pre=60, max_per_img=40, nms=dict(type='nms', iou_threshold=0.7),
                min_bbox_size=0)

CASES = {
    # mmdet's Faster R-CNN RPN settings, with a sampler that takes every candidate
    'faster-rcnn': dict(
        train_cfg=dict(assigner=MAX_IOU, sampler=ALL_CANDIDATES_SAMPLER, allowed_border=-1,
                       pos_weight=-1, debug=False)),
    # PseudoSampler (no sampler), anchors must lie inside the image, positive weight, ignored boxes
    'pseudo-border-ignore': dict(
        train_cfg=dict(assigner=dict(MAX_IOU, ignore_iof_thr=0.5), allowed_border=8,
                       pos_weight=2.0, debug=False),
        with_ignore=True),
    # two 3x3 ConvModules, softmax classifier, GIoU loss on decoded boxes
    'convs2-softmax-giou': dict(
        num_convs=2,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        reg_decoded_bbox=True,
        train_cfg=dict(assigner=MAX_IOU, sampler=ALL_CANDIDATES_SAMPLER, allowed_border=-1,
                       pos_weight=-1)),
}


def head_cfg(case: dict, type_name: str = 'RPNHead') -> dict:
    cfg = dict(type=type_name, in_channels=IN_CHANNELS, feat_channels=16,
               anchor_generator=ANCHOR_GENERATOR, test_cfg=TEST_CFG)
    cfg.update({k: copy.deepcopy(v) for k, v in case.items() if k != 'with_ignore'})
    return cfg


def randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            std = 0.1 if name.endswith('weight') else 0.05
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def build_pair(case: dict, seed: int = 0):
    """mmdet's RPNHead with random weights, and the Jittor head with the same weights."""
    mm_head = MODELS.build(ConfigDict(head_cfg(case)))  # mmdet reads cfg.nms, cfg.max_per_img
    randomise_(mm_head, seed)
    cfg = head_cfg(case, 'JittorRPNHead')
    cfg.pop('type')
    jt_head = JittorRPNHead(**cfg)
    state_dict_to_jittor(jt_head, mm_head.state_dict(), strict=True)
    return mm_head, jt_head


def make_feats(seed: int = 1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, IN_CHANNELS, s, s)).astype(np.float32) for s in FEAT_SIZES]


def torch_gts(empty_second: bool = False, ignore: bool = False):
    gts, ignores = [], []
    for i, boxes in enumerate(GT_BOXES):
        boxes = torch.zeros((0, 4)) if (empty_second and i == 1) else torch.tensor(boxes)
        gts.append(dict(bboxes=boxes, labels=torch.zeros((boxes.shape[0], ), dtype=torch.long)))
        ignores.append(dict(bboxes=torch.tensor(IGNORE_BOXES[i])))
    return gts, (ignores if ignore else None)


def as_instances(dicts):
    return None if dicts is None else [InstanceData(**d) for d in dicts]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def assert_float32_decides(mm_head, run) -> None:
    """``run(head, dtype)`` on float32 and float64 copies of mmdet's head: every ReLU, sort and
    NMS decision of the float64 run is farther from its boundary than the float32 bound."""
    report = margins.assert_float32_decides(mm_head, run)
    assert any(d.kind == 'relu' for d in report.trace64.decisions), 'no ReLU recorded'


def mm_losses_and_grads(mm_head, feats, gts, ignores, dtype=torch.float32):
    xs = [torch.tensor(f, dtype=dtype, requires_grad=True) for f in feats]
    losses = mm_head.loss_by_feat(*mm_head(xs), as_instances(gts), IMG_METAS, as_instances(ignores))
    total = sum(sum(v) for v in losses.values())
    total.backward()
    return ({k: [float(t.detach()) for t in v] for k, v in losses.items()},
            [x.grad.numpy() for x in xs])


def jt_losses_and_grads_bridged(jt_head, feats, gts, ignores):
    """The Jittor head's ``loss`` called from torch through ``call_jittor`` (differentiable)."""
    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    losses = call_jittor(jt_head.loss, (xs, gts, IMG_METAS, ignores))
    total = sum(sum(v) for v in losses.values())
    total.backward()
    return ({k: [float(t.detach()) for t in v] for k, v in losses.items()},
            [x.grad.numpy() for x in xs])


def compare_losses(ref: dict, got: dict, label: str) -> float:
    assert sorted(got) == ['loss_rpn_bbox', 'loss_rpn_cls'], (label, sorted(got))
    worst = 0.0
    for name in ref:
        a, b = np.array(got[name]), np.array(ref[name])
        assert a.shape == b.shape == (len(FEAT_SIZES), ), (label, name, a.shape, b.shape)
        assert np.allclose(a, b, atol=LOSS_ATOL, rtol=LOSS_RTOL), (label, name, a, b)
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


@pytest.mark.parametrize('case_name', list(CASES))
def test_loss_and_feature_gradients_match_mmdet(case_name):
    case = CASES[case_name]
    mm_head, jt_head = build_pair(case)
    feats = make_feats()
    gts, ignores = torch_gts(ignore=case.get('with_ignore', False))
    assert_float32_decides(mm_head, lambda head, dtype: mm_losses_and_grads(head, feats, gts,
                                                                             ignores, dtype))
    ref_losses, ref_grads = mm_losses_and_grads(mm_head, feats, gts, ignores)
    got_losses, got_grads = jt_losses_and_grads_bridged(jt_head, feats, gts, ignores)
    loss_err = compare_losses(ref_losses, got_losses, case_name)
    assert sum(ref_losses['loss_rpn_bbox']) > 0  # there are positives
    grad_errs = [rel_err(a, b) for a, b in zip(got_grads, ref_grads)]
    print(f'\n[{case_name}] losses {ref_losses} max abs err {loss_err:.2e}; '
          f'feature grad rel errs {[f"{e:.2e}" for e in grad_errs]}')
    assert max(grad_errs) <= GRAD_RTOL, (case_name, grad_errs)


def test_pure_jittor_loss_gradients_match_mmdet_for_features_and_weights():
    """``loss`` on Jittor Vars with ``jt.grad``; gradients for the features and every weight."""
    case = CASES['faster-rcnn']
    mm_head, jt_head = build_pair(case, seed=3)
    feats = make_feats(seed=4)
    gts, _ = torch_gts()
    assert_float32_decides(mm_head, lambda head, dtype: mm_losses_and_grads(head, feats, gts, None,
                                                                             dtype))
    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    losses = mm_head.loss_by_feat(*mm_head(xs), as_instances(gts), IMG_METAS)
    sum(sum(v) for v in losses.values()).backward()

    jxs = [jt.array(f) for f in feats]
    jgts = [dict(bboxes=jt.array(g['bboxes'].numpy()), labels=jt.array(g['labels'].numpy()))
            for g in gts]
    jlosses = jt_head.loss(jxs, jgts, IMG_METAS)
    params = dict(jt_head.named_parameters())
    grads = jt.grad(sum(sum(v) for v in jlosses.values()), jxs + list(params.values()))
    for name in losses:
        assert np.allclose([float(v.item()) for v in jlosses[name]],
                           [float(v.detach()) for v in losses[name]],
                           atol=LOSS_ATOL, rtol=LOSS_RTOL), name
    errs = {f'feat{i}': rel_err(g.numpy(), x.grad.numpy())
            for i, (g, x) in enumerate(zip(grads, xs))}
    mm_params = dict(mm_head.named_parameters())
    assert set(params) == set(mm_params)
    for g, name in zip(grads[len(xs):], params):
        errs[name] = rel_err(g.numpy(), mm_params[name].grad.numpy())
    print(f'\n[pure jittor] grad rel errs {errs}')
    assert max(errs.values()) <= GRAD_RTOL, errs


def test_image_without_gt_boxes():
    for case_name in ('faster-rcnn', 'pseudo-border-ignore'):
        case = CASES[case_name]
        mm_head, jt_head = build_pair(case, seed=5)
        feats = make_feats(seed=6)
        gts, ignores = torch_gts(empty_second=True, ignore=case.get('with_ignore', False))
        assert_float32_decides(mm_head, lambda head, dtype: mm_losses_and_grads(
            head, feats, gts, ignores, dtype))
        ref_losses, ref_grads = mm_losses_and_grads(mm_head, feats, gts, ignores)
        got_losses, got_grads = jt_losses_and_grads_bridged(jt_head, feats, gts, ignores)
        err = compare_losses(ref_losses, got_losses, case_name)
        grad_errs = [rel_err(a, b) for a, b in zip(got_grads, ref_grads)]
        print(f'\n[no gt, {case_name}] loss err {err:.2e}, grad errs {grad_errs}')
        assert max(grad_errs) <= GRAD_RTOL


def test_all_images_without_gt_boxes():
    """No positive anywhere: the regression loss is an exact zero that still back-propagates."""
    mm_head, jt_head = build_pair(CASES['faster-rcnn'], seed=7)
    feats = make_feats(seed=8)
    gts = [dict(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ), dtype=torch.long))] * 2
    ref_losses, _ = mm_losses_and_grads(mm_head, feats, gts, None)
    got_losses, got_grads = jt_losses_and_grads_bridged(jt_head, feats, gts, None)
    compare_losses(ref_losses, got_losses, 'no gt at all')
    assert got_losses['loss_rpn_bbox'] == [0.0] * len(FEAT_SIZES)
    assert all(np.isfinite(g).all() for g in got_grads)


def compare_proposals(ref, got, label: str) -> dict:
    assert len(ref) == len(got) == len(IMG_METAS)
    errs = {}
    for i, (r, g) in enumerate(zip(ref, got)):
        assert sorted(g) == ['bboxes', 'labels', 'scores'], (label, sorted(g))
        assert tuple(g['bboxes'].shape) == tuple(r.bboxes.shape), (label, i, g['bboxes'].shape,
                                                                   r.bboxes.shape)
        errs[f'img{i}:boxes'] = float(
            np.abs(g['bboxes'].numpy() - r.bboxes.numpy()).max(initial=0))
        errs[f'img{i}:scores'] = float(
            np.abs(g['scores'].numpy() - r.scores.numpy()).max(initial=0))
        assert np.array_equal(g['labels'].numpy(), r.labels.numpy()), (label, i)
        assert g['labels'].dtype == torch.long
    assert max(errs.values()) <= PROPOSAL_ATOL, (label, errs)
    return errs


PREDICT_CASES = {
    'test_cfg': (None, False),
    'rescale': (None, True),
    'no-nms_pre-min-size': (dict(max_per_img=1000, nms=dict(type='nms', iou_threshold=0.5),
                                 min_bbox_size=12), False),
    'tight-nms-pre': (dict(nms_pre=5, max_per_img=100, nms=dict(type='nms', iou_threshold=0.3)),
                      True),
}


@pytest.mark.parametrize('pred_case', list(PREDICT_CASES))
def test_proposals_match_mmdet(pred_case):
    cfg, rescale = PREDICT_CASES[pred_case]
    mm_head, jt_head = build_pair(CASES['faster-rcnn'], seed=9)
    feats = make_feats(seed=16)

    def predict(head, dtype):
        with torch.no_grad():
            head.predict_by_feat(*head([torch.tensor(f, dtype=dtype) for f in feats]),
                                 batch_img_metas=IMG_METAS,
                                 cfg=None if cfg is None else ConfigDict(cfg), rescale=rescale)

    assert_float32_decides(mm_head, predict)
    xs = [torch.tensor(f) for f in feats]
    with torch.no_grad():
        ref = mm_head.predict_by_feat(*mm_head(xs), batch_img_metas=IMG_METAS,
                                      cfg=None if cfg is None else ConfigDict(cfg), rescale=rescale)
    if cfg is None:
        got = call_jittor(jt_head.predict, (xs, IMG_METAS), dict(rescale=rescale))
    else:
        got = call_jittor(jt_head.predict_by_feat, (*call_jittor(jt_head, (xs, )), ),
                          dict(batch_img_metas=IMG_METAS, cfg=cfg, rescale=rescale))
    errs = compare_proposals(ref, got, pred_case)
    print(f'\n[{pred_case}] proposals per image {[len(r) for r in ref]}, errs {errs}')
    assert all(len(r) > 0 for r in ref)
    if cfg is not None and cfg.get('min_bbox_size', -1) > 0:  # the filter did remove boxes
        with torch.no_grad():
            unfiltered = mm_head.predict_by_feat(*mm_head(xs), batch_img_metas=IMG_METAS,
                                                 cfg=ConfigDict(cfg, min_bbox_size=-1))
        assert all(len(u) > len(r) for u, r in zip(unfiltered, ref))


def test_loss_and_predict_matches_loss_and_predict():
    """One forward gives the same losses and proposals as mmdet; proposals carry no gradient."""
    case = CASES['faster-rcnn']
    mm_head, jt_head = build_pair(case, seed=11)
    feats = make_feats(seed=12)
    gts, _ = torch_gts()
    proposal_cfg = dict(nms_pre=30, max_per_img=20, nms=dict(type='nms', iou_threshold=0.6),
                        min_bbox_size=0)

    def loss_and_predict(head, dtype):
        outs = head([torch.tensor(f, dtype=dtype) for f in feats])
        head.loss_by_feat(*outs, as_instances(gts), IMG_METAS)
        head.predict_by_feat(*outs, batch_img_metas=IMG_METAS, cfg=ConfigDict(proposal_cfg))

    assert_float32_decides(mm_head, loss_and_predict)
    xs = [torch.tensor(f) for f in feats]
    outs = mm_head(xs)
    ref_losses = mm_head.loss_by_feat(*outs, as_instances(gts), IMG_METAS)
    ref_props = mm_head.predict_by_feat(*outs, batch_img_metas=IMG_METAS,
                                        cfg=ConfigDict(proposal_cfg))

    jxs = [jt.array(f) for f in feats]
    jgts = [dict(bboxes=jt.array(g['bboxes'].numpy()), labels=jt.array(g['labels'].numpy()))
            for g in gts]
    losses, props = jt_head.loss_and_predict(jxs, jgts, IMG_METAS, proposal_cfg)
    got_losses = {k: [float(v.item()) for v in vs] for k, vs in losses.items()}
    compare_losses({k: [float(v.detach()) for v in vs] for k, vs in ref_losses.items()},
                   got_losses, 'loss_and_predict')
    torch_props = [{k: torch.from_numpy(np.array(v.numpy())) for k, v in p.items()} for p in props]
    compare_proposals(ref_props, torch_props, 'loss_and_predict')
    # gradients reach the features through the losses only
    grads = jt.grad(sum(sum(v) for v in losses.values()) + props[0]['scores'].sum(), jxs)
    loss_only = jt.grad(sum(sum(v) for v in losses.values()), jxs)
    assert all(np.allclose(a.numpy(), b.numpy()) for a, b in zip(grads, loss_only))


def test_bridged_wrapper_loads_mmdet_state_dict_and_forwards_alike():
    for num_convs in (1, 2):
        case = dict(CASES['faster-rcnn'], num_convs=num_convs)
        mm_head = MODELS.build(ConfigDict(head_cfg(case)))
        randomise_(mm_head, seed=13)
        wrapper = MODELS.build(head_cfg(case, 'JittorRPNHead'))
        assert set(wrapper.state_dict()) == set(mm_head.state_dict())
        wrapper.load_state_dict(mm_head.state_dict(), strict=True)
        feats = make_feats(seed=14)
        assert_float32_decides(mm_head, lambda head, dtype: head(
            [torch.tensor(f, dtype=dtype) for f in feats]))
        xs = [torch.tensor(f, requires_grad=True) for f in feats]
        xs_ref = [torch.tensor(f, requires_grad=True) for f in feats]
        got = wrapper(xs)
        ref = mm_head(xs_ref)
        rng = np.random.default_rng(15)
        weights = [[torch.tensor(rng.standard_normal(t.shape).astype(np.float32)) for t in level]
                   for level in ref]
        for outs, inputs, module in ((got, xs, wrapper), (ref, xs_ref, mm_head)):
            sum((o * w).sum() for lo, lw in zip(outs, weights) for o, w in zip(lo, lw)).backward()
        out_err = max(float((a - b).detach().abs().max()) for lo_got, lo_ref in zip(got, ref)
                      for a, b in zip(lo_got, lo_ref))
        grad_errs = {f'feat{i}': rel_err(a.grad.numpy(), b.grad.numpy())
                     for i, (a, b) in enumerate(zip(xs, xs_ref))}
        mm_params = dict(mm_head.named_parameters())
        for name, p in wrapper.named_parameters():
            grad_errs[name] = rel_err(p.grad.numpy(), mm_params[name].grad.numpy())
        print(f'\n[bridged, num_convs={num_convs}] output max abs err {out_err:.2e}, '
              f'grad rel errs { {k: f"{v:.1e}" for k, v in grad_errs.items()} }')
        assert out_err <= 1e-5
        assert max(grad_errs.values()) <= GRAD_RTOL, grad_errs


def test_parameter_names_and_initialisation():
    head = JittorRPNHead(in_channels=IN_CHANNELS, feat_channels=32,
                         anchor_generator=ANCHOR_GENERATOR)
    params = dict(head.named_parameters())
    assert sorted(params) == ['rpn_cls.bias', 'rpn_cls.weight', 'rpn_conv.bias',
                              'rpn_conv.weight', 'rpn_reg.bias', 'rpn_reg.weight']
    assert tuple(params['rpn_cls.weight'].shape) == (3, 32, 1, 1)
    assert tuple(params['rpn_reg.weight'].shape) == (12, 32, 1, 1)
    conv_w = params['rpn_conv.weight'].numpy()  # 32 * 16 * 9 samples
    assert abs(conv_w.std() - 0.01) < 0.001 and abs(conv_w.mean()) < 0.001
    for name in ('rpn_conv.bias', 'rpn_cls.bias', 'rpn_reg.bias'):
        assert not params[name].numpy().any(), name
    deep = JittorRPNHead(in_channels=IN_CHANNELS, feat_channels=32, num_convs=2,
                         anchor_generator=ANCHOR_GENERATOR)
    deep_params = dict(deep.named_parameters())
    assert 'rpn_conv.1.conv.weight' in deep_params
    assert abs(deep_params['rpn_conv.1.conv.weight'].numpy().std() - 0.01) < 0.001


@pytest.mark.parametrize('overrides, error, words', [
    (dict(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, bogus_key=1)), TypeError,
     'bogus_key'),
    (dict(train_cfg=dict(assigner=dict(MAX_IOU, pos_iou_thr_typo=0.7), allowed_border=-1,
                         pos_weight=-1)), TypeError, 'pos_iou_thr_typo'),
    (dict(train_cfg=dict(assigner=MAX_IOU, allowed_border=-1, pos_weight=-1, samplr=None)),
     KeyError, 'samplr'),
    (dict(train_cfg=dict(assigner=MAX_IOU, pos_weight=-1)), KeyError, 'allowed_border'),
    (dict(train_cfg=dict(assigner=MAX_IOU, allowed_border=-1, pos_weight=-1,
                         sampler=dict(ALL_CANDIDATES_SAMPLER, add_gt_as_proposals=True))),
     ValueError, 'add_gt_as_proposals'),
    (dict(test_cfg=dict(TEST_CFG, nms_thr=0.7)), KeyError, 'nms_thr'),
    (dict(anchor_generator=dict(ANCHOR_GENERATOR, type='NoSuchAnchorGenerator')), KeyError,
     'NoSuchAnchorGenerator'),
    (dict(num_classes=2), ValueError, 'num_classes'),
    (dict(bogus_head_key=1), TypeError, 'bogus_head_key'),
])
def test_bad_config_fails_loudly(overrides, error, words):
    cfg = dict(in_channels=IN_CHANNELS, feat_channels=16, anchor_generator=ANCHOR_GENERATOR)
    cfg.update(overrides)
    with pytest.raises(error, match=words):
        JittorRPNHead(**cfg)


def test_bad_runtime_inputs_fail_loudly():
    _, jt_head = build_pair(CASES['faster-rcnn'])
    feats = [jt.array(f) for f in make_feats()]
    with pytest.raises(KeyError, match='nms_thr'):
        jt_head.predict_by_feat(*jt_head(feats), batch_img_metas=IMG_METAS,
                                cfg=dict(TEST_CFG, nms_thr=0.7))
    with pytest.raises(ValueError, match='feature levels'):
        jt_head.loss(feats[:2], [dict(bboxes=jt.zeros((0, 4)), labels=jt.zeros((0, )))] * 2,
                     IMG_METAS)
    with pytest.raises(KeyError, match='labels'):
        jt_head.loss(feats, [dict(bboxes=jt.zeros((0, 4)))] * 2, IMG_METAS)
    no_train = JittorRPNHead(in_channels=IN_CHANNELS, feat_channels=16,
                             anchor_generator=ANCHOR_GENERATOR)
    with pytest.raises(ValueError, match='train_cfg'):
        no_train.loss(feats, [dict(bboxes=jt.zeros((0, 4)), labels=jt.zeros((0, )))] * 2,
                      IMG_METAS)
    with pytest.raises(ValueError, match='test_cfg'):
        no_train.predict(feats, IMG_METAS)
