"""Test (and evaluate) a detector checkpoint, in the manner of MMDetection 3.x's ``tools/test.py``.

It runs any mmdet 3.x config unchanged, like ``tools/train.py`` (whose helpers it shares): plain
mmdet configs need nothing from this project, configs with Jittor components bring
``custom_imports``.

Outputs:

* the metrics of the config's ``test_evaluator`` (logged, and saved under ``--work-dir``),
* ``--out FILE.pkl``: the raw predictions (mmdet's ``DumpDetResults``), for offline evaluation,
* ``--show-dir DIR``: images with the predicted boxes drawn by mmdet's ``DetVisualizationHook``
  (which the config's ``default_hooks`` must contain). As in mmdet, a relative ``DIR`` is placed
  under ``<work-dir>/<timestamp>/``; an absolute one is used as it is. The tool prints where.

Examples::

    python tools/test.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py \\
        work_dirs/faster_rcnn_r18_fpn_demo_mmdet/epoch_6.pth --out results.pkl --show-dir vis
"""
import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
import warnings
from types import ModuleType
from typing import Optional, Sequence

# mmengine resolves ``mmdet::`` config paths with pkg_resources, which warns on every use.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from mmengine.config import Config, DictAction  # noqa: E402


def _train_tool() -> ModuleType:
    """``tools/train.py`` as a module (for its config and checkpoint helpers)."""
    name = 'jt_mm_plugins_tools_train'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(osp.dirname(osp.abspath(__file__)), 'train.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


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
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs merged into it, e.g. '
        'test_dataloader.batch_size=2. Quote lists/tuples; no white space inside a value.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)

    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must name a .pkl or .pickle file, got {args.out}')
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command line to it (mmdet's priorities)."""
    from mmdet.engine.hooks.utils import trigger_visualization_hook
    from mmengine.logging import print_log

    train_tool = _train_tool()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    for key in train_tool.merge_cfg_options(cfg, args.cfg_options):
        print_log(f'--cfg-options: "{key}" is not in the config {args.config}; it was added '
                  f'(check the spelling if you meant to override an existing key)',
                  logger='current', level=logging.WARNING)

    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        if 'visualization' not in cfg.get('default_hooks', {}):
            raise SystemExit('error: --show/--show-dir need a visualization hook in the config: '
                             "default_hooks = dict(visualization=dict(type='DetVisualizationHook'))")
        cfg = trigger_visualization_hook(cfg, args)

    if args.launcher != 'none':
        import torch
        if not torch.cuda.is_available() and cfg.get('env_cfg', {}).get('dist_cfg', {}).get(
                'backend') == 'nccl':
            cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)

    from mmdet.evaluation import DumpDetResults
    from mmdet.registry import RUNNERS
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.logging import print_log
    from mmengine.runner import Runner

    setup_cache_size_limit_of_dynamo()
    cfg = build_config(args)
    # The checkpoint loads with torch's weights_only=True.
    _train_tool().load_checkpoint_compat().register_mmengine_safe_globals()

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

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
