"""Jittor losses against mmdet 3.3.0's, on identical inputs.

For every loss, configuration and call (reductions 'none'/'mean'/'sum', with and without weights
and avg_factor): the loss within 1e-5 (max abs, relative above 1; float32; a reduced loss is (1,) in
Jittor, which has no 0-d Vars, and () in torch) and the gradient w.r.t. ``pred`` of
``<loss, g>`` for a random cotangent ``g`` within 1e-4 relative (max|a - b| / max|b|) of torch
autograd.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.models.losses import (CrossEntropyLoss, FocalLoss, GIoULoss, IoULoss, L1Loss,
                                         SmoothL1Loss, weight_reduce_loss)
from jt_mm_plugins.runtime import jt

mm_losses = pytest.importorskip('mmdet.models.losses')

LOSS_ATOL = 1e-5
GRAD_RTOL = 1e-4
N, C = 12, 5


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|b|, 1e-6)."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def to_jt(x):
    return None if x is None else jt.array(x)


def to_torch(x, dtype=None):
    return None if x is None else torch.tensor(x, dtype=dtype)


def compare(ours_loss: jt.nn.Module, ref_loss: torch.nn.Module, pred: np.ndarray, target,
            weight=None, avg_factor=None, reduction_override=None, label_dtype=None, seed=0,
            **extra):
    """Run both losses; assert the loss and d<loss, g>/d pred match. Returns the loss value."""
    jp = jt.array(pred)
    ours = ours_loss(jp, to_jt(target), to_jt(weight), avg_factor=avg_factor,
                     reduction_override=reduction_override, **extra)
    tp = torch.tensor(pred, requires_grad=True)
    ref = ref_loss(tp, to_torch(target, label_dtype), to_torch(weight), avg_factor=avg_factor,
                   reduction_override=reduction_override, **extra)
    # Jittor has no 0-d Vars: a reduced loss is (1,) where torch's is ()
    expected_shape = (1, ) if ref.ndim == 0 else tuple(ref.shape)
    assert tuple(ours.shape) == expected_shape, (tuple(ours.shape), tuple(ref.shape))
    ref_np = ref.detach().numpy()
    ours_np = ours.numpy().reshape(ref_np.shape)
    assert np.abs(ours_np - ref_np).max() < LOSS_ATOL * max(1., np.abs(ref_np).max())

    g = np.random.default_rng(seed).uniform(0.5, 1.5, size=ref.shape).astype(np.float32)
    (ref * torch.tensor(g)).sum().backward()
    ours_grad = jt.grad((ours * jt.array(g.reshape(expected_shape))).sum(), jp).numpy()
    ref_grad = tp.grad.numpy()
    assert rel_err(ours_grad, ref_grad) < GRAD_RTOL, rel_err(ours_grad, ref_grad)
    return ref_np


# (reduction_override, weight kind, avg_factor)
CALLS = [
    (None, None, None),
    ('sum', None, None),
    ('none', None, None),
    (None, 'weight', None),
    (None, 'weight', 7.5),
    ('none', 'weight', 7.5),
    ('sum', 'weight', None),
]
CALL_IDS = [f'{r}-{w}-{a}' for r, w, a in CALLS]


def random_weight(rng, shape, kind):
    if kind is None:
        return None
    w = rng.uniform(0, 2, size=shape).astype(np.float32)
    w[::3] = 0  # some zero weights, as for ignored samples
    return w


# --------------------------------------------------------------------------------------------------
# CrossEntropyLoss
# --------------------------------------------------------------------------------------------------
CE_CFGS = {
    'softmax': dict(),
    'softmax_class_weight': dict(class_weight=[0.5, 1., 2., 1.5, 0.2], loss_weight=1.7),
    'softmax_ignore': dict(ignore_index=2),
    'softmax_ignore_avg_non_ignore': dict(ignore_index=2, avg_non_ignore=True),
    'sigmoid': dict(use_sigmoid=True),
    'sigmoid_class_weight': dict(use_sigmoid=True, class_weight=[0.5, 1., 2., 1.5, 0.2]),
    'sigmoid_avg_non_ignore': dict(use_sigmoid=True, ignore_index=1, avg_non_ignore=True),
}


@pytest.mark.filterwarnings('ignore:Default ``avg_non_ignore``')
@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
@pytest.mark.parametrize('name', list(CE_CFGS))
def test_cross_entropy_loss(name, call):
    reduction, weight_kind, avg_factor = call
    rng = np.random.default_rng(0)
    pred = (rng.standard_normal((N, C)) * 2).astype(np.float32)
    # labels include the background index C (sigmoid: all-zero one-hot)
    labels = rng.integers(0, C + 1 if 'sigmoid' in name else C, size=N)
    labels[:3] = [0, 2, 1]
    cfg = CE_CFGS[name]
    compare(CrossEntropyLoss(**cfg), mm_losses.CrossEntropyLoss(**cfg), pred, labels,
            random_weight(rng, (N, ), weight_kind), avg_factor, reduction, torch.long)


@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
def test_cross_entropy_rpn_style_single_channel(call):
    """RPN: sigmoid CE with (N, 1) scores and labels 0 (object) / 1 (background)."""
    reduction, weight_kind, avg_factor = call
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((N, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=N)
    cfg = dict(use_sigmoid=True, loss_weight=1.0)
    compare(CrossEntropyLoss(**cfg), mm_losses.CrossEntropyLoss(**cfg), pred, labels,
            random_weight(rng, (N, ), weight_kind), avg_factor, reduction, torch.long)


def test_cross_entropy_sigmoid_same_shape_targets_and_override_ignore():
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((N, C)).astype(np.float32)
    target = rng.integers(0, 2, size=(N, C)).astype(np.float32)
    cfg = dict(use_sigmoid=True)
    compare(CrossEntropyLoss(**cfg), mm_losses.CrossEntropyLoss(**cfg), pred, target,
            rng.uniform(0, 1, size=(N, C)).astype(np.float32))
    labels = rng.integers(0, C, size=N)
    compare(CrossEntropyLoss(), mm_losses.CrossEntropyLoss(), pred, labels, None, None, None,
            torch.long, ignore_index=int(labels[0]))


def test_cross_entropy_rejects_mask_and_bad_reduction():
    with pytest.raises(NotImplementedError, match='use_mask'):
        CrossEntropyLoss(use_mask=True)
    with pytest.raises(ValueError, match='reduction'):
        CrossEntropyLoss(reduction='avg')
    with pytest.raises(ValueError, match='sum'):
        weight_reduce_loss(jt.ones((3, )), reduction='sum', avg_factor=2.)


def test_class_weight_is_not_a_parameter():
    loss = CrossEntropyLoss(class_weight=[1., 2.])
    assert list(loss.parameters()) == []


# --------------------------------------------------------------------------------------------------
# SmoothL1Loss / L1Loss
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
@pytest.mark.parametrize('name,cfg', [('SmoothL1Loss', dict(beta=1.0)),
                                      ('SmoothL1Loss', dict(beta=0.11, loss_weight=2.)),
                                      ('L1Loss', dict()), ('L1Loss', dict(loss_weight=0.5))])
def test_regression_losses(name, cfg, call):
    reduction, weight_kind, avg_factor = call
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((N, 4)).astype(np.float32)
    target = (pred + rng.standard_normal((N, 4)) * 0.6).astype(np.float32)
    ours_cls = {'SmoothL1Loss': SmoothL1Loss, 'L1Loss': L1Loss}[name]
    compare(ours_cls(**cfg), getattr(mm_losses, name)(**cfg), pred, target,
            random_weight(rng, (N, 4), weight_kind), avg_factor, reduction)


@pytest.mark.parametrize('name', ['SmoothL1Loss', 'L1Loss', 'GIoULoss'])
def test_all_zero_weight_shortcut(name):
    """mmdet returns (pred * weight).sum() when no weight is positive (even for 'none')."""
    rng = np.random.default_rng(4)
    pred = np.abs(rng.standard_normal((N, 4))).astype(np.float32)
    pred[:, 2:] += pred[:, :2] + 1
    target = pred + 0.5
    ours_cls = {'SmoothL1Loss': SmoothL1Loss, 'L1Loss': L1Loss, 'GIoULoss': GIoULoss}[name]
    value = compare(ours_cls(), getattr(mm_losses, name)(), pred, target,
                    np.zeros((N, ), np.float32), reduction_override='none')
    assert value.shape == () and value == 0


# --------------------------------------------------------------------------------------------------
# IoULoss / GIoULoss
# --------------------------------------------------------------------------------------------------
def box_pairs(seed: int):
    """Predicted/target box pairs: overlapping, disjoint and nested."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, size=(N, 2))
    wh = rng.uniform(5, 30, size=(N, 2))
    target = np.concatenate([xy, xy + wh], 1)
    pred = target + rng.uniform(-6, 6, size=(N, 4))
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    pred[0] = target[0] + [100, 100, 100, 100]  # disjoint: IoU 0, clamped at eps
    pred[1] = target[1] + [2, 2, -2, -2]  # nested
    return pred.astype(np.float32), target.astype(np.float32)


