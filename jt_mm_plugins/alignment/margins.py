"""Which gradients float32 can decide: the margins of a network's discrete decisions.

A ReLU whose input lies within float32 rounding noise of zero, or a max-pool window whose two largest
values are that close, is decided by the order of operations: two correct float32 implementations
(or one, on another CPU or thread count) take different branches there, and every gradient computed
*upstream* of it (parameters of modules called before it, the input) moves by up to 1e-2. Outputs
do not move (both functions are continuous), and neither do the gradients of modules called after
the last such decision.

This module records those decisions on a float64 run of the reference and measures how far a float32
run of it is from that float64 run at each of them. The rule (used by the alignment tests,
:func:`jt_mm_plugins.alignment.compare_modules` and ``tools/float64_diagnosis.py``):

* **float32 margin**: a decision is *decided in float32* when its float64 margin (smallest
  ``|pre-activation|``, smallest gap between a window's two largest values) is at least
  ``FLOAT32_MARGIN_FACTOR`` (10) times the float32 error bound of the tensor it is taken on:
  ``max(max|x32 - x64|, eps32 * max|x64|)`` with ``x32`` the float32
  PyTorch reference's value of the same tensor. The measured error of PyTorch and of Jittor (1.5-2x
  PyTorch's, see the README) then stays far below the margin on any machine: no float32 run can
  flip it.
* a parameter's float32 gradient is **well-defined** when every ReLU / max-pool decision executed
  after its module's first call is decided in float32; the input gradient when every one is. The
  others are not compared in float32 (a float64 comparison covers them where the candidate runs in
  float64), and the count is reported.
* **float64 margin**: in a float64 run every decision must be farther than ``FLOAT64_MARGIN``
  (1e-9) times its tensor's scale from its boundary, where float64 rounding is ~1e-15 relative: a
  float64 candidate is then compared on every output and gradient (``FLOAT64_TOLERANCES`` in
  compare.py), on any machine.
* **selections** (:func:`record_selections`): sorts / top-k cuts of computed scores (the gap at
  the cut), mmcv NMS calls (``|IoU - threshold|``, score gaps of overlapping boxes, the
  survivors' order), mmdet's ``score_thr`` / ``min_bbox_size`` filters and MaxIoUAssigner
  thresholds decide *which* items exist downstream; tests that compare such items first assert
  (:func:`assert_float32_decides`, ``MarginReport.undecided_selections``) that float32 decides
  all of them, with inputs chosen so that it holds.
* **exact ties**: a max-pool window whose two largest values are exactly equal (e.g. in the
  constant padding of a smaller image) has margin 0: undecided, so the gradients upstream of it
  are not compared (which tied element gets the gradient is each implementation's choice). An
  exact-zero ReLU input of a signed tensor (e.g. BatchNorm's output in that padding) likewise.

Why 10x the measured error, not a fixed bound: the float32 error of a tensor grows with depth and
fan-in (~3e-6 of the largest value in a ResNet-18 here, 1e-7 at a sigmoid score); 10x the error
PyTorch's float32 run shows there is 5x what Jittor's (1.5-2x PyTorch's) needs, and a margin that
large is not crossed by another CPU's or thread count's rounding of the same sums.

Hooks: ``torch.nn.functional.relu``, ``leaky_relu`` (the same kink: its gradient switches
between 1 and the slope) and ``max_pool2d`` are patched while a recording runs. ``nn.ReLU``,
``nn.LeakyReLU`` and ``nn.MaxPool2d`` call them, and so do mmdet's functional uses
(``F.relu`` in RPNHead and FPN's extra convolutions). ``torch.relu``/``Tensor.relu_`` are not
hooked: none of the references here calls them. Exact zeros of an input that is already
non-negative (a ReLU's output) are left out of a ReLU's margin: they are exact in any precision.
"""
import contextlib
import copy
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
FLOAT32_MARGIN_FACTOR = 10.0
FLOAT64_MARGIN = 1e-9
GRADIENT_MASKS = ('relu', 'leaky_relu', 'max_pool2d')  # decisions that switch gradients (the
# others select items)


