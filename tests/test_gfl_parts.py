"""GFL's parts against mmdet 3.3.0 on identical inputs: ``QualityFocalLoss``,
``DistributionFocalLoss``, ``DistancePointBBoxCoder`` (with ``bbox2distance`` /
``distance2bbox``) and ``ATSSAssigner``. (``GIoULoss`` is compared in ``test_losses.py``.)

Tolerances (float32): losses 1e-5 (max abs, relative above 1); gradients w.r.t. ``pred`` of
``<loss, g>`` for a random cotangent ``g`` 1e-4 relative (``max|a - b| / max|b|``); coder outputs
1e-5 absolute (pixels, boxes of tens of pixels), their gradients 1e-6 absolute (they are 0 or +-1);
assignments identical.

Near-ties: QFL's ``|q - p|^beta`` (beta = 2) and DFL's interpolation between the two bins around
the target are continuous with continuous gradients, so no input needs a margin (DFL's floor of the
target is taken of the same float32 value on both sides). The coder's clamps are decided on inputs
kept at least ``MARGIN`` from the clamp bounds. ATSS decides by centre distances (the ``topk`` cut
per level), by IoU against each gt's mean + std, by the prior centre's distance to the gt sides
against 0.01, by the best IoU among gts and by IoF against ``ignore_iof_thr``: every one of these is
asserted at least ``MARGIN`` from its boundary in float64 before the comparison.
"""
import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.models.losses import (DistributionFocalLoss, QualityFocalLoss,
                                         build_jittor_loss)
from jt_mm_plugins.models.task_modules import (AnchorGenerator, ATSSAssigner,
                                               DistancePointBBoxCoder, build_jittor_task_module)
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

mm_losses = pytest.importorskip('mmdet.models.losses')
from mmdet.models.task_modules.assigners import ATSSAssigner as MMATSSAssigner  # noqa: E402
from mmdet.models.task_modules.coders import \
    DistancePointBBoxCoder as MMDistancePointBBoxCoder  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

LOSS_ATOL = 1e-5
GRAD_RTOL = 1e-4
COORD_ATOL, COORD_GRAD_ATOL = 1e-5, 1e-6
MARGIN = 1e-4
N, C = 12, 5

# (reduction_override, weighted, avg_factor)
CALLS = [(None, False, None), ('sum', False, None), ('none', False, None), (None, True, None),
         (None, True, 7.5), ('none', True, 7.5), ('sum', True, None)]
CALL_IDS = [f'{r}-{w}-{a}' for r, w, a in CALLS]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def compare_loss(ours_loss, ref_loss, pred: np.ndarray, jt_target, torch_target, weight=None,
                 avg_factor=None, reduction_override=None, seed=0):
    """Both losses on the same inputs; the value and d<loss, g>/d pred must match."""
    jp = jt.array(pred)
    ours = ours_loss(jp, jt_target, None if weight is None else jt.array(weight),
                     avg_factor=avg_factor, reduction_override=reduction_override)
    tp = torch.tensor(pred, requires_grad=True)
    ref = ref_loss(tp, torch_target, None if weight is None else torch.tensor(weight),
                   avg_factor=avg_factor, reduction_override=reduction_override)
    shape = (1, ) if ref.ndim == 0 else tuple(ref.shape)
    assert tuple(ours.shape) == shape, (tuple(ours.shape), tuple(ref.shape))
    ref_np = ref.detach().numpy()
    assert np.abs(ours.numpy().reshape(ref_np.shape) - ref_np).max() < LOSS_ATOL * max(
        1., np.abs(ref_np).max())
    g = np.random.default_rng(seed).uniform(0.5, 1.5, size=ref.shape).astype(np.float32)
    (ref * torch.tensor(g)).sum().backward()
    ours_grad = jt.grad((ours * jt.array(g.reshape(shape))).sum(), jp).numpy()
    err = rel_err(ours_grad, tp.grad.numpy())
    assert err < GRAD_RTOL, err
    return ref_np


# ------------------------------------------------------------------------------------------------
# QualityFocalLoss
# ------------------------------------------------------------------------------------------------


def qfl_inputs(seed: int, activated: bool):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (N, C)).astype(np.float32)
    pred = (1 / (1 + np.exp(-logits))).astype(np.float32) if activated else logits
    labels = rng.integers(0, C + 1, N)  # C is background
    labels[:3] = [0, C, 2]
    scores = rng.uniform(0, 1, N).astype(np.float32)
    weight = rng.uniform(0.2, 1.5, N).astype(np.float32)
    return pred, labels, scores, weight


