"""Jittor task modules against mmdet 3.3.0's, on identical inputs.

* AnchorGenerator: anchors and valid flags exactly equal (several configs).
* DeltaXYWHBBoxCoder: encode/decode within 1e-5 (max |a - b| / max(1, |b|)), decode gradients
  within 1e-4 relative.
* MaxIoUAssigner: gt_inds and labels identical, max_overlaps within 1e-6, on random boxes, on
  anchors with ties, with ignore boxes, with no gt, no priors, and everything ignored. The random
  boxes are checked first to keep every decision away from its boundary (float64 IoUs): no IoU
  within 1e-5 of a threshold, and the best and second-best IoU of every prior (over gts) and of every
  gt (over priors, for low-quality matching) either exactly equal (non-overlapping: 0, exact in
  any precision) or 1e-5 apart, 10x float32's error on these IoUs (~1e-6): the two float32
  implementations (Jittor's kernels are compiled with -Ofast, so may contract to FMA) then take
  the same branches on any machine. The anchor-grid case has exact ties by symmetry instead (the
  same operations on mirrored numbers: tied in any precision), broken by index on both sides.
* RandomSampler / PseudoSampler: identical results where no randomness is involved (all candidates
  fit), identical results with randomness removed on both sides (Jittor ``deterministic=True``,
  mmdet's ``random_choice`` patched to take the first candidates), and sizes/fractions/seeding of
  the random mode.
* Registries: building by mmdet's names, clear errors for unknown types and unexpected keys.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.models.task_modules import (JITTOR_TASK_UTILS, AnchorGenerator,
                                               AssignResult, DeltaXYWHBBoxCoder, MaxIoUAssigner,
                                               PseudoSampler, RandomSampler, build_jittor_loss,
                                               build_jittor_task_module)
from jt_mm_plugins.registry import JITTOR_MODELS
from jt_mm_plugins.runtime import jt

mm_tm = pytest.importorskip('mmdet.models.task_modules')
from mmengine.structures import InstanceData  # noqa: E402

CODER_ATOL = 1e-5
GRAD_RTOL = 1e-4
OVERLAP_ATOL = 1e-6


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|b|, 1e-6)."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6)) if b.size else 0.0


def scaled_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1, |b|): absolute below 1 (deltas, sub-pixel), relative above (pixels;
    float32 has ~6e-5 spacing at 1000)."""
    return float((np.abs(a - b) / np.maximum(1., np.abs(b))).max()) if b.size else 0.0


