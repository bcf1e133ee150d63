"""Helpers shared by the Jittor heads (dense and RoI): config access, row gathering, per-level
regrouping, score filtering, accuracy.

Jittor twins of ``mmdet.models.utils`` (``multi_apply``, ``images_to_levels``, ``unmap``,
``select_single_mlvl``, ``filter_scores_and_topk``), of
``mmdet.models.task_modules.prior_generators.anchor_inside_flags`` and of
``mmdet.models.losses.accuracy``, working on Jittor Vars and on the plain-dict results of the
Jittor-native interface. Decisions on data (thresholds, sorting, gathering) are taken on the host
with numpy, as the Jittor samplers and NMS do.
"""
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.bridge import build_jittor_module
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


def normal_init_convs(module: 'jt.nn.Module', std: float, mean: float = 0.) -> None:
    """mmengine's ``dict(type='Normal', layer='Conv2d', std=std)`` on a Jittor module: every
    convolution's weight from N(mean, std^2) (in ``modules()`` order), its bias 0.

    Args:
        module (jt.nn.Module): The module whose convolutions (itself included) are initialised.
        std (float): Standard deviation of the weights.
        mean (float): Mean of the weights. Defaults to 0.
    """
    for sub in module.modules():
        if isinstance(sub, jt.nn.Conv2d):
            sub.weight.assign(jt.init.gauss(tuple(sub.weight.shape), 'float32', mean, std))
            if sub.bias is not None:
                sub.bias.assign(jt.zeros(sub.bias.shape, dtype='float32'))


def multi_apply(func: Callable, *args, **kwargs) -> Tuple[list, ...]:
    """Apply ``func`` to each set of arguments and regroup its outputs, as mmdet's ``multi_apply``.

    ``multi_apply(f, [a0, a1], [b0, b1])`` calls ``f(a0, b0)`` and ``f(a1, b1)``; when each call
    returns ``(x_i, y_i)`` the result is ``([x0, x1], [y0, y1])``: one list per output, whatever
    the number of outputs.

    Args:
        func (Callable): The function; it must return a tuple (the same length every call).
        *args: Sequences of equal length, one argument of ``func`` each.
        **kwargs: Keyword arguments passed to every call.

    Returns:
        tuple[list]: One list per output of ``func``.
    """
    pfunc = partial(func, **kwargs) if kwargs else func
    return tuple(map(list, zip(*map(pfunc, *args))))


def images_to_levels(target: List[jt.Var], num_levels: Sequence[int]) -> List[jt.Var]:
    """Regroup per-image targets into per-level targets, as mmdet's ``images_to_levels``.

    ``[target_img0, target_img1] -> [target_level0, target_level1, ...]``.

    Args:
        target (list[jt.Var]): Per image, (num_priors, ...) with the levels concatenated.
        num_levels (Sequence[int]): Number of priors of each level.

    Returns:
        list[jt.Var]: Per level, (num_imgs, num_level_priors, ...).
    """
    stacked = jt.stack(target, dim=0)
    level_targets = []
    start = 0
    for n in num_levels:
        level_targets.append(stacked[:, start:start + n])
        start += n
    return level_targets


def unmap(data: np.ndarray, count: int, inds: np.ndarray, fill: Any = 0) -> np.ndarray:
    """Scatter ``data`` (one row per index of ``inds``) into an array of ``count`` rows filled
    with ``fill`` (mmdet's ``unmap`` with integer instead of boolean indices, on the host).

    Args:
        data (np.ndarray): Rows to scatter, (len(inds), ...).
        count (int): Number of rows of the result.
        inds (np.ndarray): Integer row indices into the result.
        fill (Any): Value of the other rows. Defaults to 0.

    Returns:
        np.ndarray: (count, ...) of ``data``'s dtype.
    """
    out = np.full((count, ) + data.shape[1:], fill, dtype=data.dtype)
    out[inds] = data
    return out


