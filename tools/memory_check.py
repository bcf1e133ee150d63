"""Is training memory flat? Train a config for N iterations and watch the resident set size.

Runs the config's training (no validation, no checkpoints; the config's iteration-based warm-up, then a
constant learning rate: epoch-based schedules do not apply to an iteration count) for ``--iters``
iterations in this process and samples the process's RSS after every iteration. After ``--warmup``
iterations (Jittor compiles kernels, allocators fill their caches) the RSS should stay flat: the
report gives the RSS at the end of warm-up, at the end, the largest, and the growth in percent over
the post-warm-up iterations; ``--max-growth 0.05`` makes it exit 1 above 5 %. ``--json`` keeps every
sample. Data-loader workers are separate processes and are not counted: ``num_workers=0`` is set so
the data pipeline runs (and is measured) in this process too.

    python tools/memory_check.py configs/demo/faster_rcnn_clip_rn_jittor_fpn_demo.py --iters 1000
    python tools/memory_check.py CONFIG --iters 200 --warmup 50 --max-growth 0.05 --json mem.json
"""
import argparse
import importlib.util
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

_COMMON_SPEC = importlib.util.spec_from_file_location(
    'jt_mm_plugins_tools_common', osp.join(osp.dirname(osp.abspath(__file__)), '_common.py'))
common = importlib.util.module_from_spec(_COMMON_SPEC)
_COMMON_SPEC.loader.exec_module(common)


def growth_report(rss_mb: Sequence[float], warmup: int) -> Dict[str, float]:
    """RSS at the end of warm-up, at the end, the largest after warm-up, and the growth
    ``last / warm-up end - 1``."""
    if not 0 < warmup < len(rss_mb):
        raise ValueError(f'memory_check: --warmup must be at least 1 and below the {len(rss_mb)} '
                         f'sampled iterations, got {warmup}')
    base, after = rss_mb[warmup - 1], rss_mb[warmup:]
    return dict(warmup_end_mb=base, last_mb=after[-1], max_mb=max(after),
                growth=after[-1] / base - 1, max_growth=max(after) / base - 1)


def iteration_schedulers(param_scheduler) -> List[dict]:
    """The iteration-based schedulers (``by_epoch=False``, e.g. a linear warm-up) of a config's
    ``param_scheduler`` (a dict or a list); without its warm-up a demo started from random weights
    at the full learning rate can diverge in the first iterations."""
    if param_scheduler is None:
        return []
    schedulers = [param_scheduler] if isinstance(param_scheduler, dict) else list(param_scheduler)
    return [dict(s) for s in schedulers if s.get('by_epoch', True) is False]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument('--warmup', type=int, default=50,
                        help='iterations before the RSS is expected to be flat')
    parser.add_argument('--max-growth', type=float,
                        help='exit 1 when the RSS grows by more than this after warm-up (0.05 = 5%%)')
    parser.add_argument('--work-dir', default='work_dirs/memory_check')
    parser.add_argument('--json', help='write every sample and the report here')
    parser.add_argument('--cfg-options', nargs='+', action=common.DictAction, default={})
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.iters < 2 or not 0 < args.warmup < args.iters:
        print('memory_check: need --iters >= 2 and 0 < --warmup < --iters', file=sys.stderr)
        return 2
    if not osp.isfile(args.config):
        print(f'memory_check: config {args.config} not found', file=sys.stderr)
        return 2
    import psutil
    from mmengine.config import Config
    from mmengine.hooks import Hook

    cfg = Config.fromfile(args.config)
    common.merge_cfg_options(cfg, args.cfg_options)
    cfg.work_dir = args.work_dir
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters, val_interval=args.iters + 1)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    for key in ('val_cfg', 'val_dataloader', 'val_evaluator', 'test_cfg', 'test_dataloader',
                'test_evaluator'):
        cfg[key] = None
    cfg.param_scheduler = iteration_schedulers(cfg.get('param_scheduler'))
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, args.iters // 20))

    process = psutil.Process()
    samples: List[float] = []

    class RSSSampler(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            samples.append(process.memory_info().rss / 2**20)

    from mmengine.registry import RUNNERS
    runner = common.build_runner(cfg, RUNNERS)
    runner.register_hook(RSSSampler())
    runner.train()
    report = growth_report(samples, args.warmup)
    print(f'memory_check: {args.config}, {args.iters} iterations: RSS {report["warmup_end_mb"]:.0f} MB '
          f'after {args.warmup} warm-up iterations, {report["last_mb"]:.0f} MB at the end, '
          f'{report["max_mb"]:.0f} MB at most; growth {report["growth"]:+.1%} '
          f'(largest {report["max_growth"]:+.1%})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, iters=args.iters, warmup=args.warmup,
                           rss_mb=samples, **report), f, indent=1)
    if args.max_growth is not None and report['growth'] > args.max_growth:
        print(f'memory_check: RSS grew {report["growth"]:.1%} > {args.max_growth:.1%} after warm-up',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
