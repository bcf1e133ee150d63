"""Compare a bridged Jittor module with its PyTorch reference: outputs and gradients.

Both modules must already hold identical weights. One forward and one backward (of a fixed random
weighting of every floating output) run on each, from the same inputs; the report lists the max
absolute and the relative difference of every output, of the input gradients, and of the parameter
gradients grouped by their first name component (``layer1``, ``lateral_convs``, ...).

Relative difference: ``max|a - b| / max(max|b|, 1e-6)`` with ``b`` the reference.

What float32 can decide (see margins.py): a float64 copy of the reference always runs too, with its
ReLU and max-pool decisions recorded. A float32 gradient computed upstream of a decision that lies
within float32 error of its boundary (a ReLU input ~1e-6 from zero) depends on the machine's
rounding, in the reference as much as in the candidate: it is *not compared* in float32 (its row
says so; the rows are counted). Outputs are always compared. With a float64 copy of the candidate
(``candidate64``), every output and gradient is also compared float64 against float64 with
:data:`FLOAT64_TOLERANCES`, after checking that no decision of the float64 run lies within
``FLOAT64_MARGIN`` (1e-9 of its scale) of its boundary: that comparison covers every gradient on
any machine.
"""
import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence

import torch

from .margins import FLOAT64_MARGIN, MarginReport, margin_report, record_decisions

Tolerances = Dict[str, float]  # keys: 'output_abs', 'grad_rel'
DEFAULT_TOLERANCES: Tolerances = {'output_abs': 1e-4, 'grad_rel': 1e-3}
# Float64 candidate vs float64 reference, 100x tighter than float32's. Measured: ~1e-11 on most
# pairs, up to 3e-7 relative on ill-conditioned train-mode ResNet gradients (BatchNorm over few
# values), where Jittor's float32 scalar constants (e.g. momentum 0.1, off by 1.5e-9) are amplified.
FLOAT64_TOLERANCES: Tolerances = {'output_abs': 1e-6, 'grad_rel': 1e-5}


@dataclass
class DiffRow:
    kind: str  # 'output', 'input grad' or 'param grad'
    name: str
    max_abs: float
    rel: float
    tolerance: float
    # With a float64 run of the reference (the referee): the candidate's and the float32
    # reference's differences from it (max abs for outputs, relative for gradients).
    candidate_vs_float64: Optional[float] = None
    reference_vs_float64: Optional[float] = None
    # False: a float32 gradient that float32 cannot decide (upstream of a ReLU / max-pool decision
    # within float32 error of its boundary, see margins.py): shown, not judged.
    compared: bool = True
    not_compared: int = 0  # group rows: how many of the group's tensors were not compared

    @property
    def ok(self) -> bool:
        """Within tolerance of the reference (float32 rows: the float32 reference; ``... f64``
        rows: the float64 reference); always true for a row that is not compared."""
        if not self.compared:
            return True
        value = self.max_abs if self.kind.startswith('output') or self.kind == 'margin f64' \
            else self.rel
        return value <= self.tolerance


def leaves(obj: Any) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in leaves(x)]
    if isinstance(obj, dict):
        return [t for k in sorted(obj) for t in leaves(obj[k])]
    return []


def leaf_names(obj: Any, prefix: str = 'out') -> List[str]:
    """Names of ``leaves(obj)``, in the same order: ``out[loss_cls]``, ``out[loss_rpn_cls][2]``."""
    if isinstance(obj, torch.Tensor):
        return [prefix]
    if isinstance(obj, (list, tuple)):
        return [n for i, x in enumerate(obj) for n in leaf_names(x, f'{prefix}[{i}]')]
    if isinstance(obj, dict):
        return [n for k in sorted(obj) for n in leaf_names(obj[k], f'{prefix}[{k}]')]
    return []


def fresh_inputs(inputs: Sequence[Any]) -> List[Any]:
    """Detached copies of the (possibly nested) positional inputs; floating ones require grad."""
    if isinstance(inputs, torch.Tensor):
        return inputs.detach().clone().requires_grad_(inputs.is_floating_point())
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(fresh_inputs(x) for x in inputs)
    return inputs