def anchor_inside_flags(flat_anchors: jt.Var,
                        valid_flags: jt.Var,
                        img_shape: Sequence[int],
                        allowed_border: int = 0) -> jt.Var:
    """Flag the anchors that are valid and lie inside the image (within ``allowed_border``), as
    mmdet's ``anchor_inside_flags``.

    Args:
        flat_anchors (jt.Var): Anchors (n, 4) in (x1, y1, x2, y2).
        valid_flags (jt.Var): Bool valid flags (n,) of the anchor generator.
        img_shape (Sequence[int]): (h, w, ...) of the image.
        allowed_border (int): Pixels an anchor may exceed the image by; negative disables the
            check. Defaults to 0.

    Returns:
        jt.Var: Bool flags (n,).
    """
    img_h, img_w = img_shape[:2]
    if allowed_border < 0:
        return valid_flags
    inside = jt.logical_and(flat_anchors[:, 0] >= -allowed_border,
                            flat_anchors[:, 1] >= -allowed_border)
    inside = jt.logical_and(inside, flat_anchors[:, 2] < img_w + allowed_border)
    inside = jt.logical_and(inside, flat_anchors[:, 3] < img_h + allowed_border)
    return jt.logical_and(valid_flags, inside)


def select_single_mlvl(mlvl_tensors: Sequence[jt.Var],
                       batch_id: int,
                       detach: bool = True) -> List[jt.Var]:
    """One image's slice of every level, as mmdet's ``select_single_mlvl``.

    Args:
        mlvl_tensors (Sequence[jt.Var]): Per level, (N, ...).
        batch_id (int): The image.
        detach (bool): Whether to cut the slices out of the graph. Defaults to True.

    Returns:
        list[jt.Var]: Per level, (...).
    """
    if not isinstance(mlvl_tensors, (list, tuple)):
        raise InputError(f'select_single_mlvl: expects a list/tuple of per-level Vars, got '
                         f'{type(mlvl_tensors).__name__}')
    return [t[batch_id].detach() if detach else t[batch_id] for t in mlvl_tensors]


def filter_scores_and_topk(
    scores: jt.Var,
    score_thr: float,
    topk: int,
    results: Optional[Union[Dict[str, jt.Var], List[jt.Var], jt.Var]] = None
) -> Tuple[jt.Var, jt.Var, np.ndarray, Any]:
    """Keep the scores above ``score_thr``, then the ``topk`` best, as mmdet's
    ``filter_scores_and_topk``.

    Candidates are the (prior, class) entries of ``scores`` in row-major order; they are ordered by
    descending score with ties in that order (a stable sort; mmdet's ``torch.sort`` is unstable,
    so mmdet's choice among equal scores at the ``topk`` cut depends on the machine). A ``topk``
    of 0 or less keeps every candidate (mmdet's ``min(topk, n)`` with ``topk=-1`` would drop the
    last one).

    Args:
        scores (jt.Var): Scores (num_priors, K).
        score_thr (float): Keep scores strictly above it.
        topk (int): Number of candidates to keep; <= 0 keeps all.
        results (dict | list | jt.Var, optional): Per-prior values (num_priors, ...) to filter
            alongside. Defaults to None.

    Returns:
        tuple: ``scores`` (k,), ``labels`` (k,) int64, ``keep_idxs`` (k,) host int64 prior
        indices, and ``results`` filtered (None when not given).
    """
    if scores.ndim != 2:
        raise InputError(f'filter_scores_and_topk: scores must be (num_priors, K), got '
                         f'{tuple(scores.shape)}')
    num_classes = int(scores.shape[1])
    flat = scores.numpy().reshape(-1)
    valid = np.nonzero(flat > score_thr)[0]
    # stable descending sort: equal scores keep their row-major order
    order = valid[np.argsort(-flat[valid], kind='stable')]
    if topk > 0:
        order = order[:topk]
    keep_idxs, labels = order // num_classes, order % num_classes
    kept_scores = take_rows(scores.reshape(-1), order)
    labels_var = jt.array(labels.astype(np.int64)).int64()

    filtered = None
    if results is not None:
        if isinstance(results, dict):
            filtered = {k: take_rows(v, keep_idxs) for k, v in results.items()}
        elif isinstance(results, (list, tuple)):
            filtered = [take_rows(v, keep_idxs) for v in results]
        elif isinstance(results, jt.Var):
            filtered = take_rows(results, keep_idxs)
        else:
            raise NotImplementedError(f'filter_scores_and_topk: results must be a dict, a list or '
                                      f'a Var, got {type(results).__name__}')
    return kept_scores, labels_var, keep_idxs.astype(np.int64), filtered


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