def random_boxes(rng: np.random.Generator, num: int, scale: float = 100.,
                 min_size: float = 1.) -> np.ndarray:
    """(num, 4) float32 boxes x1 < x2, y1 < y2 inside [0, scale + ...]."""
    xy = rng.uniform(0, scale, size=(num, 2))
    wh = rng.uniform(min_size, scale / 2, size=(num, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# registries
# --------------------------------------------------------------------------------------------------
TASK_CFGS = [
    dict(type='AnchorGenerator', strides=[8], ratios=[1.0], scales=[4]),
    dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
    dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
         match_low_quality=True, ignore_iof_thr=-1),
    dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
    dict(type='PseudoSampler'),
    dict(type='BboxOverlaps2D'),
]


@pytest.mark.parametrize('cfg', TASK_CFGS, ids=lambda c: c['type'])
def test_build_task_module_by_mmdet_name(cfg):
    obj = build_jittor_task_module(cfg)
    assert type(obj).__name__ == cfg['type']
    assert type(obj).__module__.startswith('jt_mm_plugins.')
    assert JITTOR_TASK_UTILS.get(cfg['type']) is type(obj)


@pytest.mark.parametrize('name', ['CrossEntropyLoss', 'SmoothL1Loss', 'L1Loss', 'IoULoss',
                                  'GIoULoss', 'FocalLoss'])
def test_build_loss_by_mmdet_name(name):
    loss = build_jittor_loss(dict(type=name, loss_weight=2.0))
    assert type(loss).__name__ == name and isinstance(loss, jt.nn.Module)
    assert loss.loss_weight == 2.0
    assert JITTOR_MODELS.get(name) is type(loss)


def test_build_unknown_type_lists_available():
    with pytest.raises(KeyError, match=r'"NoSuchAssigner".*Available:.*MaxIoUAssigner'):
        build_jittor_task_module(dict(type='NoSuchAssigner'))
    with pytest.raises(KeyError, match=r'"NoSuchLoss".*Available:.*SmoothL1Loss'):
        build_jittor_loss(dict(type='NoSuchLoss'))


def test_build_unexpected_key_names_it():
    with pytest.raises(TypeError, match=r"MaxIoUAssigner.*\['pos_iou_threshold'\].*accepts"):
        build_jittor_task_module(dict(type='MaxIoUAssigner', pos_iou_threshold=0.7,
                                      neg_iou_thr=0.3))
    with pytest.raises(TypeError, match=r"SmoothL1Loss.*\['betta'\]"):
        build_jittor_loss(dict(type='SmoothL1Loss', betta=1.0))
    with pytest.raises(KeyError, match='no "type"'):
        build_jittor_task_module(dict(num=3))


def test_default_args_and_class_type():
    sampler = build_jittor_task_module(dict(type='RandomSampler', num=8, pos_fraction=0.5),
                                       default_args=dict(context=object()))
    assert isinstance(sampler, RandomSampler)
    coder = build_jittor_task_module(dict(type=DeltaXYWHBBoxCoder))
    assert isinstance(coder, DeltaXYWHBBoxCoder)


# --------------------------------------------------------------------------------------------------
# AnchorGenerator
# --------------------------------------------------------------------------------------------------
ANCHOR_CFGS = {
    'rpn_fpn': dict(strides=[4, 8, 16, 32, 64], ratios=[0.5, 1.0, 2.0], scales=[8]),
    'retina_octave': dict(strides=[8, 16, 32], ratios=[0.5, 1.0, 2.0], octave_base_scale=4,
                          scales_per_octave=3),
    'scale_minor': dict(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[2, 4], scale_major=False),
    'center_offset': dict(strides=[8, 16], ratios=[1.0, 3.0], scales=[3], center_offset=0.5),
    'centers': dict(strides=[8, 16], ratios=[0.7], scales=[5], centers=[(3.5, 2.0), (7., 7.5)]),
    'rect_stride_base_sizes': dict(strides=[(8, 4), (16, 12)], ratios=[0.5, 1.0],
                                   scales=[1.5, 2.25], base_sizes=[6.5, 13]),
}
FEATMAP_SIZES = [(13, 10), (7, 5), (4, 3), (2, 2), (1, 1)]


@pytest.mark.parametrize('name', list(ANCHOR_CFGS))
def test_anchor_generator_exactly_equal(name):
    cfg = ANCHOR_CFGS[name]
    ours = AnchorGenerator(**cfg)
    ref = mm_tm.AnchorGenerator(**cfg)
    sizes = FEATMAP_SIZES[:ours.num_levels]
    assert ours.num_base_priors == ref.num_base_priors
    for ours_base, ref_base in zip(ours.base_anchors, ref.base_anchors):
        assert np.array_equal(ours_base, ref_base.numpy())
    for ours_lvl, ref_lvl in zip(ours.grid_priors(sizes), ref.grid_priors(sizes, device='cpu')):
        assert ours_lvl.dtype == 'float32'
        assert np.array_equal(ours_lvl.numpy(), ref_lvl.numpy()), name

    # one row and two columns of the first level lie in the padding
    (stride_w, stride_h), (feat_h, feat_w) = ours.strides[0], sizes[0]
    pad_shape = ((feat_h - 2) * stride_h + 1, (feat_w - 3) * stride_w + 1, 3)
    for ours_f, ref_f in zip(ours.valid_flags(sizes, pad_shape),
                             ref.valid_flags(sizes, pad_shape, device='cpu')):
        assert np.array_equal(ours_f.numpy().astype(bool), ref_f.numpy())
    flags = ours.valid_flags(sizes, pad_shape)[0].numpy().astype(bool)
    assert 0 < flags.sum() < flags.size  # the padding case is really exercised


def test_anchor_generator_bad_configs():
    with pytest.raises(ValueError, match='either `scales`'):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1], octave_base_scale=4,
                        scales_per_octave=3)
    with pytest.raises(ValueError, match='center_offset'):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1], center_offset=1.5)
    with pytest.raises(ValueError, match='2 levels'):
        AnchorGenerator(strides=[8, 16], ratios=[1.], scales=[1]).grid_priors([(2, 2)])


