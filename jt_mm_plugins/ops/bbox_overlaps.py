"""Pairwise and aligned overlaps (IoU, IoF, GIoU) between boxes, in Jittor.

The Jittor twin of mmdet's ``mmdet.structures.bbox.bbox_overlaps``: same modes, same ``eps``
clamp of the union and of the enclosing area, same shapes (batch dimensions included) and the same
empty results. It is written with Jittor element-wise ops only, so it runs on CPU and CUDA and is
differentiable (GIoU losses back-propagate through it).
"""
from typing import Tuple

from jt_mm_plugins.runtime import jt

OVERLAP_MODES = ('iou', 'iof', 'giou')


def _check_inputs(bboxes1: jt.Var, bboxes2: jt.Var, mode: str,
                  is_aligned: bool) -> Tuple[tuple, int, int]:
    """Validate the arguments like mmdet does, with messages naming the culprit.

    Returns:
        tuple: ``(batch_shape, rows, cols)``.
    """
    if mode not in OVERLAP_MODES:
        raise ValueError(f'bbox_overlaps: unsupported mode {mode!r}; expected one of '
                         f'{OVERLAP_MODES}')
    for name, boxes in (('bboxes1', bboxes1), ('bboxes2', bboxes2)):
        if not isinstance(boxes, jt.Var):
            raise TypeError(f'bbox_overlaps: {name} must be a jittor Var, got {type(boxes)}')
        if boxes.ndim < 2:
            raise ValueError(f'bbox_overlaps: {name} must have shape (..., n, 4), got '
                             f'{tuple(boxes.shape)}')
        if boxes.shape[-1] != 4 and boxes.shape[0] != 0:
            raise ValueError(f'bbox_overlaps: the last dimension of {name} must be 4 '
                             f'(x1, y1, x2, y2), got shape {tuple(boxes.shape)}')
    batch_shape = tuple(bboxes1.shape[:-2])
    if batch_shape != tuple(bboxes2.shape[:-2]):
        raise ValueError('bbox_overlaps: bboxes1 and bboxes2 must share their batch dimensions, '
                         f'got {tuple(bboxes1.shape)} and {tuple(bboxes2.shape)}')
    rows, cols = bboxes1.shape[-2], bboxes2.shape[-2]
    if is_aligned and rows != cols:
        raise ValueError(f'bbox_overlaps: is_aligned=True needs as many boxes in bboxes1 ({rows}) '
                         f'as in bboxes2 ({cols})')
    return batch_shape, rows, cols


def _areas(bboxes: jt.Var) -> jt.Var:
    return (bboxes[..., 2] - bboxes[..., 0]) * (bboxes[..., 3] - bboxes[..., 1])


def bbox_overlaps(bboxes1: jt.Var,
                  bboxes2: jt.Var,
                  mode: str = 'iou',
                  is_aligned: bool = False,
                  eps: float = 1e-6) -> jt.Var:
    """Calculate the overlaps between two sets of boxes.

    Matches ``mmdet.structures.bbox.bbox_overlaps``: the union (``iou``/``giou``) or the area of
    ``bboxes1`` (``iof``) and the enclosing area (``giou``) are clamped below by ``eps``; areas are
    ``(x2 - x1) * (y2 - y1)`` without a ``+1``.

    Args:
        bboxes1 (jt.Var): Boxes of shape (B, m, 4) in <x1, y1, x2, y2> format, where B is any
            number of batch dimensions (possibly none), or empty.
        bboxes2 (jt.Var): Boxes of shape (B, n, 4) in the same format, or empty. With
            ``is_aligned=True``, m must equal n.
        mode (str): ``'iou'`` (intersection over union), ``'iof'`` (intersection over the area of
            ``bboxes1``) or ``'giou'`` (generalized IoU). Defaults to ``'iou'``.
        is_aligned (bool): Compute the overlap of each aligned pair instead of all pairs.
            Defaults to False.
        eps (float): Lower bound of the denominators. Defaults to 1e-6.

    Returns:
        jt.Var: Shape (B, m, n), or (B, m) when ``is_aligned`` is True.
    """
    batch_shape, rows, cols = _check_inputs(bboxes1, bboxes2, mode, is_aligned)
    if rows * cols == 0:
        shape = batch_shape + ((rows, ) if is_aligned else (rows, cols))
        return jt.zeros(shape, dtype=bboxes1.dtype)

    area1 = _areas(bboxes1)
    area2 = _areas(bboxes2)
    if is_aligned:
        lt = jt.maximum(bboxes1[..., :2], bboxes2[..., :2])  # [B, rows, 2]
        rb = jt.minimum(bboxes1[..., 2:], bboxes2[..., 2:])
        wh = (rb - lt).clamp(min_v=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = area1 + area2 - overlap if mode in ('iou', 'giou') else area1
        if mode == 'giou':
            enclosed_lt = jt.minimum(bboxes1[..., :2], bboxes2[..., :2])
            enclosed_rb = jt.maximum(bboxes1[..., 2:], bboxes2[..., 2:])
    else:
        boxes1 = bboxes1.unsqueeze(-2)  # [B, rows, 1, 4]
        boxes2 = bboxes2.unsqueeze(-3)  # [B, 1, cols, 4]
        lt = jt.maximum(boxes1[..., :2], boxes2[..., :2])  # [B, rows, cols, 2]
        rb = jt.minimum(boxes1[..., 2:], boxes2[..., 2:])
        wh = (rb - lt).clamp(min_v=0)
        overlap = wh[..., 0] * wh[..., 1]
        if mode in ('iou', 'giou'):
            union = area1.unsqueeze(-1) + area2.unsqueeze(-2) - overlap
        else:
            union = area1.unsqueeze(-1).broadcast(overlap.shape)
        if mode == 'giou':
            enclosed_lt = jt.minimum(boxes1[..., :2], boxes2[..., :2])
            enclosed_rb = jt.maximum(boxes1[..., 2:], boxes2[..., 2:])

    union = jt.maximum(union, eps)
    ious = overlap / union
    if mode in ('iou', 'iof'):
        return ious
    enclose_wh = (enclosed_rb - enclosed_lt).clamp(min_v=0)
    enclose_area = jt.maximum(enclose_wh[..., 0] * enclose_wh[..., 1], eps)
    return ious - (enclose_area - union) / enclose_area