@pytest.mark.parametrize('activated', [False, True])
@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
def test_quality_focal_loss_label_score_target(activated, call):
    reduction, weighted, avg_factor = call
    cfg = dict(beta=2.0, loss_weight=0.7, activated=activated)
    pred, labels, scores, weight = qfl_inputs(1, activated)
    compare_loss(QualityFocalLoss(**cfg), mm_losses.QualityFocalLoss(**cfg), pred,
                 (jt.array(labels.astype(np.int32)), jt.array(scores)),
                 (torch.tensor(labels), torch.tensor(scores)),
                 weight if weighted else None, avg_factor, reduction)


@pytest.mark.parametrize('activated', [False, True])
def test_quality_focal_loss_tensor_target(activated):
    pred, labels, scores, weight = qfl_inputs(2, activated)
    target = np.zeros((N, C), np.float32)
    fg = labels < C
    target[np.nonzero(fg)[0], labels[fg]] = scores[fg]
    for beta in (2.0, 1.5):
        cfg = dict(beta=beta, activated=activated)
        compare_loss(QualityFocalLoss(**cfg), mm_losses.QualityFocalLoss(**cfg), pred,
                     jt.array(target), torch.tensor(target), weight, 4.0)


def test_quality_focal_loss_refusals_and_registry():
    with pytest.raises(InputError, match='use_sigmoid'):
        QualityFocalLoss(use_sigmoid=False)
    with pytest.raises(AssertionError):  # mmdet asserts; InputError is an AssertionError too
        QualityFocalLoss(use_sigmoid=False)
    loss = QualityFocalLoss()
    with pytest.raises(InputError, match='label'):
        loss(jt.zeros((3, 2)), (jt.zeros((2, )).int32(), jt.zeros((3, ))))
    built = build_jittor_loss(dict(type='QualityFocalLoss', beta=2.0, loss_weight=1.0))
    assert isinstance(built, QualityFocalLoss)
    assert isinstance(build_jittor_loss(dict(type='DistributionFocalLoss', loss_weight=0.25)),
                      DistributionFocalLoss)


# ------------------------------------------------------------------------------------------------
# DistributionFocalLoss
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
def test_distribution_focal_loss(call):
    reduction, weighted, avg_factor = call
    reg_max = 7
    rng = np.random.default_rng(3)
    pred = rng.normal(0, 2, (N * 4, reg_max + 1)).astype(np.float32)
    # targets in [0, reg_max - 0.1] as GFL clamps them; two exact integers included
    target = rng.uniform(0, reg_max - 0.1, N * 4).astype(np.float32)
    target[:2] = [0.0, 3.0]
    weight = rng.uniform(0.2, 1.5, N * 4).astype(np.float32)
    compare_loss(DistributionFocalLoss(loss_weight=0.25),
                 mm_losses.DistributionFocalLoss(loss_weight=0.25), pred, jt.array(target),
                 torch.tensor(target), weight if weighted else None, avg_factor, reduction)


# ------------------------------------------------------------------------------------------------
# DistancePointBBoxCoder
# ------------------------------------------------------------------------------------------------