# --------------------------------------------------------------------------------------------------
# DeltaXYWHBBoxCoder
# --------------------------------------------------------------------------------------------------
CODER_CFGS = {
    'default': dict(),
    'rcnn_stds': dict(target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2]),
    'means_no_clip': dict(target_means=[0.1, -0.2, 0.05, 0.], target_stds=[0.5, 1., 2., 0.3],
                          clip_border=False),
    'ctr_clamp': dict(add_ctr_clamp=True, ctr_clamp=8),
}


@pytest.mark.parametrize('name', list(CODER_CFGS))
def test_delta_xywh_coder_encode(name):
    rng = np.random.default_rng(1)
    boxes, gts = random_boxes(rng, 30), random_boxes(rng, 30)
    ours = DeltaXYWHBBoxCoder(**CODER_CFGS[name]).encode(jt.array(boxes), jt.array(gts)).numpy()
    ref = mm_tm.DeltaXYWHBBoxCoder(**CODER_CFGS[name]).encode(
        torch.tensor(boxes), torch.tensor(gts)).numpy()
    assert ours.shape == ref.shape == (30, 4)
    assert scaled_err(ours, ref) < CODER_ATOL


@pytest.mark.parametrize('num_classes', [1, 3])
@pytest.mark.parametrize('max_shape', [None, (60, 80, 3)])
@pytest.mark.parametrize('name', list(CODER_CFGS))
def test_delta_xywh_coder_decode_and_grad(name, max_shape, num_classes):
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 25)
    deltas = (rng.standard_normal((25, 4 * num_classes)) * 1.5).astype(np.float32)
    deltas[0, 2:4] = [9., -9.]  # beyond wh_ratio_clip on both sides
    cotangent = rng.standard_normal((25, 4 * num_classes)).astype(np.float32)
    wh_ratio_clip = 0.02

    ours_coder = DeltaXYWHBBoxCoder(**CODER_CFGS[name])
    jd = jt.array(deltas)
    ours = ours_coder.decode(jt.array(boxes), jd, max_shape=max_shape, wh_ratio_clip=wh_ratio_clip)
    ours_grad = jt.grad((ours * jt.array(cotangent)).sum(), jd)

    td = torch.tensor(deltas, requires_grad=True)
    ref = mm_tm.DeltaXYWHBBoxCoder(**CODER_CFGS[name]).decode(
        torch.tensor(boxes), td, max_shape=max_shape, wh_ratio_clip=wh_ratio_clip)
    (ref * torch.tensor(cotangent)).sum().backward()

    assert tuple(ours.shape) == tuple(ref.shape)
    assert scaled_err(ours.numpy(), ref.detach().numpy()) < CODER_ATOL
    assert rel_err(ours_grad.numpy(), td.grad.numpy()) < GRAD_RTOL


def test_delta_xywh_coder_roundtrip_and_empty():
    rng = np.random.default_rng(3)
    boxes, gts = random_boxes(rng, 10), random_boxes(rng, 10)
    coder = DeltaXYWHBBoxCoder(target_stds=[0.1, 0.1, 0.2, 0.2])
    deltas = coder.encode(jt.array(boxes), jt.array(gts))
    back = coder.decode(jt.array(boxes), deltas, wh_ratio_clip=1e-6).numpy()
    assert np.abs(back - gts).max() < 1e-3
    empty = coder.decode(jt.zeros((0, 4)), jt.zeros((0, 4)))
    assert tuple(empty.shape) == (0, 4)
    with pytest.raises(ValueError, match='encode'):
        coder.encode(jt.array(boxes), jt.array(gts[:5]))


