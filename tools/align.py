"""Check that Jittor components match their PyTorch references.

For each component pair (see jt_mm_plugins/alignment/pairs.py) load identical random weights into the
bridged Jittor module and its reference, run forward and backward on random input, and print the max
absolute / relative differences per output, per input gradient and per parameter group. Exits 1 when
any difference exceeds its tolerance.

    python tools/align.py                       # every pair, eval and train mode
    python tools/align.py clip_resnet fpn --mode train --size large
    python tools/align.py --list
    python tools/align.py --markdown align.md   # + one summary line per pair and mode (README table)
    python tools/align.py --plot align.png      # + per pair and mode, the worst errors against
                                                #   their tolerances (log scale)
"""
import argparse
import sys
import time
from typing import Dict, List, Sequence, Tuple

import jt_mm_plugins  # noqa: F401  (registers the Jittor components)
from jt_mm_plugins.alignment import (ALIGNMENT_PAIRS, DiffRow, compare_modules, format_rows,
                                     get_pair)

SUMMARY_HEADER = ('| pair | mode | worst output | worst gradient vs float32 ref | Jittor vs float64 | '
                  'float32 ref vs float64 | float64 Jittor vs float64 | float32 gradients not '
                  'decidable | result |\n|---|---|---|---|---|---|---|---|---|')


def summary_line(name: str, mode: str, rows: List[DiffRow]) -> str:
    """One markdown row: the worst output (max abs) and the worst compared float32 gradient
    (relative); where the float64 referee's columns were asked for, the worst gradient of the
    candidate and of the float32 reference against the float64 run; where a float64 candidate ran,
    its worst difference from the float64 reference (relative, gradients and outputs); and how many
    float32 gradient tensors float32 cannot decide (not compared, see margins.py)."""
    outputs = [r for r in rows if r.kind == 'output']
    grads = [r for r in rows if r.kind in ('input grad', 'param grad') and r.compared]
    worst = lambda values: f'{max(values):.1e}' if values else '-'  # noqa: E731
    refereed = [r for r in grads if r.candidate_vs_float64 is not None]
    float64 = [r for r in rows if r.kind.endswith(' f64') and r.kind != 'margin f64']
    not_decidable = sum(r.not_compared or (0 if r.compared else 1) for r in rows)
    return (f'| {name} | {mode} | {worst([r.max_abs for r in outputs])} | '
            f'{worst([r.rel for r in grads])} | '
            f'{worst([r.candidate_vs_float64 for r in refereed])} | '
            f'{worst([r.reference_vs_float64 for r in refereed])} | '
            f'{worst([r.rel for r in float64])} | {not_decidable} | '
            f'{"ALIGNED" if all(r.ok for r in rows) else "NOT ALIGNED"} |')


def worst_against_tolerance(rows: List[DiffRow], kinds: Sequence[str]):
    """The compared row of ``kinds`` closest to (or farthest past) its tolerance, as (measured
    error, tolerance); None when there is none."""
    candidates = [r for r in rows if r.kind in kinds and r.compared]
    if not candidates:
        return None
    measured = lambda r: r.max_abs if r.kind.startswith('output') else r.rel  # noqa: E731
    row = max(candidates, key=lambda r: measured(r) / r.tolerance)
    return measured(row), row.tolerance


def plot_alignment(results: List[Tuple[str, str, List[DiffRow]]],
                   out_file: str) -> Dict[str, Tuple[float, float]]:
    """Draw, per pair and mode, the worst output error (max abs) and the worst compared gradient
    error (relative) as bars against their tolerances (ticks), on a log scale, into ``out_file``.
    Returns the drawn values by label (``'<pair> <mode> output|gradient'``: (error, tolerance))."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display needed
    import matplotlib.pyplot as plt

    drawn = {}
    for name, mode, rows in results:
        for label, kinds in (('output', ('output', )), ('gradient', ('input grad', 'param grad'))):
            worst = worst_against_tolerance(rows, kinds)
            if worst is not None:
                drawn[f'{name} {mode} {label}'] = worst
    if not drawn:
        raise ValueError('align: nothing to plot (no compared rows)')
    labels = list(drawn)
    errors = [max(drawn[k][0], 1e-12) for k in labels]  # an exact 0 still gets a visible bar
    tolerances = [drawn[k][1] for k in labels]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(labels) + 1.2))
    y = range(len(labels))
    colors = ['tab:blue' if e <= t else 'tab:red' for e, t in zip(errors, tolerances)]
    ax.barh(y, errors, color=colors, height=0.6, label='measured (worst)')
    ax.scatter(tolerances, y, marker='|', s=300, color='black', label='tolerance', zorder=3)
    ax.set_xscale('log')
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('error (outputs: max abs; gradients: relative)')
    ax.grid(axis='x', alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return drawn


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('components', nargs='*', help='pair names (default: all)')
    parser.add_argument('--mode', choices=['eval', 'train', 'both'], default='both')
    parser.add_argument('--size', choices=['small', 'large'], default='small',
                        help='small: seconds on a CPU; large: the real architecture sizes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--list', action='store_true', help='list the pairs and exit')
    parser.add_argument('--markdown', metavar='FILE',
                        help='also write a markdown table with one summary line per pair and mode')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='also draw the worst errors per pair and mode against their tolerances')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for pair in ALIGNMENT_PAIRS.values():
            referee = ', float64 referee' if pair.float64_referee else ''
            referee += ', float64 candidate' if pair.float64_candidate else ''
            print(f'{pair.name:<16} {pair.description}  tolerances={pair.tolerances}{referee}')
        return 0
    names = args.components or list(ALIGNMENT_PAIRS)
    try:
        pairs = [get_pair(n) for n in names]
    except KeyError as e:
        print(f'align: {e.args[0]}', file=sys.stderr)
        return 2
    modes = ['eval', 'train'] if args.mode == 'both' else [args.mode]
    failed = []
    summary = [SUMMARY_HEADER]
    results = []
    for pair in pairs:
        for mode in modes:
            start = time.time()
            candidate, reference, inputs = pair.build(args.size, args.seed)
            rows = compare_modules(candidate, reference, inputs, training=(mode == 'train'),
                                   seed=args.seed, tolerances=pair.tolerances,
                                   float64_referee=pair.float64_referee,
                                   float64_context=pair.float64_context,
                                   candidate64=pair.build_candidate64(args.size, args.seed))
            ok = all(r.ok for r in rows)
            print(f'\n== {pair.name} [{mode}, {args.size}] {pair.description} '
                  f'({time.time() - start:.1f}s): {"ALIGNED" if ok else "NOT ALIGNED"}')
            print(format_rows(rows))
            summary.append(summary_line(pair.name, mode, rows))
            results.append((pair.name, mode, rows))
            if not ok:
                failed.append(f'{pair.name}/{mode}')
    print(f'\nalign: {len(pairs) * len(modes) - len(failed)} aligned, {len(failed)} not aligned'
          + (f': {", ".join(failed)}' if failed else ''))
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write('\n'.join(summary) + '\n')
        print(f'align: summary table written to {args.markdown}')
    if args.plot:
        plot_alignment(results, args.plot)
        print(f'align: plot written to {args.plot}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