def test_distance_point_coder_encode_decode():
    rng = np.random.default_rng(4)
    n = 20
    points = rng.uniform(4, 60, (n, 2)).astype(np.float32)
    xy1 = points - rng.uniform(1, 30, (n, 2))
    gt = np.concatenate([xy1, points + rng.uniform(1, 30, (n, 2))], 1).astype(np.float32)
    gt[:3, 0] = points[:3, 0] + np.array([2.0, 5.0, 9.0])  # points left of their box
    max_dis = 16.0
    dist64 = np.concatenate([points - gt[:, :2], gt[:, 2:] - points], 1).astype(np.float64)
    # clamp decisions away from the bounds 0 and max_dis - eps
    assert np.abs(dist64).min() >= MARGIN and np.abs(dist64 - (max_dis - 0.1)).min() >= MARGIN

    ours, ref = DistancePointBBoxCoder(), MMDistancePointBBoxCoder()
    for kwargs in (dict(), dict(max_dis=max_dis), dict(max_dis=max_dis, eps=0.5)):
        got = ours.encode(jt.array(points), jt.array(gt), **kwargs).numpy()
        exp = ref.encode(torch.tensor(points), torch.tensor(gt), **kwargs).numpy()
        assert np.abs(got - exp).max() <= COORD_ATOL, kwargs

    distances = rng.uniform(0.5, 40, (n, 4)).astype(np.float32)
    max_shape = (48, 56)
    boxes64 = np.concatenate([points - distances[:, :2], points + distances[:, 2:]], 1)
    bounds = np.array([56, 48, 56, 48], np.float64)
    assert np.abs(boxes64).min() >= MARGIN and np.abs(boxes64 - bounds).min() >= MARGIN
    g = rng.uniform(0.5, 1.5, (n, 4)).astype(np.float32)
    for clip_border in (True, False):
        for shape in (None, max_shape):
            ours = DistancePointBBoxCoder(clip_border=clip_border)
            ref = MMDistancePointBBoxCoder(clip_border=clip_border)
            jd = jt.array(distances)
            got = ours.decode(jt.array(points), jd, max_shape=shape)
            td = torch.tensor(distances, requires_grad=True)
            exp = ref.decode(torch.tensor(points), td, max_shape=shape)
            assert np.abs(got.numpy() - exp.detach().numpy()).max() <= COORD_ATOL
            (exp * torch.tensor(g)).sum().backward()
            grad = jt.grad((got * jt.array(g)).sum(), jd).numpy()
            assert np.abs(grad - td.grad.numpy()).max() <= COORD_GRAD_ATOL, (clip_border, shape)
    coder = build_jittor_task_module(dict(type='DistancePointBBoxCoder'))
    assert isinstance(coder, DistancePointBBoxCoder) and coder.encode_size == 4
    with pytest.raises(InputError, match='points'):
        coder.decode(jt.zeros((3, 4)), jt.zeros((3, 4)))
    with pytest.raises(InputError, match='pred_bboxes'):
        coder.decode(jt.zeros((3, 2)), jt.zeros((2, 4)))


# ------------------------------------------------------------------------------------------------
# ATSSAssigner
# ------------------------------------------------------------------------------------------------

ATSS_ANCHORS = dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                    ratios=[1.0], strides=[8, 16, 32])
ATSS_FEATS = [(8, 8), (4, 4), (2, 2)]


def atss_priors():
    gen = AnchorGenerator(**{k: v for k, v in ATSS_ANCHORS.items() if k != 'type'})
    levels = [p.numpy() for p in gen.grid_priors(ATSS_FEATS)]
    return np.concatenate(levels), [len(p) for p in levels]


def iou64(a, b, mode='iou'):
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area_a = np.prod(a[:, 2:] - a[:, :2], -1)
    area_b = np.prod(b[:, 2:] - b[:, :2], -1)
    if mode == 'iof':
        return inter / area_a[:, None]
    return inter / (area_a[:, None] + area_b[None] - inter)


def assert_atss_margins(priors, num_level, gts, topk, ignore=None, ignore_iof_thr=-1):
    """Every decision of ATSS on these inputs is MARGIN from its boundary (float64)."""
    overlaps = iou64(priors, gts)
    pc = (priors[:, :2] + priors[:, 2:]) / 2
    gc = (gts[:, :2] + gts[:, 2:]) / 2
    dist = np.sqrt(((pc[:, None] - gc[None])**2).sum(-1))
    if ignore is not None and ignore_iof_thr > 0:
        iof = iou64(priors, ignore, 'iof').max(1)
        assert np.abs(iof - ignore_iof_thr).min() >= MARGIN, 'ignore_iof_thr'
        dist[iof > ignore_iof_thr] = 1e8
    cands, start = [], 0
    for n in num_level:
        d = dist[start:start + n]
        k = min(topk, n)
        order = np.argsort(d, 0, kind='stable')
        if k < n:
            gap = (np.take_along_axis(d, order[k:k + 1], 0) -
                   np.take_along_axis(d, order[k - 1:k], 0))
            assert gap.min() >= MARGIN, f'topk cut: gap {gap.min():.2e}'
        cands.append(order[:k] + start)
        start += n
    cands = np.concatenate(cands)
    cand_ov = overlaps[cands, np.arange(len(gts))[None]]
    thr = cand_ov.mean(0) + cand_ov.std(0, ddof=1)
    assert np.abs(cand_ov - thr).min() >= MARGIN, 'mean + std threshold'
    sides = np.stack([pc[cands, 0] - gts[:, 0], pc[cands, 1] - gts[:, 1],
                      gts[:, 2] - pc[cands, 0], gts[:, 3] - pc[cands, 1]], 1).min(1)
    assert np.abs(sides - 0.01).min() >= MARGIN, 'centre inside gt'
    pos = (cand_ov >= thr) & (sides > 0.01)
    best = np.full(overlaps.shape, -1.0)
    best[cands[pos], np.broadcast_to(np.arange(len(gts)), pos.shape)[pos]] = overlaps[
        cands[pos], np.broadcast_to(np.arange(len(gts)), pos.shape)[pos]]
    if len(gts) > 1:
        top2 = np.sort(best, 1)[:, -2:]
        contested = top2[:, 0] >= 0
        assert (top2[contested, 1] - top2[contested, 0]).min(initial=1) >= MARGIN, 'best gt tie'
    return int(pos.any(1).sum()) if pos.size else 0


