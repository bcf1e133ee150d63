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
* **selections** (:func:`record_selections`): sorts / top-k cuts of computed scores and mmcv NMS
  calls (``|IoU - threshold|``, score gaps) decide *which* items exist downstream; tests that
  compare such items first assert (:func:`assert_float32_decides`) that float32 decides all of
  them, with inputs chosen so that it holds.

Why 10x the measured error, not a fixed bound: the float32 error of a tensor grows with depth and
fan-in (~3e-6 of the largest value in a ResNet-18 here, 1e-7 at a sigmoid score); 10x the error
PyTorch's float32 run shows there is 5x what Jittor's (1.5-2x PyTorch's) needs, and a margin that
large is not crossed by another CPU's or thread count's rounding of the same sums.

Hooks: ``torch.nn.functional.relu`` and ``torch.nn.functional.max_pool2d`` are patched while a
recording runs. ``nn.ReLU`` and ``nn.MaxPool2d`` call them, and so do mmdet's functional uses
(``F.relu`` in RPNHead and FPN's extra convolutions). ``torch.relu``/``Tensor.relu_`` are not
hooked: none of the references here calls them. Exact zeros of an input that is already
non-negative (a ReLU's output) are left out of a ReLU's margin: they are exact in any precision.
"""
import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
FLOAT32_MARGIN_FACTOR = 10.0
FLOAT64_MARGIN = 1e-9
GRADIENT_MASKS = ('relu', 'max_pool2d')  # decisions that mask gradients (the others select items)


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
    top2 = windows.topk(2, dim=1).values  # (n*c, 2, L)
    gap = top2[:, 0] - top2[:, 1]
    if bool((x4 >= 0).all()):
        gap = gap[top2[:, 0] != 0]
    return float(gap.min()) if gap.numel() else float('inf')


@contextlib.contextmanager
def record_decisions(module: torch.nn.Module) -> Iterator[DecisionTrace]:
    """Record every ReLU / max-pool call (and each parameterised module's first call) of the
    forward passes run inside the block, in execution order."""
    trace = DecisionTrace([], {})
    stack: List[str] = []
    names = {m: n for n, m in module.named_modules()}
    # parameter names as ``module.named_parameters()`` gives them (a wrapper may rename them)
    param_names = {id(p): n for n, p in module.named_parameters()}
    originals = (F.relu, F.max_pool2d)

    def record(kind, x, margin):
        x = x.detach()
        trace.decisions.append(Decision(len(trace.decisions), kind, stack[-1] if stack else '',
                                        margin, float(x.abs().max()) if x.numel() else 0.0,
                                        x.double().clone()))

    def relu(input, inplace=False):
        if torch.is_tensor(input) and input.is_floating_point():
            record('relu', input, _relu_margin(input.detach()))
        return originals[0](input, inplace=inplace)

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
    F.relu, F.max_pool2d = relu, max_pool2d
    try:
        yield trace
    finally:
        F.relu, F.max_pool2d = originals
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


@contextlib.contextmanager
def record_selections() -> Iterator[DecisionTrace]:
    """Record the discrete choices made on computed values in the block: every sort / topk of a
    floating tensor (``Tensor.sort``, ``Tensor.topk``, ``torch.sort``, ``torch.topk``: their
    margin is the smallest gap between neighbours in sorted order, which also decides a top-k
    cut) and every mmcv NMS call (margin: the smallest ``|IoU - threshold|`` over all pairs of its
    boxes, or the smallest score gap between two boxes overlapping beyond the threshold if smaller:
    which boxes survive; its value is the IoU matrix), and with it an ``nms order`` entry (the
    smallest gap between any two of its scores: the order of the survivors and any top-k cut). A
    choice within float32 error of its boundary selects other proposals / another order on another
    machine; tests assert that none is."""
    trace = DecisionTrace([], {})

    def record(kind, value, margin, scale):
        value = torch.as_tensor(value).detach().double().clone()
        trace.decisions.append(Decision(len(trace.decisions), kind, '', margin, scale, value))

    def sorted_values(name, original):
        def wrapper(input, *args, **kwargs):
            if torch.is_tensor(input) and input.is_floating_point() and input.numel():
                dim = kwargs.get('dim', args[0] if name == 'sort' and args and
                                 isinstance(args[0], int) else -1)
                if name == 'topk':
                    dim = kwargs.get('dim', args[1] if len(args) > 1 else -1)
                record(name, input, _order_margin(input, dim),
                       float(input.detach().abs().max()))
            return original(input, *args, **kwargs)
        return wrapper

    patched = [(torch.Tensor, 'sort'), (torch.Tensor, 'topk'), (torch, 'sort'), (torch, 'topk')]
    originals = [getattr(owner, name) for owner, name in patched]
    nms_module = ext = None
    try:
        import importlib
        nms_module = importlib.import_module('mmcv.ops.nms')
        ext = nms_module.ext_module
    except ImportError:
        pass

    class _RecordingNMS:
        def __getattr__(self, name):
            return getattr(ext, name)

        @staticmethod
        def nms(boxes, scores, iou_threshold, offset=0, *args, **kwargs):
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
                # the order of what is kept (and any top-k cut of it): every score gap
                record('nms order', s64, _order_margin(scores), float(np.abs(s64).max()))
            return ext.nms(boxes, scores, iou_threshold, offset, *args, **kwargs)

    for (owner, name), original in zip(patched, originals):
        setattr(owner, name, sorted_values(name, original))
    if ext is not None:
        nms_module.ext_module = _RecordingNMS()
    try:
        yield trace
    finally:
        for (owner, name), original in zip(patched, originals):
            setattr(owner, name, original)
        if ext is not None:
            nms_module.ext_module = ext


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
                     float64_context: Callable[[], Any] = contextlib.nullcontext) -> MarginReport:
    """:func:`record_selections` around a float64 and a float32 run of the same computation: which
    sorts / top-k cuts / NMS suppressions float32 decides (``undecided`` must be empty for a test
    that compares the selected items or their order)."""
    with float64_context(), record_selections() as trace64:
        run64()
    with record_selections() as trace32:
        run32()
    return margin_report(trace64, trace32)


def all_decisions_report(module: torch.nn.Module, run: Callable[[torch.nn.Module, torch.dtype], Any],
                         float64_context: Optional[Callable[[], Any]] = None) -> MarginReport:
    """``run(copy, dtype)`` on a float32 and a float64 copy of ``module`` (the module itself is left
    untouched), recording every ReLU / max-pool decision and every sort / top-k / NMS selection;
    one report over all of them (ReLU/max-pool first, then selections)."""
    if float64_context is None:
        from .pairs import mmcv_nms_accepts_float64 as float64_context
    traces = {}
    for dtype, context in ((torch.float64, float64_context), (torch.float32, contextlib.nullcontext)):
        copy_ = copy.deepcopy(module).to(dtype)
        with context(), record_selections() as selections, record_decisions(copy_) as relus:
            run(copy_, dtype)
        for d in selections.decisions:
            d.index += len(relus.decisions)
        traces[dtype] = DecisionTrace(relus.decisions + selections.decisions, relus.first_call)
    return margin_report(traces[torch.float64], traces[torch.float32])


def assert_float32_decides(module: torch.nn.Module, run: Callable[[torch.nn.Module, torch.dtype], Any],
                           float64_context: Optional[Callable[[], Any]] = None) -> MarginReport:
    """Assert that float32 decides every decision of ``run`` (see :func:`all_decisions_report`):
    for tests that build their inputs so that it holds, and then compare everything."""
    report = all_decisions_report(module, run, float64_context)
    undecided = [f'{d.label} (margin {d.margin:.1e}, float32 error '
                 f'{report.errors32[d.index]:.1e})' for d in report.undecided]
    assert not undecided, f'decisions within float32 error of their boundary: {undecided}'
    return report


def well_defined_param_names(report: MarginReport, names: Sequence[str]) -> List[str]:
    return [n for n in names if report.param_grad_well_defined(n)]
