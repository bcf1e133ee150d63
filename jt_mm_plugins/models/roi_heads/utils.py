"""Helpers shared by the Jittor RoI heads: config type names, RoI packing, multi-class NMS,
accuracy.

Jittor twins of ``mmdet.structures.bbox.bbox2roi``, ``mmdet.models.layers.multiclass_nms``,
``mmdet.models.losses.accuracy`` and ``mmdet.models.utils.empty_instances`` (bbox part), working on
Jittor Vars and on the plain-dict results of the Jittor-native interface.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.bridge import build_jittor_module
from jt_mm_plugins.ops.nms import batched_nms
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

def build_jittor_child(cfg: Any, owner: str, role: str) -> 'jt.nn.Module':
    """Build a nested Jittor module from an mmdet-style config, accepting mmdet's type names.

    Args:
        cfg (dict | ConfigDict): Config with a ``type`` key (mmdet's name or the Jittor name).
        owner (str): Name of the parent class, for error messages.
        role (str): Name of the child (``'bbox_head'`` ...), for error messages.

    Returns:
        jt.nn.Module: The built Jittor module.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{owner}: {role} must be a config dict with a "type" key, got {cfg!r}')
    try:
        return build_jittor_module(cfg)
    except KeyError as err:
        raise KeyError(f'{owner}: cannot build {role}: {err.args[0]}') from None


_MISSING = object()


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` for a dict or ConfigDict (or an object's attribute), else ``default``."""
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def cfg_require(cfg: Any, key: str, owner: str) -> Any:
    """``cfg[key]``; a missing key raises a ``KeyError`` that names ``owner`` and the key."""
    value = cfg_get(cfg, key, _MISSING)
    if value is _MISSING:
        shown = dict(cfg) if isinstance(cfg, dict) else cfg
        raise KeyError(f'{owner}: the config has no {key!r} key (got {shown!r})')
    return value


def take_rows(values: jt.Var, inds: np.ndarray) -> jt.Var:
    """``values[inds]`` along the first axis for host indices; an empty index gives an empty Var.

    Args:
        values (jt.Var): Shape (n, ...).
        inds (np.ndarray): Integer indices into the first axis.

    Returns:
        jt.Var: Shape (len(inds), ...), same dtype as ``values``.
    """
    inds = np.asarray(inds).reshape(-1)
    if len(inds) == 0:
        return jt.zeros((0, ) + tuple(values.shape[1:]), dtype=values.dtype)
    return values[jt.array(inds.astype(np.int32))]


def concat_rows(parts: Sequence[jt.Var], row_shape: Tuple[int, ...], dtype: str) -> jt.Var:
    """Concatenate along the first axis, skipping empty parts; all-empty gives an empty Var."""
    parts = [p for p in parts if p.shape[0] > 0]
    if not parts:
        return jt.zeros((0, ) + tuple(row_shape), dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    return jt.concat(parts, dim=0)


def bbox2roi(bbox_list: List[jt.Var]) -> jt.Var:
    """Convert per-image boxes into RoIs ``(batch_index, x1, y1, x2, y2)``, as mmdet's ``bbox2roi``.

    Args:
        bbox_list (list[jt.Var]): Boxes of each image of the batch, each of shape (n_i, 4).

    Returns:
        jt.Var: RoIs of shape (sum n_i, 5), float32 unless the boxes are float64.
    """
    if len(bbox_list) == 0:
        raise InputError('bbox2roi: got an empty list of images')
    dtype = str(bbox_list[0].dtype)
    dtype = dtype if dtype in ('float32', 'float64') else 'float32'
    rois = []
    for img_id, bboxes in enumerate(bbox_list):
        if bboxes.ndim != 2 or bboxes.shape[1] != 4:
            raise InputError(f'bbox2roi: the boxes of image {img_id} must be (n, 4), got '
                             f'{tuple(bboxes.shape)}')
        if bboxes.shape[0] == 0:
            continue
        img_inds = jt.full((bboxes.shape[0], 1), float(img_id), dtype=dtype)
        rois.append(jt.concat([img_inds, bboxes.astype(dtype)], dim=1))
    return concat_rows(rois, (5, ), dtype)


def split_rows(values: Optional[jt.Var], sizes: Sequence[int]) -> List[Optional[jt.Var]]:
    """Split along the first axis into consecutive pieces of ``sizes`` rows (``Tensor.split``)."""
    if values is None:
        return [None] * len(sizes)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(values[start:start + size] if size > 0 else jt.zeros(
            (0, ) + tuple(values.shape[1:]), dtype=values.dtype))
        start += size
    return pieces


def empty_bbox_results(num_classes: int, score_per_cls: bool = False,
                       dtype: str = 'float32') -> Dict[str, jt.Var]:
    """Results of an image without RoIs, as mmdet's ``empty_instances(task_type='bbox')``.

    Args:
        num_classes (int): Number of foreground classes.
        score_per_cls (bool): Whether ``scores`` has a column per class plus background (raw
            results without NMS). Defaults to False.
        dtype (str): Float dtype of boxes and scores. Defaults to 'float32'.

    Returns:
        dict: ``bboxes`` (0, 4), ``scores`` (0,) or (0, num_classes + 1), ``labels`` (0,) int64.
    """
    score_shape = (0, num_classes + 1) if score_per_cls else (0, )
    return dict(
        bboxes=jt.zeros((0, 4), dtype=dtype),
        scores=jt.zeros(score_shape, dtype=dtype),
        labels=jt.zeros((0, ), dtype='int64'))


def multiclass_nms(multi_bboxes: jt.Var,
                   multi_scores: jt.Var,
                   score_thr: float,
                   nms_cfg: Optional[dict],
                   max_num: int = -1,
                   score_factors: Optional[jt.Var] = None,
                   return_inds: bool = False,
                   box_dim: int = 4) -> Union[Tuple[jt.Var, jt.Var, jt.Var], Tuple[jt.Var, jt.Var]]:
    """NMS for multi-class boxes, as mmdet's ``multiclass_nms`` (with mmcv's ``batched_nms``).

    Args:
        multi_bboxes (jt.Var): Shape (n, num_classes * 4) (class-specific) or (n, 4).
        multi_scores (jt.Var): Shape (n, num_classes + 1); the last column (background) is ignored.
        score_thr (float): Boxes with a score not above this are dropped before NMS.
        nms_cfg (dict | None): Arguments of :func:`jt_mm_plugins.ops.nms.batched_nms`, e.g.
            ``dict(type='nms', iou_threshold=0.5)``.
        max_num (int): Keep at most this many boxes after NMS when positive. Defaults to -1.
        score_factors (jt.Var, optional): Factors (n,) multiplied to the scores after thresholding.
            Defaults to None.
        return_inds (bool): Whether to also return the indices of the kept boxes in the flattened
            (n * num_classes) candidates. Defaults to False.
        box_dim (int): Box dimension; only 4. Defaults to 4.

    Returns:
        tuple: ``dets`` (k, 5) rows (x1, y1, x2, y2, score), ``labels`` (k,) int64 (0-based), and
        with ``return_inds`` the indices (k,) int64.
    """
    if box_dim != 4:
        raise NotImplementedError(f'multiclass_nms (Jittor): only box_dim=4 is supported, got '
                                  f'{box_dim}')
    num_boxes, num_classes = multi_scores.shape[0], multi_scores.shape[1] - 1
    if multi_bboxes.shape[0] != num_boxes:
        raise InputError(f'multiclass_nms: {multi_bboxes.shape[0]} box rows but {num_boxes} '
                         'score rows')
    if multi_bboxes.shape[1] > box_dim:
        if multi_bboxes.shape[1] != num_classes * box_dim:
            raise InputError(f'multiclass_nms: class-specific boxes must have num_classes * 4 = '
                             f'{num_classes * box_dim} columns, got {multi_bboxes.shape[1]}')
        bboxes = multi_bboxes.reshape(num_boxes, num_classes, box_dim)
    else:
        bboxes = multi_bboxes.reshape(num_boxes, 1, box_dim).broadcast(
            (num_boxes, num_classes, box_dim))
    scores = multi_scores[:, :-1]
    labels = jt.arange(num_classes).int64().reshape(1, -1).broadcast((num_boxes, num_classes))

    bboxes = bboxes.reshape(-1, box_dim)
    scores = scores.reshape(-1)
    labels = labels.reshape(-1)

    # remove low scoring boxes (decided on the host, as mmdet's nonzero)
    inds = np.nonzero(scores.numpy() > score_thr)[0] if num_boxes * num_classes > 0 else np.zeros(
        (0, ), np.int64)
    if score_factors is not None:
        score_factors = score_factors.reshape(-1, 1).broadcast((num_boxes, num_classes))
        scores = scores * score_factors.reshape(-1)

    if len(inds) == 0:
        dets = jt.zeros((0, box_dim + 1), dtype=multi_bboxes.dtype)
        empty_labels = jt.zeros((0, ), dtype='int64')
        if return_inds:
            return dets, empty_labels, jt.zeros((0, ), dtype='int64')
        return dets, empty_labels

    bboxes, scores, labels = take_rows(bboxes, inds), take_rows(scores, inds), take_rows(
        labels, inds)
    dets, keep = batched_nms(bboxes, scores, labels, None if nms_cfg is None else dict(nms_cfg))
    if max_num > 0:
        dets, keep = dets[:max_num], keep[:max_num]
    keep_np = keep.numpy().astype(np.int64)
    det_labels = take_rows(labels, keep_np)
    if return_inds:
        return dets, det_labels, jt.array(inds[keep_np].astype(np.int64)).int64()
    return dets, det_labels


def accuracy(pred: jt.Var,
             target: jt.Var,
             topk: Union[int, Tuple[int, ...]] = 1,
             thresh: Optional[float] = None) -> Union[jt.Var, List[jt.Var]]:
    """Top-k accuracy in percent, as mmdet's ``accuracy`` (no gradient).

    Args:
        pred (jt.Var): Scores (N, num_classes).
        target (jt.Var): Target class of each row (N,).
        topk (int | tuple[int]): The k (or ks) to evaluate. Defaults to 1.
        thresh (float, optional): Predictions scoring at or below this count as wrong.
            Defaults to None.

    Returns:
        jt.Var | list[jt.Var]: Accuracy (shape (1,)) per k; a single Var for an int ``topk``.
    """
    return_single = isinstance(topk, int)
    topk = (topk, ) if return_single else tuple(topk)
    maxk = max(topk)
    if pred.shape[0] == 0:
        accu = [jt.zeros((1, ), dtype='float32') for _ in topk]
        return accu[0] if return_single else accu
    if pred.ndim != 2 or target.ndim != 1 or pred.shape[0] != target.shape[0]:
        raise InputError(f'accuracy: pred must be (N, C) and target (N,), got '
                         f'{tuple(pred.shape)} and {tuple(target.shape)}')
    if maxk > pred.shape[1]:
        raise InputError(f'accuracy: maxk {maxk} exceeds pred dimension {pred.shape[1]}')
    pred = pred.detach()  # not stop_grad(): that would cut the caller's Var out of the graph
    if maxk == 1:
        pred_label, pred_value = jt.argmax(pred, dim=1)
        pred_label, pred_value = pred_label.reshape(-1, 1), pred_value.reshape(-1, 1)
    else:
        pred_value, pred_label = pred.topk(maxk, dim=1)
    correct = pred_label.int32() == target.int32().reshape(-1, 1)
    if thresh is not None:
        correct = jt.logical_and(correct, pred_value > thresh)
    res = []
    for k in topk:
        correct_k = correct[:, :k].float32().sum().reshape(1)
        res.append((correct_k * (100.0 / pred.shape[0])).detach())
    return res[0] if return_single else res
