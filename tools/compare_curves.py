"""Compare two training runs' curves: the losses mmengine logged, step by step and per epoch.

Reads the ``vis_data/scalars.json`` files that mmengine's runner writes (one JSON object per logged
training step, averaged over the logger's window; validation lines carry ``coco/*`` metrics) and
prints, for each loss key both runs logged, the values at every step both logged, the per-epoch
means over those steps and their relative difference, and the validation metrics of both runs.

    python tools/compare_curves.py mmdet_run/vis_data/scalars.json jittor_run/vis_data/scalars.json
    python tools/compare_curves.py a.json b.json --keys loss loss_cls --names mmdet jittor

``--max-epoch-rel X`` makes it exit 1 when a per-epoch mean differs by more than X (relative to the
first run), for scripted checks. ``--plot FILE.png`` also draws each loss of both runs per logged step
(one panel per key) and the validation bbox mAP per epoch. See tools/export_init_weights.py for starting both runs from the
same weights.
"""
import argparse
import json
import os
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

DEFAULT_KEYS = ('loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox')


def read_scalars(path: str) -> Tuple[Dict[int, dict], Dict[int, dict]]:
    """(training records by step, validation records by step) of one scalars.json."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'compare_curves: {path} not found (expected mmengine\'s '
                                f'<work_dir>/<timestamp>/vis_data/scalars.json)')
    train, val = {}, {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'compare_curves: {path}:{number} is not JSON: {e}') from None
            if any(k.startswith('coco/') for k in record):
                val[record['step']] = record
            elif 'step' in record:
                train[record['step']] = record
    if not train:
        raise ValueError(f'compare_curves: {path} has no training records')
    return train, val


def epoch_means(train: Dict[int, dict], key: str, steps: Sequence[int]) -> Dict[int, float]:
    """Mean of ``key`` per epoch over the given logged steps."""
    values = defaultdict(list)
    for step in steps:
        record = train[step]
        if key in record and 'epoch' in record:
            values[record['epoch']].append(record[key])
    return {epoch: sum(v) / len(v) for epoch, v in sorted(values.items())}


def compare(path_a: str, path_b: str, keys: Sequence[str], names: Sequence[str]) -> Tuple[str, float]:
    """The report, and the largest relative difference of a per-epoch mean."""
    (train_a, val_a), (train_b, val_b) = read_scalars(path_a), read_scalars(path_b)
    keys = [k for k in keys if any(k in r for r in train_a.values())
            and any(k in r for r in train_b.values())]
    if not keys:
        raise ValueError('compare_curves: the two runs share none of the requested keys')
    steps = sorted(set(train_a) & set(train_b))
    lines = [f'A = {names[0]}: {path_a}', f'B = {names[1]}: {path_b}', '',
             f'{"step":>6} ' + ' '.join(f'{k + " A":>15} {k + " B":>15}' for k in keys)]
    for step in steps:
        lines.append(f'{step:>6} ' + ' '.join(
            f'{train_a[step].get(k, float("nan")):>15.4f} {train_b[step].get(k, float("nan")):>15.4f}'
            for k in keys))
    lines += ['', f'{"epoch mean":<14} {"A":>9} {"B":>9} {"B/A - 1":>9}']
    worst = 0.0
    for key in keys:
        # over the steps both runs logged, so that the means cover the same iterations
        means_a, means_b = epoch_means(train_a, key, steps), epoch_means(train_b, key, steps)
        for epoch in sorted(set(means_a) & set(means_b)):
            a, b = means_a[epoch], means_b[epoch]
            rel = b / a - 1 if a else float('inf')
            worst = max(worst, abs(rel))
            lines.append(f'{key + " e" + str(epoch):<14} {a:>9.4f} {b:>9.4f} {rel:>+9.1%}')
    metrics = sorted({k for r in list(val_a.values()) + list(val_b.values()) for k in r
                      if k.startswith('coco/') and not k.endswith('_l')})
    if metrics and set(val_a) & set(val_b):
        lines += ['', 'validation (epoch: A / B)']
        for metric in metrics:
            pairs = [f'{s}: {val_a[s].get(metric, float("nan")):.3f} / '
                     f'{val_b[s].get(metric, float("nan")):.3f}' for s in sorted(set(val_a) & set(val_b))]
            lines.append(f'{metric:<20} ' + '   '.join(pairs))
    lines += ['', f'largest per-epoch difference: {worst:.1%} over {len(steps)} common logged steps']
    return '\n'.join(lines), worst


def plot_curves(path_a: str, path_b: str, keys: Sequence[str], names: Sequence[str],
                out_file: str) -> Dict[str, Tuple[List[float], List[float]]]:
    """Draw both runs' losses per logged step (a panel per key both runs logged) and their
    validation ``coco/bbox_mAP`` per epoch into ``out_file`` (PNG). Returns the plotted series by
    label (``'<panel>/<run name>'``: (x, y))."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display needed
    import matplotlib.pyplot as plt

    runs = [(name, *read_scalars(path)) for name, path in zip(names, (path_a, path_b))]
    keys = [k for k in keys if all(any(k in r for r in train.values()) for _, train, _ in runs)]
    has_val = any(any('coco/bbox_mAP' in r for r in val.values()) for _, _, val in runs)
    panels = keys + (['coco/bbox_mAP'] if has_val else [])
    if not panels:
        raise ValueError('compare_curves: the two runs share none of the requested keys')
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    series = {}
    for ax, panel in zip(axes[0], panels):
        for (name, train, val), style in zip(runs, ('-', '--')):
            records = val if panel == 'coco/bbox_mAP' else train
            x = [step for step in sorted(records) if panel in records[step]]
            y = [records[step][panel] for step in x]
            ax.plot(x, y, style, marker='o' if panel == 'coco/bbox_mAP' else None, markersize=4,
                    linewidth=1.2, label=name)
            series[f'{panel}/{name}'] = (x, y)
        ax.set_title(panel)
        ax.set_xlabel('epoch' if panel == 'coco/bbox_mAP' else 'iteration')
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return series


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('run_a', help='scalars.json of the first run (the reference)')
    parser.add_argument('run_b', help='scalars.json of the second run')
    parser.add_argument('--keys', nargs='+', default=list(DEFAULT_KEYS))
    parser.add_argument('--names', nargs=2, default=['A', 'B'], metavar=('NAME_A', 'NAME_B'))
    parser.add_argument('--max-epoch-rel', type=float,
                        help='exit 1 when a per-epoch mean differs by more than this (e.g. 0.1)')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='also draw the losses per iteration and validation mAP per epoch here')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        report, worst = compare(args.run_a, args.run_b, args.keys, args.names)
    except (FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    print(report)
    if args.plot:
        plot_curves(args.run_a, args.run_b, args.keys, args.names, args.plot)
        print(f'plot: {args.plot}')
    if args.max_epoch_rel is not None and worst > args.max_epoch_rel:
        print(f'compare_curves: per-epoch difference {worst:.1%} > {args.max_epoch_rel:.1%}',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