@pytest.mark.filterwarnings('ignore:DeprecationWarning')
@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
@pytest.mark.parametrize('cfg', [dict(), dict(mode='linear'), dict(mode='square', loss_weight=2.),
                                 dict(linear=True, eps=1e-4)], ids=['log', 'linear', 'square',
                                                                    'linear_flag'])
def test_iou_loss(cfg, call):
    reduction, weight_kind, avg_factor = call
    pred, target = box_pairs(5)
    rng = np.random.default_rng(5)
    compare(IoULoss(**cfg), mm_losses.IoULoss(**cfg), pred, target,
            random_weight(rng, (N, ), weight_kind), avg_factor, reduction)


@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
@pytest.mark.parametrize('cfg', [dict(), dict(eps=1e-7, loss_weight=10.)], ids=['default', 'w10'])
def test_giou_loss(cfg, call):
    reduction, weight_kind, avg_factor = call
    pred, target = box_pairs(6)
    rng = np.random.default_rng(6)
    compare(GIoULoss(**cfg), mm_losses.GIoULoss(**cfg), pred, target,
            random_weight(rng, (N, ), weight_kind), avg_factor, reduction)


@pytest.mark.parametrize('loss_name', ['IoULoss', 'GIoULoss'])
def test_iou_losses_box_shaped_weight(loss_name):
    """An (n, 4) weight is averaged to (n,) as in mmdet."""
    pred, target = box_pairs(7)
    weight = np.random.default_rng(7).uniform(0.1, 1, size=(N, 4)).astype(np.float32)
    ours_cls = {'IoULoss': IoULoss, 'GIoULoss': GIoULoss}[loss_name]
    compare(ours_cls(), getattr(mm_losses, loss_name)(), pred, target, weight)


