"""Test (and evaluate) a detector checkpoint, in the manner of MMDetection 3.x's ``tools/test.py``.

It runs any mmdet 3.x config unchanged, like ``tools/train.py`` (the helpers both share are in
``tools/_common.py``): plain mmdet configs need nothing from this project, configs with Jittor
components bring ``custom_imports``.

Outputs:

* the metrics of the config's ``test_evaluator`` (logged, and saved under ``--work-dir``),
* ``--out FILE.pkl``: the raw predictions (mmdet's ``DumpDetResults``), for offline evaluation,
* ``--show-dir DIR``: images with the predicted boxes drawn by mmdet's ``DetVisualizationHook``
  (which the config's ``default_hooks`` must contain). As in mmdet, a relative ``DIR`` is placed
  under ``<work-dir>/<timestamp>/``; an absolute one is used as it is. The tool prints where.

``tools/dist_test.sh CONFIG CHECKPOINT NPROC [args]`` runs it in NPROC processes with torchrun
(``--launcher pytorch``; on CPU as ``tools/train.py`` describes).

Examples::

    python tools/test.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py \\
        work_dirs/faster_rcnn_r18_fpn_demo_mmdet/epoch_6.pth --out results.pkl --show-dir vis
"""
import argparse
import importlib.util
import os.path as osp
from typing import Optional, Sequence

# The helpers shared with tools/train.py (tools/ is no package, so it is loaded by path).
_COMMON_SPEC = importlib.util.spec_from_file_location(
    'jt_mm_plugins_tools_common', osp.join(osp.dirname(osp.abspath(__file__)), '_common.py'))
common = importlib.util.module_from_spec(_COMMON_SPEC)
_COMMON_SPEC.loader.exec_module(common)

from mmengine.config import Config  # noqa: E402 (after common's warning filter)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', type=str, help='dump predictions to a pickle file (.pkl) for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results in a window')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved; a relative path is placed under '
        '<work-dir>/<timestamp>/')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of --show (s)')
    args = common.parse_common_args(parser, argv, 'test_dataloader.batch_size=2')
    if not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must name a .pkl or .pickle file, got {args.out}')
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command line to it (mmdet's priorities)."""
    from mmdet.engine.hooks.utils import trigger_visualization_hook

    cfg = common.load_config(args)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        if 'visualization' not in cfg.get('default_hooks', {}):
            raise SystemExit('error: --show/--show-dir need a visualization hook in the config: '
                             "default_hooks = dict(visualization=dict(type='DetVisualizationHook'))")
        cfg = trigger_visualization_hook(cfg, args)

    common.configure_distributed(cfg, args.launcher)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> dict:
    common.tune_cpu_allocator()
    args = parse_args(argv)

    from mmdet.evaluation import DumpDetResults
    from mmdet.registry import RUNNERS
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.logging import print_log

    setup_cache_size_limit_of_dynamo()
    cfg = build_config(args)
    common.init_cpu_process_group(cfg, args.launcher)
    runner = common.build_runner(cfg, RUNNERS)

    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))

    metrics = runner.test()

    if args.show_dir:
        print_log('painted predictions saved to '
                  f'{osp.join(runner.work_dir, runner.timestamp, args.show_dir)}',
                  logger='current')
    return metrics


if __name__ == '__main__':
    main()
