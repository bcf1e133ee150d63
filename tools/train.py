"""Train a detector with MMEngine's Runner, in the manner of MMDetection 3.x's ``tools/train.py``.

It runs any mmdet 3.x config unchanged: plain mmdet configs need nothing from this project, and
configs that use Jittor components import ``jt_mm_plugins`` themselves through their
``custom_imports``.
Differences from mmdet's tool:

* mmengine checkpoints (``--resume``, ``load_from``) load under torch >= 2.6's
  ``torch.load(weights_only=True)``: see ``jt_mm_plugins/utils/checkpoint_compat.py``.
* Clear errors instead of tracebacks for a missing config or checkpoint, and for ``--amp`` without an
  accelerator (mmengine's ``AmpOptimWrapper`` refuses CPU training).
* A ``--cfg-options`` key that is not in the config is reported (it is still added: new keys are
  legitimate, but a typo is otherwise silently ignored).
* With a distributed launcher on a machine without CUDA, the process group uses ``gloo``.

Examples::

    python tools/train.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py
    python tools/train.py CONFIG --work-dir work_dirs/x --cfg-options train_cfg.max_epochs=2
    python tools/train.py CONFIG --resume                 # latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_1.pth
"""
import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
import warnings
from types import ModuleType
from typing import List, Optional, Sequence

# mmengine resolves ``mmdet::`` config paths with pkg_resources, which warns on every use.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from mmengine.config import Config, DictAction  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_checkpoint_compat() -> ModuleType:
    """Import ``jt_mm_plugins.utils.checkpoint_compat`` without importing ``jt_mm_plugins``.

    The package's ``__init__`` loads Jittor, which a plain mmdet config does not need; the checkpoint
    module itself depends only on torch and mmengine. It is registered in ``sys.modules`` under its
    real name, so a later ``import jt_mm_plugins`` (from a config's ``custom_imports``) reuses it.
    """
    name = 'jt_mm_plugins.utils.checkpoint_compat'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec('jt_mm_plugins')  # locates the package without importing it
    package_dir = (spec.submodule_search_locations[0] if spec and spec.submodule_search_locations
                   else osp.join(REPO_ROOT, 'jt_mm_plugins'))
    path = osp.join(package_dir, 'utils', 'checkpoint_compat.py')
    if not osp.isfile(path):
        raise SystemExit(f'error: {path} not found: install jt_mm_plugins (pip install -e .) or '
                         f'run the tool from its repository')
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (needs a CUDA/NPU/MLU/MUSA device)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a path, from the latest checkpoint '
        'in the work directory')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs merged into it, e.g. '
        'train_cfg.max_epochs=2 model.backbone.depth=34 param_scheduler.1.milestones="[8,11]". '
        'Quote lists/tuples; no white space inside a value.')
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
    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        parser.error(f'--resume checkpoint not found: {args.resume}')
    return args


def _has_key(cfg: Config, dotted_key: str) -> bool:
    """Whether ``a.b.0.c`` names an existing entry of the config (list indices allowed)."""
    node = cfg
    for part in dotted_key.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif not isinstance(node, (list, tuple, str)) and hasattr(node, 'keys') and part in node:
            node = node[part]
        else:
            return False
    return True


def merge_cfg_options(cfg: Config, cfg_options: Optional[dict]) -> List[str]:
    """Merge ``--cfg-options`` into ``cfg``; return the keys the config did not have before."""
    if not cfg_options:
        return []
    new_keys = [key for key in cfg_options if not _has_key(cfg, key)]
    cfg.merge_from_dict(cfg_options)
    return new_keys


def amp_device_available() -> bool:
    """The devices mmengine's ``AmpOptimWrapper`` accepts (it asserts one of them exists)."""
    from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command line to it (mmdet's priorities)."""
    from mmengine.logging import print_log

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    for key in merge_cfg_options(cfg, args.cfg_options):
        print_log(f'--cfg-options: "{key}" is not in the config {args.config}; it was added '
                  f'(check the spelling if you meant to override an existing key)',
                  logger='current', level=logging.WARNING)

    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        if not amp_device_available():
            raise SystemExit(
                'error: --amp needs a CUDA (or NPU/MLU/MUSA) device: mmengine\'s AmpOptimWrapper '
                'refuses to build without one, and none is available here. Train in float32 '
                '(drop --amp).')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'enable' in cfg.get('auto_scale_lr', {}) and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise SystemExit('error: --auto-scale-lr needs "auto_scale_lr = dict(enable=..., '
                             'base_batch_size=...)" in the config')

    # resume: an explicit checkpoint > the latest one of the work dir
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.launcher != 'none':
        import torch
        if not torch.cuda.is_available() and cfg.get('env_cfg', {}).get('dist_cfg', {}).get(
                'backend') == 'nccl':
            # NCCL needs GPUs; gloo runs the same collectives on CPU.
            cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)

    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    # Fewer repeated compilations when a config uses torch.compile.
    setup_cache_size_limit_of_dynamo()
    cfg = build_config(args)

    # mmengine checkpoints (load_from, --resume) load with torch's weights_only=True.
    load_checkpoint_compat().register_mmengine_safe_globals()

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
