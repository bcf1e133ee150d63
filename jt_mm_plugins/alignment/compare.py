"""Compare a bridged Jittor module with its PyTorch reference: outputs and gradients.

Both modules must already hold identical weights. One forward and one backward (of a fixed random
weighting of every floating output) run on each, from the same inputs; the report lists the max
absolute and the relative difference of every output, of the input gradients, and of the parameter
gradients grouped by their first name component (``layer1``, ``lateral_convs``, ...).

Relative difference: ``max|a - b| / max(max|b|, 1e-6)`` with ``b`` the reference.

Optionally a float64 copy of the reference runs too, as a referee: float32 is not exact, and where a
computation is ill-conditioned in float32 (a ReLU input within rounding noise of zero flips the
gradient mask upstream of it) the float32 reference can be as far from the true value as the
candidate. A quantity then also passes when the candidate is within tolerance of the float64 run.
"""
import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence

import torch

Tolerances = Dict[str, float]  # keys: 'output_abs', 'grad_rel'
DEFAULT_TOLERANCES: Tolerances = {'output_abs': 1e-4, 'grad_rel': 1e-3}


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

    @property
    def ok(self) -> bool:
        """Within tolerance of the float32 reference, or, where a float64 referee ran, of it.

        The second clause matters where float32 itself is ill-conditioned, e.g. a ReLU input within
        float32 noise of zero: whichever side rounding puts it on moves the gradients upstream by
        far more than the tolerance, in the float32 reference as much as in the candidate.
        """
        value = self.max_abs if self.kind == 'output' else self.rel
        if value <= self.tolerance:
            return True
        return self.candidate_vs_float64 is not None and \
            self.candidate_vs_float64 <= self.tolerance


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
                    float64_context: Callable[[], ContextManager] = contextlib.nullcontext
                    ) -> List[DiffRow]:
    """Run both modules on ``inputs`` and return one :class:`DiffRow` per compared quantity.

    With ``float64_referee``, a float64 copy of the reference also runs (inside
    ``float64_context()``, for references with float32-only ops to patch) and every row records
    the candidate's and the float32 reference's differences from it.
    """
    candidate.train(training)
    reference.train(training)
    ref_out, ref_inputs, ref_grads, weights, mask = forward_backward(reference, inputs, None,
                                                                      seed=seed)
    cand_out, cand_inputs, cand_grads, _, _ = forward_backward(candidate, inputs, weights, mask)
    if len(cand_out) != len(ref_out):
        raise ValueError(f'{len(cand_out)} outputs vs {len(ref_out)} from the reference')
    referee = None
    if float64_referee:
        referee64 = copy.deepcopy(reference).double().train(training)
        with float64_context():
            referee = forward_backward(referee64, to_float64(inputs), weights, mask)

    def row(kind, name, cand, ref, tolerance, referee_value=None):
        max_abs, rel = _diff(cand, ref)
        r = DiffRow(kind, name, max_abs, rel, tolerance)
        if referee_value is not None:
            pick = 0 if kind == 'output' else 1
            r.candidate_vs_float64 = _diff(cand, referee_value)[pick]
            r.reference_vs_float64 = _diff(ref, referee_value)[pick]
        return r

    rows = []
    for i, (c, r) in enumerate(zip(cand_out, ref_out)):
        rows.append(row('output', f'out[{i}] {tuple(r.shape)}', c, r, tolerances['output_abs'],
                        referee[0][i] if referee else None))
    if not any(mask):
        return rows
    for i, (c, r) in enumerate(zip(leaves(cand_inputs), leaves(ref_inputs))):
        if r.grad is not None:
            rows.append(row('input grad', f'input[{i}]', c.grad, r.grad, tolerances['grad_rel'],
                            leaves(referee[1])[i].grad if referee else None))
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
    for group, names in grouped.items():
        # the group's worst tensor: against the float64 referee where it ran, else the reference
        group_rows = [row('param grad', n, cand_grads[n], ref_grads[n], tolerances['grad_rel'],
                          referee[2][n] if referee else None) for n in names]
        worst = max(group_rows, key=lambda r: (not r.ok, r.rel))
        worst.name = f'{group} ({len(names)} tensors, worst {worst.name})'
        rows.append(worst)
    return rows


def format_rows(rows: Sequence[DiffRow]) -> str:
    """A fixed-width table of the rows (with the float64 referee's columns where it ran)."""
    referee = any(r.candidate_vs_float64 is not None for r in rows)
    extra = f' {"cand-f64":>10} {"ref32-f64":>10}' if referee else ''
    lines = [f'{"kind":<11} {"quantity":<58} {"max abs":>10} {"rel":>10}{extra} {"tol":>8}  ok']
    for r in rows:
        extra = (f' {r.candidate_vs_float64:>10.2e} {r.reference_vs_float64:>10.2e}'
                 if referee else '')
        lines.append(f'{r.kind:<11} {r.name[:58]:<58} {r.max_abs:>10.2e} {r.rel:>10.2e}{extra} '
                     f'{r.tolerance:>8.0e}  {"yes" if r.ok else "NO"}')
    if referee:
        lines.append('cand-f64 / ref32-f64: the candidate\'s / the float32 reference\'s difference '
                     'from a float64 run of the reference (max abs for outputs, rel for grads); '
                     'ok = within tolerance of the float32 reference or of the float64 run.')
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