# --------------------------------------------------------------------------------------------------
# MaxIoUAssigner
# --------------------------------------------------------------------------------------------------
ASSIGNER_CFGS = {
    'rpn': dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True,
                ignore_iof_thr=-1),
    'rcnn': dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=False,
                 ignore_iof_thr=-1),
    'neg_range': dict(pos_iou_thr=0.5, neg_iou_thr=(0.1, 0.4), min_pos_iou=0.0),
    'first_max_only': dict(pos_iou_thr=0.6, neg_iou_thr=0.4, gt_max_assign_all=False),
    'ignore_wrt_candidates': dict(pos_iou_thr=0.5, neg_iou_thr=0.4, ignore_iof_thr=0.5),
    'ignore_wrt_ignored': dict(pos_iou_thr=0.5, neg_iou_thr=0.4, ignore_iof_thr=0.3,
                               ignore_wrt_candidates=False),
}


IOU_MARGIN = 1e-5


def assert_assignment_margins(cfg, priors, gts, ignore=None) -> None:
    """Float64 IoUs / IoFs: every threshold and every argmax has IOU_MARGIN (module docstring)."""
    def iou(a, b, mode='iou'):
        a, b = a.astype(np.float64), b.astype(np.float64)
        lt = np.maximum(a[:, None, :2], b[None, :, :2])
        rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        union = area(a)[:, None] + (area(b)[None] - inter if mode == 'iou' else 0)
        return inter / np.maximum(union, 1e-6)

    if len(priors) == 0 or len(gts) == 0:
        return
    overlaps = iou(priors, gts)  # (priors, gts)
    thresholds = [cfg['pos_iou_thr'], cfg.get('min_pos_iou', 0.0)]
    neg = cfg['neg_iou_thr']
    thresholds += list(neg) if isinstance(neg, tuple) else [neg]
    positive = overlaps[overlaps > 0]  # zeros (no overlap) are exact in any precision
    assert min(np.abs(positive - t).min() for t in thresholds) >= IOU_MARGIN
    for values in (overlaps, overlaps.T):  # best gt of each prior, best prior of each gt
        if values.shape[1] > 1:
            top2 = -np.sort(-values, axis=1)[:, :2]
            gap = top2[:, 0] - top2[:, 1]
            assert np.all((gap == 0) & (top2[:, 0] == 0) | (gap >= IOU_MARGIN)), gap.min()
    if ignore is not None and cfg.get('ignore_iof_thr', -1) > 0:
        iof = iou(priors, ignore, mode='iof') if cfg.get('ignore_wrt_candidates', True) else \
            iou(ignore, priors, mode='iof').T
        assert np.abs(iof[iof > 0] - cfg['ignore_iof_thr']).min() >= IOU_MARGIN


def run_both_assigners(cfg, priors, gts, labels, ignore=None):
    ours = MaxIoUAssigner(**cfg).assign(
        jt.array(priors), jt.array(gts), jt.array(labels),
        None if ignore is None else jt.array(ignore))
    pred = InstanceData(priors=torch.tensor(priors))
    gt = InstanceData(bboxes=torch.tensor(gts), labels=torch.tensor(labels, dtype=torch.long))
    gt_ignore = None if ignore is None else InstanceData(bboxes=torch.tensor(ignore))
    ref = mm_tm.MaxIoUAssigner(**cfg).assign(pred, gt, gt_ignore)
    return ours, ref