def random_gts(seed: int, n: int):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 44, (n, 2))
    wh = rng.uniform(8, 30, (n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, 64)], 1).astype(np.float32)


ATSS_CASES = {
    'topk9': dict(topk=9, seed=5, num_gts=4),
    'topk3-ignore': dict(topk=3, seed=6, num_gts=3, ignore=True),
    'topk-above-level-size': dict(topk=6, seed=7, num_gts=2),
}


@pytest.mark.parametrize('case_name', list(ATSS_CASES))
def test_atss_assigner_matches_mmdet(case_name):
    case = ATSS_CASES[case_name]
    priors, num_level = atss_priors()
    gts = random_gts(case['seed'], case['num_gts'])
    labels = np.arange(case['num_gts']) % 3
    ignore = np.array([[35.0, 1.0, 64.0, 29.0]], np.float32) if case.get('ignore') else None
    thr = 0.5 if ignore is not None else -1
    n_pos = assert_atss_margins(priors, num_level, gts, case['topk'], ignore, thr)
    assert n_pos > 0

    ref = MMATSSAssigner(topk=case['topk'], ignore_iof_thr=thr).assign(
        InstanceData(priors=torch.tensor(priors)), num_level,
        InstanceData(bboxes=torch.tensor(gts), labels=torch.tensor(labels)),
        None if ignore is None else InstanceData(bboxes=torch.tensor(ignore)))
    got = ATSSAssigner(topk=case['topk'], ignore_iof_thr=thr).assign(
        jt.array(priors), num_level, jt.array(gts), jt.array(labels.astype(np.int32)),
        None if ignore is None else jt.array(ignore))
    assert got.num_gts == ref.num_gts
    assert np.array_equal(got.gt_inds.numpy(), ref.gt_inds.numpy())
    assert np.array_equal(got.labels.numpy(), ref.labels.numpy())
    assert np.abs(got.max_overlaps.numpy() - ref.max_overlaps.numpy()).max() <= 1e-6
    if ignore is not None:
        assert (ref.gt_inds.numpy() == -1).any()  # some priors are ignored


def test_atss_assigner_empty_and_refusals():
    priors, num_level = atss_priors()
    for gts in (np.zeros((0, 4), np.float32), ):
        ref = MMATSSAssigner(topk=9).assign(
            InstanceData(priors=torch.tensor(priors)), num_level,
            InstanceData(bboxes=torch.tensor(gts), labels=torch.zeros((0, ), dtype=torch.long)))
        got = ATSSAssigner(topk=9).assign(jt.array(priors), num_level, jt.array(gts),
                                          jt.zeros((0, )).int32())
        assert np.array_equal(got.gt_inds.numpy(), ref.gt_inds.numpy())
        assert np.array_equal(got.labels.numpy(), ref.labels.numpy())
    with pytest.raises(InputError, match='num_level_priors'):
        ATSSAssigner(topk=9).assign(jt.array(priors), [3, 4], jt.array(random_gts(0, 2)))
    with pytest.raises(NotImplementedError, match='alpha'):
        ATSSAssigner(topk=9, alpha=0.8)
    assigner = build_jittor_task_module(dict(type='ATSSAssigner', topk=9))
    assert isinstance(assigner, ATSSAssigner)
