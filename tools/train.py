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
* With a distributed launcher on a machine without CUDA, training runs on CPU processes: the
  process group uses ``gloo`` and starts before the Runner, and DDP gets no ``device_ids``
  (``tools/_common.py``; mmengine's own path needs GPUs). ``tools/dist_train.sh CONFIG NPROC``
  starts NPROC processes with torchrun.

Examples::

    python tools/train.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py
    python tools/train.py CONFIG --work-dir work_dirs/x --cfg-options train_cfg.max_epochs=2
    python tools/train.py CONFIG --resume                 # latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_1.pth
"""
import argparse
import importlib.util
import logging
import os.path as osp
from typing import Optional, Sequence

# The helpers shared with tools/test.py (tools/ is no package, so it is loaded by path).
_COMMON_SPEC = importlib.util.spec_from_file_location(
    'jt_mm_plugins_tools_common', osp.join(osp.dirname(osp.abspath(__file__)), '_common.py'))
common = importlib.util.module_from_spec(_COMMON_SPEC)
_COMMON_SPEC.loader.exec_module(common)
# Part of this tool's interface (tests and scripts call them on it).
load_checkpoint_compat = common.load_checkpoint_compat
merge_cfg_options = common.merge_cfg_options

from mmengine.config import Config  # noqa: E402 (after common's warning filter)


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
    args = common.parse_common_args(
        parser, argv, 'train_cfg.max_epochs=2 model.backbone.depth=34 '
        'param_scheduler.1.milestones="[8,11]"')
    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        parser.error(f'--resume checkpoint not found: {args.resume}')
    return args


def amp_device_available() -> bool:
    """The devices mmengine's ``AmpOptimWrapper`` accepts (it asserts one of them exists)."""
    from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command line to it (mmdet's priorities)."""
    from mmengine.logging import print_log

    cfg = common.load_config(args)

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

    common.configure_distributed(cfg, args.launcher)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> None:
    common.tune_cpu_allocator()
    args = parse_args(argv)

    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.registry import RUNNERS

    # Fewer repeated compilations when a config uses torch.compile.
    setup_cache_size_limit_of_dynamo()
    cfg = build_config(args)
    common.init_cpu_process_group(cfg, args.launcher)
    runner = common.build_runner(cfg, RUNNERS)
    runner.train()


if __name__ == '__main__':
    main()
