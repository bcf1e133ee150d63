"""Why does a Jittor component's gradient differ from its PyTorch reference? Ask float64.

For one alignment pair (jt_mm_plugins/alignment/pairs.py) this runs the Jittor candidate, the float32
reference and a float64 copy of the reference (the referee) on the same inputs and reports:

1. per output that carries a gradient (e.g. each loss of a detector), the worst parameter gradient
   of the candidate and of the float32 reference, both measured against the float64 run, when that
   output alone is back-propagated (an output without gradient, e.g. a loss without positives, says
   so). The output whose gradient is off, and which side is off, show where to look;
2. the ReLU / max-pool decisions that float32 cannot decide (jt_mm_plugins/alignment/margins.py):
   the float64 run's margin is below 10x the float32 error bound there, so any float32 run (the
   reference's on another machine, the candidate's) may take the other branch, and every gradient
   upstream of it is machine-dependent. This list depends on the reference only, not on luck;
   then the selections float32 cannot decide (sorts / top-k cuts, NMS, thresholds, assigners:
   ``margins.record_selections``): where there are any, the items themselves are machine-dependent;
3. the sign flips against the float64 run at the outputs of every Conv2d / BatchNorm2d / Linear
   layer (the inputs of the ReLUs that follow most of them), with the float64 value nearest zero
   and each side's float32 error there. A ReLU input within float32 noise of zero flips the
   gradient mask upstream of it: an honest float32 difference, not a bug.

    python tools/float64_diagnosis.py faster_rcnn --mode train
    python tools/float64_diagnosis.py resnet --mode train --size small

Layers are matched by name, which the Jittor components share with their references. Jittor hooks
need a Jittor module: a pair whose candidate has none (``.jittor_module`` or ``.model.jittor_module``)
gets part 1 only.
"""
import argparse
import contextlib
import copy
import sys
from typing import Dict, List

import torch

import jt_mm_plugins  # noqa: F401  (registers the Jittor components)
from jt_mm_plugins.alignment import get_pair
from jt_mm_plugins.alignment.compare import (forward_backward, fresh_inputs, leaf_names,
                                             relative_difference, to_float64)
from jt_mm_plugins.alignment.margins import (float32_bound, margin_report, record_decisions,
                                             record_selections)
from jt_mm_plugins.alignment.pairs import mmcv_nms_accepts_float64

HOOKED_TORCH_TYPES = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('pair', help='alignment pair name (tools/align.py --list)')
    parser.add_argument('--mode', choices=['eval', 'train'], default='train')
    parser.add_argument('--size', choices=['small', 'large'], default='small')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--top', type=int, default=10, help='rows of the sign-flip table')
    return parser.parse_args(argv)


def _jittor_root(candidate):
    for path in ('jittor_module', 'model.jittor_module'):
        obj = candidate
        try:
            for attr in path.split('.'):
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            continue
    return None


def _strip(name: str) -> str:
    return name[len('model.'):] if name.startswith('model.') else name