def assert_same_assignment(ours: AssignResult, ref) -> None:
    assert ours.num_gts == ref.num_gts
    assert ours.gt_inds.dtype == 'int32'
    np.testing.assert_array_equal(ours.gt_inds.numpy(), ref.gt_inds.numpy())
    np.testing.assert_array_equal(ours.labels.numpy(), ref.labels.numpy())
    np.testing.assert_allclose(ours.max_overlaps.numpy(), ref.max_overlaps.numpy(), rtol=0,
                               atol=OVERLAP_ATOL)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('name', list(ASSIGNER_CFGS))
def test_max_iou_assigner_random_boxes(name, seed):
    rng = np.random.default_rng(seed)
    gts = random_boxes(rng, 6, min_size=10)
    # priors: random boxes plus jittered copies of the gts, so every IoU range is populated
    jitter = rng.uniform(-4, 4, size=(18, 4)).astype(np.float32)
    priors = np.concatenate([random_boxes(rng, 60), np.repeat(gts, 3, axis=0) + jitter])
    labels = rng.integers(0, 5, size=6)
    ignore = random_boxes(rng, 3, min_size=20) if 'ignore' in name else None
    assert_assignment_margins(ASSIGNER_CFGS[name], priors, gts, ignore)
    ours, ref = run_both_assigners(ASSIGNER_CFGS[name], priors, gts, labels, ignore)
    assert_same_assignment(ours, ref)
    gt_inds = ours.gt_inds.numpy()
    assert (gt_inds > 0).any() and (gt_inds == 0).any()  # both kinds occur
    if 'ignore' in name:
        assert (gt_inds == -1).any()


@pytest.mark.parametrize('name', ['rpn', 'first_max_only'])
def test_max_iou_assigner_ties_on_anchor_grid(name):
    """Symmetric anchors give exact IoU ties; low-quality matching must break them like mmdet."""
    anchors = AnchorGenerator(strides=[8], ratios=[0.5, 1.0, 2.0], scales=[2]).grid_priors(
        [(6, 6)])[0].numpy()
    gts = np.array([[4, 4, 20, 20], [12, 0, 28, 16], [4, 4, 20, 20], [20, 20, 36, 44]],
                   dtype=np.float32)  # a duplicated gt, and gts centred between anchors
    labels = np.array([1, 2, 3, 0])
    ours, ref = run_both_assigners(ASSIGNER_CFGS[name], anchors, gts, labels)
    assert_same_assignment(ours, ref)


def test_max_iou_assigner_no_gt_no_priors_all_ignored():
    rng = np.random.default_rng(5)
    priors = random_boxes(rng, 12)
    cfg = ASSIGNER_CFGS['ignore_wrt_candidates']
    # no gt: everything negative
    ours, ref = run_both_assigners(cfg, priors, np.zeros((0, 4), np.float32),
                                   np.zeros((0, ), np.int64))
    assert_same_assignment(ours, ref)
    assert (ours.gt_inds.numpy() == 0).all()
    # no priors
    ours, ref = run_both_assigners(cfg, np.zeros((0, 4), np.float32), random_boxes(rng, 3),
                                   np.array([0, 1, 2]))
    assert_same_assignment(ours, ref)
    assert ours.num_preds == 0
    # everything ignored: an ignore box covering the whole image
    ours, ref = run_both_assigners(cfg, priors, random_boxes(rng, 3), np.array([0, 1, 2]),
                                   ignore=np.array([[-10, -10, 500, 500]], np.float32))
    assert_same_assignment(ours, ref)
    assert (ours.gt_inds.numpy() == -1).all()