@dataclass
class Decision:
    """One call of a ReLU or a max pool, in execution order."""
    index: int
    kind: str  # 'relu' or 'max_pool2d'
    module: str  # the innermost module running it ('' for the root)
    margin: float  # min |x| (relu), min gap between a window's two largest values (max pool)
    scale: float  # max |x|
    value: torch.Tensor = field(repr=False)  # the input, detached (float64 for errors)

    @property
    def label(self) -> str:
        return f'{self.kind}#{self.index} in {self.module or "<root>"}'


@dataclass
class DecisionTrace:
    decisions: List[Decision]
    # parameter name -> number of decisions executed before its module's first call
    first_call: Dict[str, int]


def _relu_margin(x: torch.Tensor) -> float:
    """Smallest ``|x|``. On an input with no negative value (the output of an earlier ReLU, e.g.
    mmdet's ``F.relu`` after a ConvModule that already has one) exact zeros are left out: they are
    that ReLU's zeros, exact in any precision (its own margin is recorded), and both torch and the
    Jittor kernels give them a zero gradient (``y > 0`` masks)."""
    if not x.numel():
        return float('inf')
    if bool((x >= 0).all()):
        x = x[x != 0]
        return float(x.min()) if x.numel() else float('inf')
    return float(x.abs().min())


