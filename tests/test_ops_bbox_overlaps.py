"""jt_mm_plugins.ops.bbox_overlaps against mmdet's bbox_overlaps (values and gradients).

Tolerances (float32): values 1e-6 absolute + 1e-5 relative (same element-wise formula in both
frameworks); GIoU gradients 1e-5 absolute.
"""
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps as mmdet_bbox_overlaps

from jt_mm_plugins.ops import bbox_overlaps
from jt_mm_plugins.runtime import jt

VALUE_ATOL, VALUE_RTOL = 1e-6, 1e-5
GRAD_ATOL = 1e-5


def random_boxes(rng: np.random.Generator, shape: tuple, degenerate: bool = True) -> np.ndarray:
    """Boxes (..., 4) with some zero-area and some out-of-image (negative) ones."""
    xy = rng.uniform(-20, 100, size=shape + (2, ))
    wh = rng.uniform(0, 60, size=shape + (2, ))
    if degenerate:
        flat = wh.reshape(-1, 2)
        flat[::5, 0] = 0  # zero width
        flat[1::7] = 0  # a point
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


@pytest.mark.parametrize('mode', ['iou', 'iof', 'giou'])
@pytest.mark.parametrize('is_aligned', [False, True])
@pytest.mark.parametrize('batch_shape', [(), (2, ), (2, 3)])
def test_matches_mmdet(mode, is_aligned, batch_shape):
    rng = np.random.default_rng(0)
    rows = 9
    cols = rows if is_aligned else 13
    b1 = random_boxes(rng, batch_shape + (rows, ))
    b2 = random_boxes(rng, batch_shape + (cols, ))
    b2[..., :2, :] = b1[..., :2, :]  # identical pairs: IoU exactly 1 (or 0/eps for points)
    expected = mmdet_bbox_overlaps(torch.from_numpy(b1), torch.from_numpy(b2), mode, is_aligned)
    got = bbox_overlaps(jt.array(b1), jt.array(b2), mode, is_aligned).numpy()
    assert got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), atol=VALUE_ATOL, rtol=VALUE_RTOL)


def test_eps_is_honoured():
    b = np.array([[0, 0, 0, 0], [1, 1, 1, 5]], np.float32)  # zero-area boxes: union 0 -> eps
    for eps in (1e-6, 1e-2):
        expected = mmdet_bbox_overlaps(torch.from_numpy(b), torch.from_numpy(b), 'giou', eps=eps)
        got = bbox_overlaps(jt.array(b), jt.array(b), 'giou', eps=eps).numpy()
        np.testing.assert_allclose(got, expected.numpy(), atol=VALUE_ATOL, rtol=VALUE_RTOL)


@pytest.mark.parametrize('mode', ['iou', 'giou'])
@pytest.mark.parametrize('is_aligned', [False, True])
def test_gradients_match_torch(mode, is_aligned):
    rng = np.random.default_rng(1)
    b1 = random_boxes(rng, (6, ), degenerate=False)
    b2 = random_boxes(rng, (6, ), degenerate=False)
    weights = rng.normal(size=(6, ) if is_aligned else (6, 6)).astype(np.float32)

    t1, t2 = torch.from_numpy(b1).requires_grad_(), torch.from_numpy(b2).requires_grad_()
    (mmdet_bbox_overlaps(t1, t2, mode, is_aligned) * torch.from_numpy(weights)).sum().backward()

    j1, j2 = jt.array(b1), jt.array(b2)
    loss = (bbox_overlaps(j1, j2, mode, is_aligned) * jt.array(weights)).sum()
    g1, g2 = jt.grad(loss, [j1, j2])
    np.testing.assert_allclose(g1.numpy(), t1.grad.numpy(), atol=GRAD_ATOL)
    np.testing.assert_allclose(g2.numpy(), t2.grad.numpy(), atol=GRAD_ATOL)


@pytest.mark.parametrize('shape1, shape2, is_aligned, expected', [
    ((0, 4), (3, 4), False, (0, 3)),
    ((3, 4), (0, 4), False, (3, 0)),
    ((0, 4), (0, 4), False, (0, 0)),
    ((0, 4), (0, 4), True, (0, )),
    ((2, 0, 4), (2, 5, 4), False, (2, 0, 5)),
])
def test_empty_inputs(shape1, shape2, is_aligned, expected):
    got = bbox_overlaps(jt.zeros(shape1), jt.zeros(shape2), is_aligned=is_aligned)
    assert tuple(got.shape) == expected
    ref = mmdet_bbox_overlaps(torch.zeros(shape1), torch.zeros(shape2), is_aligned=is_aligned)
    assert tuple(ref.shape) == expected


def test_one_box():
    b1 = np.array([[0, 0, 10, 10]], np.float32)
    b2 = np.array([[5, 5, 15, 15]], np.float32)
    got = bbox_overlaps(jt.array(b1), jt.array(b2)).numpy()
    np.testing.assert_allclose(got, [[25 / 175]], rtol=1e-6)


def test_bad_arguments_fail_loudly():
    boxes = jt.zeros((3, 4))
    with pytest.raises(ValueError, match='unsupported mode'):
        bbox_overlaps(boxes, boxes, mode='diou')
    with pytest.raises(ValueError, match='is_aligned'):
        bbox_overlaps(boxes, jt.zeros((2, 4)), is_aligned=True)
    with pytest.raises(ValueError, match='batch dimensions'):
        bbox_overlaps(jt.zeros((2, 3, 4)), jt.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match='last dimension'):
        bbox_overlaps(jt.zeros((3, 5)), boxes)
