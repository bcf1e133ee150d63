"""Check that Jittor components match their PyTorch references.

For each component pair (see jt_mm_plugins/alignment/pairs.py) load identical random weights into the
bridged Jittor module and its reference, run forward and backward on random input, and print the max
absolute / relative differences per output, per input gradient and per parameter group. Exits 1 when
any difference exceeds its tolerance.

    python tools/align.py                       # every pair, eval and train mode
    python tools/align.py clip_resnet fpn --mode train --size large
    python tools/align.py --list
"""
import argparse
import sys
import time

import jt_mm_plugins  # noqa: F401  (registers the Jittor components)
from jt_mm_plugins.alignment import ALIGNMENT_PAIRS, compare_modules, format_rows, get_pair


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('components', nargs='*', help='pair names (default: all)')
    parser.add_argument('--mode', choices=['eval', 'train', 'both'], default='both')
    parser.add_argument('--size', choices=['small', 'large'], default='small',
                        help='small: seconds on a CPU; large: the real architecture sizes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--list', action='store_true', help='list the pairs and exit')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for pair in ALIGNMENT_PAIRS.values():
            referee = ', float64 referee' if pair.float64_referee else ''
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
    for pair in pairs:
        for mode in modes:
            start = time.time()
            candidate, reference, inputs = pair.build(args.size, args.seed)
            rows = compare_modules(candidate, reference, inputs, training=(mode == 'train'),
                                   seed=args.seed, tolerances=pair.tolerances,
                                   float64_referee=pair.float64_referee,
                                   float64_context=pair.float64_context)
            ok = all(r.ok for r in rows)
            print(f'\n== {pair.name} [{mode}, {args.size}] {pair.description} '
                  f'({time.time() - start:.1f}s): {"ALIGNED" if ok else "NOT ALIGNED"}')
            print(format_rows(rows))
            if not ok:
                failed.append(f'{pair.name}/{mode}')
    print(f'\nalign: {len(pairs) * len(modes) - len(failed)} aligned, {len(failed)} not aligned'
          + (f': {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
