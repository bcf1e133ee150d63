"""Compare a bridged Jittor module with its PyTorch reference: outputs and gradients.

Both modules must already hold identical weights. One forward and one backward (of a fixed random
weighting of every floating output) run on each, from the same inputs; the report lists the max
absolute and the relative difference of every output, of the input gradients, and of the parameter
gradients grouped by their first name component (``layer1``, ``lateral_convs``, ...).

Relative difference: ``max|a - b| / max(max|b|, 1e-6)`` with ``b`` the reference.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

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

    @property
    def ok(self) -> bool:
        value = self.max_abs if self.kind == 'output' else self.rel
        return value <= self.tolerance


def leaves(obj: Any) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in leaves(x)]
    if isinstance(obj, dict):
        return [t for k in sorted(obj) for t in leaves(obj[k])]
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


def _group(name: str) -> str:
    return name.split('.', 1)[0]


def compare_modules(candidate: torch.nn.Module, reference: torch.nn.Module,
                    inputs: Sequence[torch.Tensor], training: bool = False, seed: int = 0,
                    tolerances: Tolerances = DEFAULT_TOLERANCES) -> List[DiffRow]:
    """Run both modules on ``inputs`` and return one :class:`DiffRow` per compared quantity."""
    candidate.train(training)
    reference.train(training)
    cand_inputs, ref_inputs = fresh_inputs(inputs), fresh_inputs(inputs)
    for module in (candidate, reference):
        module.zero_grad(set_to_none=True)
    cand_out = leaves(candidate(*cand_inputs))
    ref_out = leaves(reference(*ref_inputs))
    if len(cand_out) != len(ref_out):
        raise ValueError(f'{len(cand_out)} outputs vs {len(ref_out)} from the reference')

    rows = []
    generator = torch.Generator().manual_seed(seed)
    cand_loss, ref_loss = 0, 0
    for i, (c, r) in enumerate(zip(cand_out, ref_out)):
        rows.append(DiffRow('output', f'out[{i}] {tuple(r.shape)}', *_diff(c, r),
                            tolerances['output_abs']))
        if r.is_floating_point() and r.requires_grad:
            weight = torch.randn(r.shape, generator=generator, dtype=r.dtype)
            cand_loss = cand_loss + (c * weight).sum()
            ref_loss = ref_loss + (r * weight).sum()
    if isinstance(ref_loss, int):
        return rows
    cand_loss.backward()
    ref_loss.backward()
    for i, (c, r) in enumerate(zip(leaves(cand_inputs), leaves(ref_inputs))):
        if r.grad is not None:
            rows.append(DiffRow('input grad', f'input[{i}]', *_diff(c.grad, r.grad),
                                tolerances['grad_rel']))
    ref_params = dict(reference.named_parameters())
    grouped: Dict[str, List] = {}
    for name, p in candidate.named_parameters():
        if name not in ref_params:
            raise KeyError(f'parameter {name} has no counterpart in the reference')
        q = ref_params[name]
        if q.grad is None and p.grad is None:
            continue
        if (q.grad is None) != (p.grad is None):
            raise AssertionError(f'{name}: gradient present on one side only')
        grouped.setdefault(_group(name), []).append((name, p.grad, q.grad))
    for group, items in grouped.items():
        worst = max((_diff(a, b) + (n, ) for n, a, b in items), key=lambda t: t[1])
        rows.append(DiffRow('param grad', f'{group} ({len(items)} tensors, worst {worst[2]})',
                            worst[0], worst[1], tolerances['grad_rel']))
    return rows


def format_rows(rows: Sequence[DiffRow]) -> str:
    """A fixed-width table of the rows."""
    lines = [f'{"kind":<11} {"quantity":<58} {"max abs":>10} {"rel":>10} {"tol":>8}  ok']
    for r in rows:
        lines.append(f'{r.kind:<11} {r.name[:58]:<58} {r.max_abs:>10.2e} {r.rel:>10.2e} '
                     f'{r.tolerance:>8.0e}  {"yes" if r.ok else "NO"}')
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