def _max_pool_margin(x: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False) -> float:
    """Smallest gap between the largest and second-largest value of a window.

    Windows whose maximum is exactly 0 on a non-negative input are left out: such an input comes
    from a ReLU, and the gradient a tie sends to a zero is stopped at that ReLU (whose own margin is
    recorded)."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    kernel = pair(kernel_size)
    if kernel == (1, 1):
        return float('inf')
    if ceil_mode:
        raise NotImplementedError('max_pool2d margins: ceil_mode=True is not supported')
    stride = pair(stride if stride not in (None, []) else kernel_size)
    padding, dilation = pair(padding), pair(dilation)
    batched = x.dim() == 4
    x4 = x if batched else x.unsqueeze(0)
    padded = F.pad(x4.double(), (padding[1], padding[1], padding[0], padding[0]),
                   value=float('-inf'))
    n, c = padded.shape[:2]
    windows = F.unfold(padded.reshape(n * c, 1, *padded.shape[2:]), kernel, dilation, 0, stride)
    # numpy: a Tensor.topk here would be recorded as a selection by record_selections
    top2 = np.sort(windows.numpy(), axis=1)[:, -2:]  # (n*c, 2, L): second largest, largest
    gap = top2[:, 1] - top2[:, 0]
    if bool((x4 >= 0).all()):
        gap = gap[top2[:, 1] != 0]
    return float(gap.min()) if gap.size else float('inf')


@contextlib.contextmanager
def record_decisions(module: torch.nn.Module) -> Iterator[DecisionTrace]:
    """Record every ReLU / max-pool call (and each parameterised module's first call) of the
    forward passes run inside the block, in execution order."""
    trace = DecisionTrace([], {})
    stack: List[str] = []
    names = {m: n for n, m in module.named_modules()}
    # parameter names as ``module.named_parameters()`` gives them (a wrapper may rename them)
    param_names = {id(p): n for n, p in module.named_parameters()}
    originals = (F.relu, F.max_pool2d, F.leaky_relu)

    def record(kind, x, margin):
        x = x.detach()
        trace.decisions.append(Decision(len(trace.decisions), kind, stack[-1] if stack else '',
                                        margin, float(x.abs().max()) if x.numel() else 0.0,
                                        x.double().clone()))

    def relu(input, inplace=False):
        if torch.is_tensor(input) and input.is_floating_point():
            record('relu', input, _relu_margin(input.detach()))
        return originals[0](input, inplace=inplace)

    def leaky_relu(input, negative_slope=0.01, inplace=False):
        # the same kink as a ReLU: the gradient is 1 or negative_slope by the sign of the input
        if torch.is_tensor(input) and input.is_floating_point():
            record('leaky_relu', input, _relu_margin(input.detach()))
        return originals[2](input, negative_slope, inplace)

    def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   return_indices=False):
        record('max_pool2d', input,
               _max_pool_margin(input.detach(), kernel_size, stride, padding, dilation, ceil_mode))
        return originals[1](input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                            return_indices=return_indices)

    def pre_hook(m, _):
        name = names.get(m, '')
        stack.append(name)
        for p_name, p in m.named_parameters(recurse=False):
            full = param_names.get(id(p), f'{name}.{p_name}' if name else p_name)
            trace.first_call.setdefault(full, len(trace.decisions))

    def post_hook(m, _, __):
        if stack:
            stack.pop()

    handles = []
    for m in module.modules():
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook, always_call=True))
    F.relu, F.max_pool2d, F.leaky_relu = relu, max_pool2d, leaky_relu
    try:
        yield trace
    finally:
        F.relu, F.max_pool2d, F.leaky_relu = originals
        for h in handles:
            h.remove()


def _order_margin(values: torch.Tensor, dim: int = -1) -> float:
    """Smallest gap between two values a sort along ``dim`` puts next to each other (numpy: no
    recursion into the patched sort)."""
    v = values.detach().double().cpu().numpy()
    if v.ndim == 0 or v.shape[dim] < 2:
        return float('inf')
    with np.errstate(invalid='ignore'):
        gaps = np.diff(np.sort(v, axis=dim), axis=dim)
    gaps = gaps[np.isfinite(gaps)]  # equal infinities (masked entries) are exact in any precision
    return float(gaps.min()) if gaps.size else float('inf')


def _iou_matrix(boxes: np.ndarray, offset: int = 0) -> np.ndarray:
    area = (boxes[:, 2] - boxes[:, 0] + offset) * (boxes[:, 3] - boxes[:, 1] + offset)
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = np.clip(rb - lt + offset, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-12)


def _cut_margin(values: torch.Tensor, k: int, dim: int = -1, largest: bool = True) -> float:
    """Gap between the k-th and the (k+1)-th value along ``dim`` (largest or smallest first): which
    items a top-k cut keeps. No cut (``k >= n``): infinite."""
    v = values.detach().double().cpu().numpy()
    if v.ndim == 0 or not 0 < k < v.shape[dim]:
        return float('inf')
    v = np.sort(v, axis=dim)
    if largest:
        v = np.flip(v, axis=dim)
    inside, outside = np.take(v, k - 1, axis=dim), np.take(v, k, axis=dim)
    with np.errstate(invalid='ignore'):
        gaps = np.abs(inside - outside)
    gaps = gaps[np.isfinite(gaps)]  # equal infinities (masked entries) are exact in any precision
    return float(gaps.min()) if gaps.size else float('inf')


def max_iou_assigner_margin(assigner, overlaps: torch.Tensor) -> float:
    """Margin of ``MaxIoUAssigner.assign_wrt_overlaps`` on ``overlaps`` (gts x boxes): each box's
    best IoU against ``pos_iou_thr`` and ``neg_iou_thr`` (a float or a range); for a box that
    becomes positive (best >= ``pos_iou_thr``), the gap between its best and second-best gt (which
    gt it takes); with ``match_low_quality``, each gt's best IoU against ``min_pos_iou`` and, for a
    gt that takes its best boxes, the gap between its best and second-best box (which boxes it
    takes: exact ties count as 0). ``ignore_iof_thr`` (decided in ``assign``) is not covered: a
    test with ignore regions asserts their margins itself."""
    o = overlaps.detach().double().cpu().numpy()
    if not o.size:
        return float('inf')
    best = o.max(0)
    neg = assigner.neg_iou_thr
    thresholds = [assigner.pos_iou_thr] + (list(neg) if isinstance(neg, tuple) else [neg])
    margin = min(float(np.abs(best - t).min()) for t in thresholds)
    if len(o) > 1:
        top2 = -np.sort(-o, axis=0)[:2]
        positive = best >= assigner.pos_iou_thr
        if positive.any():
            margin = min(margin, float((top2[0] - top2[1])[positive].min()))
    if assigner.match_low_quality:
        gt_best = o.max(1)
        margin = min(margin, float(np.abs(gt_best - assigner.min_pos_iou).min()))
        taking = gt_best >= assigner.min_pos_iou
        if taking.any() and o.shape[1] > 1:
            top2 = -np.sort(-o[taking], axis=1)[:, :2]
            margin = min(margin, float((top2[:, 0] - top2[:, 1]).min()))
    return margin


def _clip_margin(boxes: torch.Tensor, max_shape) -> float:
    """Margin of clipping ``(x1, y1, x2, y2)`` boxes to ``[0, W] x [0, H]`` where it matters for a
    selection: a box clipped to zero width / height (both sides beyond one border: ``x1 >= W`` or
    ``x2 <= 0``) has the distance of its inner side from that border (it decides whether the box
    is exactly 0 wide, which ``min_bbox_size`` filters); a box clipped otherwise keeps a
    continuous size. No zero-sized box: infinite."""
    b = boxes.detach().double().reshape(-1, 4)
    margins = []
    for lo, hi, limit in ((b[:, 0], b[:, 2], max_shape[1]), (b[:, 1], b[:, 3], max_shape[0])):
        margins += [lo[lo >= limit] - limit, -hi[hi <= 0]]
    gaps = torch.cat(margins)
    return float(gaps.min()) if gaps.numel() else float('inf')


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@contextlib.contextmanager
def record_selections(sort_cut: Optional[int] = None) -> Iterator[DecisionTrace]:
    """Record the discrete choices made on computed values in the block (a choice within float32
    error of its boundary selects other items or another order on another machine; tests assert
    that none is):

    * ``topk`` (``Tensor.topk``, ``torch.topk``) of a floating tensor: the gap at the cut (k-th vs
      (k+1)-th value, e.g. the top-1 class of mmdet's ``accuracy``);
    * ``sort``: every gap between neighbours in sorted order, or with ``sort_cut=k`` the gap at the
      cut only (for flows whose every sort is a top-k cut whose kept order is decided again
      downstream, as mmdet's ``RPNHead`` ``nms_pre`` ranking: its kept proposals go to NMS,
      recorded below);
    * every mmcv NMS call (``nms``: the smallest ``|IoU - threshold|`` over all pairs of its boxes,
      or the smallest score gap between two boxes overlapping beyond the threshold if smaller:
      which boxes survive; its value is the IoU matrix), with an ``nms order`` entry: the
      smallest gap between two survivors' scores (their order, and any ``max_per_img`` /
      ``max_num`` cut of them);
    * ``score_thr`` of mmdet's two-stage ``BBoxHead`` (its ``multiclass_nms`` call): the smallest
      ``|score - score_thr|`` over the class scores;
    * ``min_bbox_size`` of mmdet's ``RPNHead``: the smallest ``|w - min_bbox_size|``,
      ``|h - min_bbox_size|`` over the boxes it filters, but exact zeros: boxes clipped to zero
      size, whose decision is the clip's;
    * ``clip``: mmdet's ``delta2bbox`` clipping to the image (:func:`_clip_margin`);
    * ``assigner``: ``MaxIoUAssigner.assign_wrt_overlaps`` (:func:`max_iou_assigner_margin`).
    """
    trace = DecisionTrace([], {})

    def record(kind, value, margin, scale):
        value = torch.as_tensor(value).detach().double().clone()
        trace.decisions.append(Decision(len(trace.decisions), kind, '', margin, scale, value))

    def sorted_values(name, original):
        def wrapper(input, *args, **kwargs):
            if torch.is_tensor(input) and input.is_floating_point() and input.numel():
                scale = float(input.detach().abs().max())
                if name == 'topk':
                    k = kwargs.get('k', args[0] if args else None)
                    dim = kwargs.get('dim', args[1] if len(args) > 1 else -1)
                    largest = kwargs.get('largest', args[2] if len(args) > 2 else True)
                    record(name, input, _cut_margin(input, int(k), dim, largest), scale)
                else:
                    dim = kwargs.get('dim', args[0] if args and isinstance(args[0], int) else -1)
                    descending = kwargs.get('descending', args[1] if len(args) > 1 else False)
                    margin = _order_margin(input, dim) if sort_cut is None else \
                        _cut_margin(input, sort_cut, dim, bool(descending))
                    record(name, input, margin, scale)
            return original(input, *args, **kwargs)
        return wrapper

    patched = [(torch.Tensor, 'sort'), (torch.Tensor, 'topk'), (torch, 'sort'), (torch, 'topk')]
    nms_module = _optional_module('mmcv.ops.nms')
    ext = nms_module.ext_module if nms_module is not None else None

    class _RecordingNMS:
        def __getattr__(self, name):
            return getattr(ext, name)

        @staticmethod
        def nms(boxes, scores, iou_threshold, offset=0, *args, **kwargs):
            keep = ext.nms(boxes, scores, iou_threshold, offset, *args, **kwargs)
            if boxes.numel():
                ious = _iou_matrix(boxes.detach().double().cpu().numpy(), int(offset))
                off_diagonal = ~np.eye(len(ious), dtype=bool)
                margin = float(np.abs(ious[off_diagonal] - iou_threshold).min()) \
                    if off_diagonal.any() else float('inf')
                # which of two boxes overlapping beyond the threshold survives: their score order
                s64 = scores.detach().double().cpu().numpy()
                overlapping = off_diagonal & (ious > iou_threshold)
                if overlapping.any():
                    gaps = np.abs(s64[:, None] - s64[None, :])[overlapping]
                    margin = min(margin, float(gaps.min()))
                record('nms', ious, margin, 1.0)
                # the survivors' order (and any top-k cut of them)
                record('nms order', s64, _order_margin(torch.from_numpy(s64[keep.cpu().numpy()])),
                       float(np.abs(s64).max()))
            return keep

    # mmdet's post-processing decisions, hooked where the two-stage heads call them
    bbox_head_module = _optional_module('mmdet.models.roi_heads.bbox_heads.bbox_head')
    rpn_module = _optional_module('mmdet.models.dense_heads.rpn_head')
    assigner_module = _optional_module('mmdet.models.task_modules.assigners.max_iou_assigner')
    coder_module = _optional_module('mmdet.models.task_modules.coders.delta_xywh_bbox_coder')
    rpn_cfgs: List[Any] = []

    def multiclass_nms(multi_bboxes, multi_scores, score_thr, *args, **kwargs):
        scores = multi_scores[:, :-1]  # the last column is the background
        if scores.numel():
            record('score_thr', scores, float((scores.detach().double() - score_thr).abs().min()),
                   float(scores.detach().abs().max()))
        return originals['multiclass_nms'](multi_bboxes, multi_scores, score_thr, *args, **kwargs)

    def rpn_post_process(self, results, cfg, *args, **kwargs):
        rpn_cfgs.append(cfg)
        try:
            return originals['_bbox_post_process'](self, results, cfg, *args, **kwargs)
        finally:
            rpn_cfgs.pop()

    def get_box_wh(boxes):
        w, h = originals['get_box_wh'](boxes)
        if rpn_cfgs and w.numel():
            wh = torch.cat([w.reshape(-1), h.reshape(-1)]).detach()
            size = rpn_cfgs[-1].get('min_bbox_size', -1)
            sized = wh[wh != 0].double()  # exact zeros: clipped to zero size ('clip' below)
            record('min_bbox_size', wh, float((sized - size).abs().min()) if sized.numel()
                   else float('inf'), float(wh.abs().max()))
        return w, h

    def delta2bbox(rois, deltas, *args, **kwargs):
        boxes = originals['delta2bbox'](rois, deltas, *args, **kwargs)
        bound = inspect.signature(originals['delta2bbox']).bind(rois, deltas, *args, **kwargs)
        bound.apply_defaults()
        shape = bound.arguments['max_shape']
        if bound.arguments['clip_border'] and shape is not None and boxes.numel():
            if torch.is_tensor(shape) or not all(isinstance(v, (int, float)) for v in shape):
                raise NotImplementedError('record_selections: clipping to per-image shapes')
            bound.arguments['clip_border'] = False
            raw = originals['delta2bbox'](*bound.args, **bound.kwargs).detach()
            record('clip', raw, _clip_margin(raw, shape), float(raw.abs().max()))
        return boxes

    def assign_wrt_overlaps(self, overlaps, *args, **kwargs):
        record('assigner', overlaps, max_iou_assigner_margin(self, overlaps), 1.0)
        return originals['assign_wrt_overlaps'](self, overlaps, *args, **kwargs)

    hooks = [(owner, name, wrapper) for owner, name, wrapper in [
        (bbox_head_module, 'multiclass_nms', multiclass_nms),
        (rpn_module and rpn_module.RPNHead, '_bbox_post_process', rpn_post_process),
        (rpn_module, 'get_box_wh', get_box_wh),
        (coder_module, 'delta2bbox', delta2bbox),
        (assigner_module and assigner_module.MaxIoUAssigner, 'assign_wrt_overlaps',
         assign_wrt_overlaps)] if owner is not None]
    hooks += [(owner, name, sorted_values(name, getattr(owner, name))) for owner, name in patched]
    if ext is not None:
        hooks.append((nms_module, 'ext_module', _RecordingNMS()))
    originals = {name: getattr(owner, name) for owner, name, _ in hooks}
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in hooks]
    for owner, name, wrapper in hooks:
        setattr(owner, name, wrapper)
    try:
        yield trace
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def trace_decisions(module: torch.nn.Module, run: Callable[[], Any]) -> DecisionTrace:
    """``run()`` (a forward, or forward and backward, of ``module``) under :func:`record_decisions`."""
    with record_decisions(module) as trace:
        run()
    return trace


@dataclass
class MarginReport:
    """What float32 can decide in one reference run (see the module docstring)."""
    trace64: DecisionTrace
    errors32: List[float]  # per decision: max|x32 - x64| (inf where not comparable)
    decided: List[bool]  # per decision: decided in float32

    @property
    def undecided(self) -> List[Decision]:
        return [d for d, ok in zip(self.trace64.decisions, self.decided) if not ok]

    @property
    def undecided_selections(self) -> List[Decision]:
        """Undecided choices of items (sorts, cuts, NMS, thresholds, assignments): a test that
        compares the chosen items (or anything computed from them) needs this empty."""
        return [d for d in self.undecided if d.kind not in GRADIENT_MASKS]

    def last_undecided(self) -> int:
        """The last undecided gradient mask (ReLU / max pool; selections are judged apart)."""
        return max((d.index for d in self.undecided if d.kind in GRADIENT_MASKS), default=-1)

    def input_grad_well_defined(self) -> bool:
        return self.last_undecided() < 0

    def param_grad_well_defined(self, name: str) -> bool:
        """No first call recorded (a parameter used outside its module's forward): conservatively
        as early as the first decision."""
        return self.trace64.first_call.get(name, 0) > self.last_undecided()

    def float64_violations(self, margin: float = FLOAT64_MARGIN) -> List[Decision]:
        """Decisions of the float64 run closer to their boundary than ``margin * scale``."""
        return [d for d in self.trace64.decisions if d.margin < margin * max(d.scale, 1e-30)]

    def summary(self) -> str:
        n = len(self.trace64.decisions)
        worst = min(self.trace64.decisions, key=lambda d: d.margin / max(d.scale, 1e-30),
                    default=None)
        text = (f'{n} decisions (ReLU, max pool, sort, NMS), '
                f'{n - len(self.undecided)} decided in float32')
        if worst is not None:
            text += (f'; smallest float64 margin {worst.margin:.1e} (scale {worst.scale:.1e}, '
                     f'{worst.label})')
        return text


def float32_bound(error32: float, scale: float) -> float:
    """The margin a decision needs to be decided in float32 (see the module docstring)."""
    return FLOAT32_MARGIN_FACTOR * max(error32, FLOAT32_EPS * scale)


def margin_report(trace64: DecisionTrace, trace32: DecisionTrace) -> MarginReport:
    """Compare a float64 and a float32 trace of the same computation, decision by decision."""
    errors, decided = [], []
    for i, d in enumerate(trace64.decisions):
        other: Optional[Decision] = trace32.decisions[i] if i < len(trace32.decisions) else None
        if other is None or other.kind != d.kind or other.value.shape != d.value.shape:
            error = float('inf')  # the float32 run took another path here (e.g. other proposals)
        else:
            error = float((other.value - d.value).abs().max()) if d.value.numel() else 0.0
        errors.append(error)
        decided.append(d.margin >= float32_bound(error, d.scale))
    if len(trace32.decisions) != len(trace64.decisions):
        decided = [ok and i < len(trace32.decisions) for i, ok in enumerate(decided)]
    return MarginReport(trace64, errors, decided)


def measure_margins(reference32: torch.nn.Module, reference64: torch.nn.Module,
                    run32: Callable[[], Any], run64: Callable[[], Any]) -> MarginReport:
    """Trace ``run64()`` on the float64 reference and ``run32()`` on the float32 one, and report
    which decisions float32 decides."""
    trace64 = trace_decisions(reference64, run64)
    trace32 = trace_decisions(reference32, run32)
    return margin_report(trace64, trace32)


def selection_report(run32: Callable[[], Any], run64: Callable[[], Any],
                     float64_context: Callable[[], Any] = contextlib.nullcontext,
                     sort_cut: Optional[int] = None) -> MarginReport:
    """:func:`record_selections` around a float64 and a float32 run of the same computation: which
    sorts / top-k cuts / NMS suppressions float32 decides (``undecided`` must be empty for a test
    that compares the selected items or their order)."""
    with float64_context(), record_selections(sort_cut) as trace64:
        run64()
    with record_selections(sort_cut) as trace32:
        run32()
    return margin_report(trace64, trace32)


def all_decisions_report(module: torch.nn.Module, run: Callable[[torch.nn.Module, torch.dtype], Any],
                         float64_context: Optional[Callable[[], Any]] = None,
                         sort_cut: Optional[int] = None) -> MarginReport:
    """``run(copy, dtype)`` on a float32 and a float64 copy of ``module`` (the module itself is left
    untouched), recording every ReLU / max-pool decision and every sort / top-k / NMS selection;
    one report over all of them (ReLU/max-pool first, then selections; ``sort_cut``: see
    :func:`record_selections`)."""
    if float64_context is None:
        from .pairs import mmcv_nms_accepts_float64 as float64_context
    traces = {}
    for dtype, context in ((torch.float64, float64_context), (torch.float32, contextlib.nullcontext)):
        copy_ = copy.deepcopy(module).to(dtype)
        with context(), record_selections(sort_cut) as selections, record_decisions(copy_) as relus:
            run(copy_, dtype)
        for d in selections.decisions:
            d.index += len(relus.decisions)
        traces[dtype] = DecisionTrace(relus.decisions + selections.decisions, relus.first_call)
    return margin_report(traces[torch.float64], traces[torch.float32])


def assert_float32_decides(module: torch.nn.Module, run: Callable[[torch.nn.Module, torch.dtype], Any],
                           float64_context: Optional[Callable[[], Any]] = None,
                           sort_cut: Optional[int] = None) -> MarginReport:
    """Assert that float32 decides every decision of ``run`` (see :func:`all_decisions_report`):
    for tests that build their inputs so that it holds, and then compare everything."""
    report = all_decisions_report(module, run, float64_context, sort_cut)
    undecided = [f'{d.label} (margin {d.margin:.1e}, float32 error '
                 f'{report.errors32[d.index]:.1e})' for d in report.undecided]
    assert not undecided, f'decisions within float32 error of their boundary: {undecided}'
    return report


def well_defined_param_names(report: MarginReport, names: Sequence[str]) -> List[str]:
    return [n for n in names if report.param_grad_well_defined(n)]