# --------------------------------------------------------------------------------------------------
# FocalLoss
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('call', CALLS, ids=CALL_IDS)
@pytest.mark.parametrize('cfg', [dict(), dict(gamma=1.5, alpha=0.4, loss_weight=2.)],
                         ids=['default', 'custom'])
@pytest.mark.parametrize('target_kind', ['index', 'one_hot'])
def test_focal_loss(target_kind, cfg, call):
    reduction, weight_kind, avg_factor = call
    rng = np.random.default_rng(8)
    pred = (rng.standard_normal((N, C)) * 2).astype(np.float32)
    labels = rng.integers(0, C + 1, size=N)  # C = background
    labels[:2] = [C, 0]
    target = labels if target_kind == 'index' else np.eye(C + 1, dtype=np.int64)[labels][:, :C]
    compare(FocalLoss(**cfg), mm_losses.FocalLoss(**cfg), pred, target,
            random_weight(rng, (N, ), weight_kind), avg_factor, reduction, torch.long)


@pytest.mark.parametrize('weight_shape', [(N, C), (N * C, )])
def test_focal_loss_weight_shapes(weight_shape):
    rng = np.random.default_rng(9)
    pred = rng.standard_normal((N, C)).astype(np.float32)
    labels = rng.integers(0, C + 1, size=N)
    weight = rng.uniform(0, 1, size=weight_shape).astype(np.float32)
    compare(FocalLoss(), mm_losses.FocalLoss(), pred, labels, weight, 4.0, None, torch.long)


@pytest.mark.parametrize('target_kind', ['index', 'one_hot'])
def test_focal_loss_activated(target_kind):
    rng = np.random.default_rng(10)
    prob = rng.uniform(0.02, 0.98, size=(N, C)).astype(np.float32)
    labels = rng.integers(0, C + 1, size=N)
    target = labels if target_kind == 'index' else np.eye(C + 1, dtype=np.int64)[labels][:, :C]
    cfg = dict(activated=True)
    compare(FocalLoss(**cfg), mm_losses.FocalLoss(**cfg), prob, target,
            rng.uniform(0, 1, size=(N, )).astype(np.float32), 6.0, None, torch.long)


def test_focal_loss_rejects_softmax():
    with pytest.raises(NotImplementedError, match='sigmoid'):
        FocalLoss(use_sigmoid=False)