def test_max_iou_assigner_accepts_instance_data_and_rejects_bad_cfg():
    rng = np.random.default_rng(6)
    priors, gts = random_boxes(rng, 20), random_boxes(rng, 3)
    labels = np.array([2, 0, 1])
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4)
    a = assigner.assign(jt.array(priors), jt.array(gts), jt.array(labels))
    b = assigner.assign(
        InstanceData(priors=jt.array(priors)), InstanceData(bboxes=jt.array(gts),
                                                            labels=jt.array(labels)))
    np.testing.assert_array_equal(a.gt_inds.numpy(), b.gt_inds.numpy())
    np.testing.assert_array_equal(a.labels.numpy(), b.labels.numpy())
    with pytest.raises(NotImplementedError, match='perm_repeat_gt_cfg'):
        MaxIoUAssigner(0.5, 0.5, perm_repeat_gt_cfg=dict(iou_thr=0.97))
    with pytest.raises(ValueError, match='2 values'):
        MaxIoUAssigner(0.5, (0.1, 0.2, 0.3))


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------
def assignment_case(seed: int, num_priors: int = 40, num_gts: int = 4):
    rng = np.random.default_rng(seed)
    gts = random_boxes(rng, num_gts, min_size=10)
    jitter = rng.uniform(-3, 3, size=(3 * num_gts, 4)).astype(np.float32)
    priors = np.concatenate([random_boxes(rng, num_priors), np.repeat(gts, 3, axis=0) + jitter])
    labels = rng.integers(0, 3, size=num_gts)
    return priors, gts, labels


def run_both_samplers(ours_sampler, ref_sampler, cfg_assigner, priors, gts, labels):
    ours_assign = MaxIoUAssigner(**cfg_assigner).assign(jt.array(priors), jt.array(gts),
                                                        jt.array(labels))
    ours = ours_sampler.sample(ours_assign, jt.array(priors), jt.array(gts), jt.array(labels))
    pred = InstanceData(priors=torch.tensor(priors))
    gt = InstanceData(bboxes=torch.tensor(gts), labels=torch.tensor(labels, dtype=torch.long))
    ref_assign = mm_tm.MaxIoUAssigner(**cfg_assigner).assign(pred, gt)
    ref = ref_sampler.sample(ref_assign, pred, gt)
    return ours, ref


def assert_same_sampling(ours, ref) -> None:
    for field in ('pos_inds', 'neg_inds', 'pos_assigned_gt_inds', 'pos_gt_labels', 'pos_is_gt'):
        np.testing.assert_array_equal(
            getattr(ours, field).numpy().astype(np.int64),
            getattr(ref, field).numpy().astype(np.int64), err_msg=field)
    for field in ('pos_priors', 'neg_priors', 'pos_gt_bboxes', 'priors'):
        np.testing.assert_array_equal(getattr(ours, field).numpy(), getattr(ref, field).numpy(),
                                      err_msg=field)
    for field in ('num_pos', 'num_neg', 'avg_factor', 'num_gts'):
        assert getattr(ours, field) == getattr(ref, field), field


RCNN_ASSIGNER = ASSIGNER_CFGS['rcnn']
RPN_ASSIGNER = ASSIGNER_CFGS['rpn']


@pytest.mark.parametrize('add_gt', [False, True])
def test_random_sampler_all_candidates_fit(add_gt):
    """num large enough that mmdet takes every candidate: no randomness on either side."""
    priors, gts, labels = assignment_case(0)
    kwargs = dict(num=1000, pos_fraction=0.5, add_gt_as_proposals=add_gt)
    ours, ref = run_both_samplers(RandomSampler(**kwargs), mm_tm.RandomSampler(**kwargs),
                                  RCNN_ASSIGNER, priors, gts, labels)
    assert_same_sampling(ours, ref)
    assert len(ours.pos_inds_np) > 0 and len(ours.neg_inds_np) > 0