def _diff(a: torch.Tensor, b: torch.Tensor):
    a, b = a.detach().double(), b.detach().double()
    if a.numel() == 1 and b.numel() == 1:  # Jittor has no 0-d Vars: (1,) stands for ()
        a, b = a.reshape(()), b.reshape(())
    if a.shape != b.shape:
        raise ValueError(f'shape mismatch: {tuple(a.shape)} vs reference {tuple(b.shape)}')
    if a.numel() == 0:
        return 0.0, 0.0
    max_abs = (a - b).abs().max().item()
    return max_abs, max_abs / max(b.abs().max().item(), 1e-6)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max(max|b|, 1e-6)``, ``b`` the reference."""
    return _diff(a, b)[1]


def _group(name: str) -> str:
    return name.split('.', 1)[0]


def to_float64(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.double() if inputs.is_floating_point() else inputs
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(to_float64(x) for x in inputs)
    return inputs


def forward_backward(module: torch.nn.Module, inputs: Sequence[Any], weights: Optional[List],
                      grad_mask: Optional[List[bool]] = None, seed: int = 0):
    """One forward, then backward of ``sum_i <out_i, w_i>`` over the outputs that need a gradient.

    Returns (outputs, the inputs (with .grad), parameter gradients by name, weights). The weights
    are drawn from ``seed`` when not given, following the first module's outputs.
    """
    module.zero_grad(set_to_none=True)
    xs = fresh_inputs(inputs)
    outputs = leaves(module(*xs))
    if grad_mask is None:
        grad_mask = [o.is_floating_point() and o.requires_grad for o in outputs]
    if weights is None:
        generator = torch.Generator().manual_seed(seed)
        weights = [torch.randn(o.shape, generator=generator, dtype=torch.float32) if m else None
                   for o, m in zip(outputs, grad_mask)]
    terms = [(o * w.to(o.dtype)).sum() for o, w, m in zip(outputs, weights, grad_mask) if m]
    if terms:
        sum(terms).backward()
    grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    return outputs, xs, grads, weights, grad_mask


def compare_modules(candidate: torch.nn.Module, reference: torch.nn.Module,
                    inputs: Sequence[torch.Tensor], training: bool = False, seed: int = 0,
                    tolerances: Tolerances = DEFAULT_TOLERANCES, float64_referee: bool = False,
                    float64_context: Callable[[], ContextManager] = contextlib.nullcontext,
                    candidate64: Optional[torch.nn.Module] = None,
                    float64_tolerances: Tolerances = FLOAT64_TOLERANCES,
                    margins: Optional[List[MarginReport]] = None) -> List[DiffRow]:
    """Run both modules on ``inputs`` and return one :class:`DiffRow` per compared quantity.

    A float64 copy of the reference always runs (inside ``float64_context()``, for references with
    float32-only ops to patch): its ReLU / max-pool margins decide which float32 gradients are
    compared (see the module docstring). With ``float64_referee``, every float32 row also shows the
    candidate's and the float32 reference's differences from that float64 run. With
    ``candidate64`` (a float64 copy of the candidate, same weights), rows ``output f64``,
    ``input grad f64``, ``param grad f64`` compare it with the float64 reference on everything, and
    a ``margin f64`` row counts the float64 decisions closer than ``FLOAT64_MARGIN`` to their
    boundary (must be 0). ``margins``, when given a list, receives the :class:`MarginReport`.
    """
    candidate.train(training)
    reference.train(training)
    with record_decisions(reference) as trace32:
        ref_out, ref_inputs, ref_grads, weights, mask = forward_backward(reference, inputs, None,
                                                                          seed=seed)
    cand_out, cand_inputs, cand_grads, _, _ = forward_backward(candidate, inputs, weights, mask)
    if len(cand_out) != len(ref_out):
        raise ValueError(f'{len(cand_out)} outputs vs {len(ref_out)} from the reference')
    referee64 = copy.deepcopy(reference).double()
    referee64.train(training)  # (mmdet's ResNet.train returns None)
    with float64_context(), record_decisions(referee64) as trace64:
        referee = forward_backward(referee64, to_float64(inputs), weights, mask)
    report = margin_report(trace64, trace32)
    if margins is not None:
        margins.append(report)
    shown = referee if float64_referee else None

    def row(kind, name, cand, ref, tolerance, referee_value=None, compared=True):
        max_abs, rel = _diff(cand, ref)
        r = DiffRow(kind, name, max_abs, rel, tolerance, compared=compared)
        if referee_value is not None:
            pick = 0 if kind == 'output' else 1
            r.candidate_vs_float64 = _diff(cand, referee_value)[pick]
            r.reference_vs_float64 = _diff(ref, referee_value)[pick]
        return r

    rows = []
    for i, (c, r) in enumerate(zip(cand_out, ref_out)):
        rows.append(row('output', f'out[{i}] {tuple(r.shape)}', c, r, tolerances['output_abs'],
                        shown[0][i] if shown else None))
    if any(mask):
        for i, (c, r) in enumerate(zip(leaves(cand_inputs), leaves(ref_inputs))):
            if r.grad is not None:
                rows.append(row('input grad', f'input[{i}]', c.grad, r.grad,
                                tolerances['grad_rel'],
                                leaves(shown[1])[i].grad if shown else None,
                                compared=report.input_grad_well_defined()))
        rows += _param_rows(candidate, reference, cand_grads, ref_grads, tolerances, row,
                            shown[2] if shown else None, report.param_grad_well_defined)
    if candidate64 is not None:
        rows += _float64_rows(candidate64, reference, referee, weights, mask, inputs, training,
                              float64_tolerances, report)
    return rows


def _param_rows(candidate, reference, cand_grads, ref_grads, tolerances, row, referee_grads,
                well_defined, kind='param grad') -> List[DiffRow]:
    """One row per parameter group: its worst compared tensor (against the reference)."""
    ref_params = dict(reference.named_parameters())
    grouped: Dict[str, List] = {}
    for name, p in candidate.named_parameters():
        if name not in ref_params:
            raise KeyError(f'parameter {name} has no counterpart in the reference')
        if name not in ref_grads and name not in cand_grads:
            continue
        if (name in ref_grads) != (name in cand_grads):
            raise AssertionError(f'{name}: gradient present on one side only')
        grouped.setdefault(_group(name), []).append(name)
    rows = []
    for group, names in grouped.items():
        group_rows = [row(kind, n, cand_grads[n], ref_grads[n], tolerances['grad_rel'],
                          referee_grads[n] if referee_grads else None, compared=well_defined(n))
                      for n in names]
        compared = [r for r in group_rows if r.compared]
        worst = max(compared or group_rows, key=lambda r: (not r.ok, r.rel))
        worst.not_compared = len(group_rows) - len(compared)
        if not worst.not_compared:
            worst.name = f'{group} ({len(names)} tensors, worst {worst.name})'
        elif compared:
            worst.name = f'{group} ({len(compared)}/{len(names)} compared, worst {worst.name})'
        else:
            worst.name = f'{group} ({len(names)} tensors, none decidable in float32)'
        rows.append(worst)
    return rows


def _float64_rows(candidate64, reference, referee, weights, mask, inputs, training, tolerances,
                  report: MarginReport) -> List[DiffRow]:
    """The float64 candidate against the float64 reference: every output and gradient."""
    candidate64.train(training)
    out64, inputs64, grads64, _, _ = forward_backward(candidate64, to_float64(inputs), weights,
                                                      mask)
    violations = report.float64_violations()
    rows = [DiffRow('margin f64', f'decisions within {FLOAT64_MARGIN:.0e} x scale of their '
                    f'boundary ({len(report.trace64.decisions)} checked)', len(violations),
                    len(violations), 0)]
    for i, (c, r) in enumerate(zip(out64, referee[0])):
        max_abs, rel = _diff(c, r)
        rows.append(DiffRow('output f64', f'out[{i}] {tuple(r.shape)}', max_abs, rel,
                            tolerances['output_abs']))
    if not any(mask):
        return rows
    for i, (c, r) in enumerate(zip(leaves(inputs64), leaves(referee[1]))):
        if r.grad is not None:
            max_abs, rel = _diff(c.grad, r.grad)
            rows.append(DiffRow('input grad f64', f'input[{i}]', max_abs, rel,
                                tolerances['grad_rel']))

    def row(kind, name, cand, ref, tolerance, referee_value=None, compared=True):
        max_abs, rel = _diff(cand, ref)
        return DiffRow(kind, name, max_abs, rel, tolerance)

    return rows + _param_rows(candidate64, reference, grads64, referee[2], tolerances, row, None,
                              lambda name: True, kind='param grad f64')


def format_rows(rows: Sequence[DiffRow]) -> str:
    """A fixed-width table of the rows (with the float64 referee's columns where it ran)."""
    referee = any(r.candidate_vs_float64 is not None for r in rows)
    extra = f' {"cand-f64":>10} {"ref32-f64":>10}' if referee else ''
    lines = [f'{"kind":<14} {"quantity":<58} {"max abs":>10} {"rel":>10}{extra} {"tol":>8}  ok']
    for r in rows:
        extra = (f' {r.candidate_vs_float64:>10.2e} {r.reference_vs_float64:>10.2e}'
                 if referee and r.candidate_vs_float64 is not None else
                 f' {"-":>10} {"-":>10}' if referee else '')
        verdict = 'n/c' if not r.compared else 'yes' if r.ok else 'NO'
        lines.append(f'{r.kind:<14} {r.name[:58]:<58} {r.max_abs:>10.2e} {r.rel:>10.2e}{extra} '
                     f'{r.tolerance:>8.0e}  {verdict}')
    skipped = sum(r.not_compared if r.not_compared else (0 if r.compared else 1) for r in rows)
    if skipped:
        lines.append(f'n/c: {skipped} float32 gradient tensor(s) not compared: computed upstream '
                     f'of a ReLU/max-pool decision within float32 error of its boundary (machine-'
                     f'dependent in the reference too); the f64 rows, where present, cover them.')
    if referee:
        lines.append('cand-f64 / ref32-f64: the candidate\'s / the float32 reference\'s difference '
                     'from a float64 run of the reference (max abs for outputs, rel for grads).')
    return '\n'.join(lines)


def randomize_norm_statistics(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm/GroupNorm random affine parameters and running statistics, so that
    alignment tests also cover them (fresh ones are 0/1, which hides bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) - .5)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + .5)
            if isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm)) \
                    and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + .5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - .5)


def randomise_convs_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Conv weights N(0, 2 / fan-in), conv biases U(-0.5, 0.5)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator)
                               * (2.0 / m.weight[0].numel())**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - 0.5)