@contextlib.contextmanager
def _record_torch(module: torch.nn.Module, store: Dict[str, List[torch.Tensor]]):
    """Record (cloned: mmdet's ReLUs work in place) outputs of the hooked layer types by name."""
    handles = [m.register_forward_hook(
        lambda _, __, out, name=_strip(name): store.setdefault(name, []).append(
            out.detach().double().clone()))
        for name, m in module.named_modules() if isinstance(m, HOOKED_TORCH_TYPES)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _record_jittor(root, names, store: Dict[str, List[torch.Tensor]]):
    modules = [(n, m) for n, m in root.named_modules() if n in names]
    for name, m in modules:
        m.register_forward_hook(lambda _, __, out, name=name: store.setdefault(name, []).append(
            torch.from_numpy(out.numpy()).double()))
    try:
        yield
    finally:
        for _, m in modules:
            m.remove_forward_hook()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        pair = get_pair(args.pair)
    except KeyError as e:
        print(f'float64_diagnosis: {e.args[0]}', file=sys.stderr)
        return 2
    candidate, reference, inputs = pair.build(args.size, args.seed)
    referee = copy.deepcopy(reference).double()
    training = args.mode == 'train'
    for m in (candidate, reference, referee):
        m.train(training)
    context = pair.float64_context if pair.float64_referee else mmcv_nms_accepts_float64
    inputs64 = to_float64(inputs)

    # 1. each output on its own
    outputs, _, _, _, mask = forward_backward(reference, inputs, None, seed=args.seed)
    names = leaf_names(reference(*fresh_inputs(inputs)))
    print(f'== {pair.name} [{args.mode}, {args.size}]: worst parameter gradient vs float64, '
          f'one output back-propagated at a time')
    print(f'{"output":<24} {"Jittor":>9} {"at":<44} {"PyTorch32":>9} at')
    for i, m in enumerate(mask):
        if not m:
            print(f'{names[i][:24]:<24} (not differentiable: no gradient to compare)')
            continue
        weights = [torch.ones_like(o) if j == i else torch.zeros_like(o) if m else None
                   for j, (o, m) in enumerate(zip(outputs, mask))]
        with context():
            _, _, g64, _, _ = forward_backward(referee, inputs64, weights, mask)
        if not any(g.abs().max() > 0 for g in g64.values()):
            print(f'{names[i][:24]:<24} (no parameter gradient: e.g. a loss without positives)')
            continue
        _, _, g32, _, _ = forward_backward(reference, inputs, weights, mask)
        _, _, gjt, _, _ = forward_backward(candidate, inputs, weights, mask)
        params = [n for n in g64 if g64[n].abs().max() > 0 and n in gjt and n in g32]
        worst_jt = max((relative_difference(gjt[n], g64[n]), n) for n in params)
        worst_32 = max((relative_difference(g32[n], g64[n]), n) for n in params)
        print(f'{names[i][:24]:<24} {worst_jt[0]:>9.1e} {worst_jt[1][:44]:<44} '
              f'{worst_32[0]:>9.1e} {worst_32[1]}')

    # 2. decisions float32 cannot decide
    with record_selections(pair.sort_cut) as selections32, record_decisions(reference) as trace32:
        forward_backward(reference, inputs, None, seed=args.seed)
    with context(), record_selections(pair.sort_cut) as selections64, \
            record_decisions(referee) as trace64:
        forward_backward(referee, inputs64, None, seed=args.seed)
    report = margin_report(trace64, trace32)
    undecided = report.undecided
    print(f'\nReLU/max-pool decisions float32 cannot decide (float64 margin < 10x the float32 '
          f'error bound): {len(undecided)} of {len(trace64.decisions)}')
    if undecided:
        print(f'{"decision":<44} {"min|f64|":>9} {"err PT32":>9} {"bound":>9} {"max|f64|":>9}')
        rows = sorted(undecided, key=lambda d: d.margin / max(d.scale, 1e-30))
        for d in rows[:args.top]:
            error = report.errors32[d.index]
            print(f'{d.label[:44]:<44} {d.margin:>9.1e} {error:>9.1e} '
                  f'{float32_bound(error, d.scale):>9.1e} {d.scale:>9.1e}')
        params = [n for n, _ in reference.named_parameters()]
        upstream = [n for n in params if not report.param_grad_well_defined(n)]
        print(f'float32 gradients upstream of them (machine-dependent): {len(upstream)} of '
              f'{len(params)} parameters' + ('' if report.input_grad_well_defined() else
                                             ' and the input'))
    else:
        print('none: every decision has its margin, so every float32 gradient is well-defined')
    selections = margin_report(selections64, selections32)
    print(f'\nselections float32 cannot decide (sorts / top-k cuts, NMS, score_thr, min_bbox_size, '
          f'assigners): {len(selections.undecided)} of {len(selections64.decisions)}'
          + ('' if selections.undecided else ': the same items are selected on any machine'))
    for d in selections.undecided[:args.top]:
        print(f'{d.label[:44]:<44} margin {d.margin:.1e}, float32 error '
              f'{selections.errors32[d.index]:.1e} (scale {d.scale:.1e})')

    # 3. sign flips at layer outputs
    root = _jittor_root(candidate)
    if root is None:
        print('\n(no Jittor module to hook: sign flips not checked)')
        return 0
    rec64, rec32, recjt = {}, {}, {}
    with context(), _record_torch(referee, rec64):
        forward_backward(referee, inputs64, None, seed=args.seed)
    with _record_torch(reference, rec32):
        forward_backward(reference, inputs, None, seed=args.seed)
    with _record_jittor(root, set(rec64), recjt):
        forward_backward(candidate, inputs, None, seed=args.seed)
    rows, skipped = [], []
    for name, values64 in rec64.items():
        for call, v64 in enumerate(values64):
            vjt = recjt.get(name, [None] * len(values64))[call]
            v32 = rec32[name][call]
            if vjt is None or vjt.shape != v64.shape:
                continue
            label = f'{name}[{call}]' if len(values64) > 1 else name
            high, err_32 = float(v64.abs().max()), float((v32 - v64).abs().max())
            if err_32 > 1e-3 * max(high, 1e-6):
                # Even float32 PyTorch differs wholesale: the rows are other items in another
                # order (e.g. RoIs after a proposal sort on near-equal scores): not comparable.
                skipped.append(label)
                continue
            rows.append((int(((vjt > 0) != (v64 > 0)).sum()), int(((v32 > 0) != (v64 > 0)).sum()),
                         float(v64.abs().min()), float((vjt - v64).abs().max()), err_32, high,
                         label))
    rows.sort(key=lambda r: (-(r[0] + r[1]), r[2]))
    print(f'\nsign flips against float64 at layer outputs ({len(rows)} outputs compared; '
          f'flips matter where a ReLU follows), nearest-zero first')
    if skipped:
        print(f'not comparable element by element (float32 PyTorch itself differs wholesale: '
              f'items in another order): {", ".join(skipped)}')
    print(f'{"layer output":<44} {"flips Jittor":>12} {"flips PT32":>10} {"min|f64|":>9} '
          f'{"err Jittor":>10} {"err PT32":>9} {"max|f64|":>9}')
    for flips_jt, flips_32, low, err_jt, err_32, high, name in rows[:args.top]:
        print(f'{name[:44]:<44} {flips_jt:>12} {flips_32:>10} {low:>9.1e} {err_jt:>10.1e} '
              f'{err_32:>9.1e} {high:>9.1e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