@pytest.mark.parametrize('add_gt', [False, True])
@pytest.mark.parametrize('num,pos_fraction,neg_pos_ub', [(12, 0.25, -1), (40, 0.5, 1)])
def test_random_sampler_deterministic_matches_patched_mmdet(num, pos_fraction, neg_pos_ub, add_gt,
                                                            monkeypatch):
    """Randomness removed on both sides: the Jittor sampler's ``deterministic`` hook, mmdet's
    ``random_choice`` patched to take the first candidates."""
    monkeypatch.setattr(mm_tm.RandomSampler, 'random_choice',
                        lambda self, gallery, num: gallery[:num])
    priors, gts, labels = assignment_case(1, num_priors=60, num_gts=5)
    kwargs = dict(num=num, pos_fraction=pos_fraction, neg_pos_ub=neg_pos_ub,
                  add_gt_as_proposals=add_gt)
    ours, ref = run_both_samplers(RandomSampler(deterministic=True, **kwargs),
                                  mm_tm.RandomSampler(**kwargs), RPN_ASSIGNER, priors, gts,
                                  labels)
    assert_same_sampling(ours, ref)
    num_pos, num_neg = len(ours.pos_inds_np), len(ours.neg_inds_np)
    if neg_pos_ub < 0:
        assert (num_pos, num_neg) == (3, 9)  # sampling really happened
    else:
        assert num_neg == neg_pos_ub * num_pos < num - num_pos  # the bound really applied


def test_random_sampler_random_mode_sizes_and_seed():
    priors, gts, labels = assignment_case(2, num_priors=80, num_gts=6)
    assign = MaxIoUAssigner(**RPN_ASSIGNER).assign(jt.array(priors), jt.array(gts),
                                                   jt.array(labels))
    gt_inds = assign.gt_inds.numpy()
    num_pos_avail, num_neg_avail = int((gt_inds > 0).sum()), int((gt_inds == 0).sum())
    num, pos_fraction = 16, 0.25
    assert num_pos_avail > num * pos_fraction and num_neg_avail > num

    def sample(seed):
        return RandomSampler(num, pos_fraction, add_gt_as_proposals=False, rng=seed).sample(
            assign, jt.array(priors), jt.array(gts), jt.array(labels))

    a, b, c = sample(7), sample(7), sample(8)
    assert len(a.pos_inds_np) == int(num * pos_fraction) and len(a.neg_inds_np) == num - 4
    assert (gt_inds[a.pos_inds_np] > 0).all() and (gt_inds[a.neg_inds_np] == 0).all()
    # unique and sorted, as mmdet's .unique()
    assert np.all(np.diff(a.pos_inds_np) > 0) and np.all(np.diff(a.neg_inds_np) > 0)
    np.testing.assert_array_equal(a.pos_inds_np, b.pos_inds_np)
    np.testing.assert_array_equal(a.neg_inds_np, b.neg_inds_np)
    assert not (np.array_equal(a.pos_inds_np, c.pos_inds_np)
                and np.array_equal(a.neg_inds_np, c.neg_inds_np))
    # targets are consistent with the assignment
    np.testing.assert_array_equal(a.pos_assigned_gt_inds.numpy(), gt_inds[a.pos_inds_np] - 1)
    np.testing.assert_array_equal(a.pos_gt_bboxes.numpy(), gts[gt_inds[a.pos_inds_np] - 1])
    np.testing.assert_array_equal(a.pos_priors.numpy(), priors[a.pos_inds_np])


def test_random_sampler_no_gt():
    rng = np.random.default_rng(4)
    priors = random_boxes(rng, 10)
    kwargs = dict(num=64, pos_fraction=0.5, add_gt_as_proposals=True)
    ours, ref = run_both_samplers(RandomSampler(**kwargs), mm_tm.RandomSampler(**kwargs),
                                  RCNN_ASSIGNER, priors, np.zeros((0, 4), np.float32),
                                  np.zeros((0, ), np.int64))
    assert_same_sampling(ours, ref)
    assert tuple(ours.pos_gt_bboxes.shape) == (0, 4) and len(ours.neg_inds_np) == 10


@pytest.mark.parametrize('seed', [0, 3])
def test_pseudo_sampler_matches_mmdet(seed):
    priors, gts, labels = assignment_case(seed)
    ours, ref = run_both_samplers(PseudoSampler(), mm_tm.PseudoSampler(), RPN_ASSIGNER, priors,
                                  gts, labels)
    assert_same_sampling(ours, ref)
    assert ours.avg_factor == max(len(ours.pos_inds_np), 1)
