"""What the tools share: the common command-line arguments, config loading with ``--cfg-options``,
the runner, the checkpoint-compat module, and the CPU allocator setting.

``tools/`` is not a package: each tool loads this file by its path. It does not import
``jt_mm_plugins`` (which loads Jittor): a plain mmdet config needs neither.
"""
import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, List, Optional, Sequence

# mmengine resolves ``mmdet::`` config paths with pkg_resources, which warns on every use.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from mmengine.config import Config, DictAction  # noqa: E402

if TYPE_CHECKING:
    from mmengine.registry import Registry
    from mmengine.runner import Runner

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tune_cpu_allocator() -> bool:
    """Let glibc's malloc keep large freed blocks for reuse instead of unmapping them.

    By default every allocation over 32 MB is a fresh ``mmap`` and every free gives it back to the OS,
    so each new large tensor page-faults all its pages again. A training step allocates the same
    large tensors every iteration, and the bridge makes fresh torch tensors of Jittor results: on the
    2-core CI machine the FPN benchmark's bridge overhead fell from 17% to 3%, and mmdet's own FPN
    step got ~20% faster (README, "Benchmarks"). The cost: the process keeps its peak heap.

    The tools call this first; importing ``jt_mm_plugins`` changes nothing. Set
    ``JTMM_GLIBC_MALLOC_DEFAULTS=1`` to keep glibc's defaults. Returns whether it was applied
    (False off glibc).
    """
    if os.environ.get('JTMM_GLIBC_MALLOC_DEFAULTS') == '1' or not sys.platform.startswith('linux'):
        return False
    import ctypes
    try:
        mallopt = ctypes.CDLL('libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    limit = 2**31 - 1  # mallopt takes an int
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


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


def parse_common_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
                      cfg_options_example: str) -> argparse.Namespace:
    """Add the arguments both tools take last (``--cfg-options``, ``--launcher``,
    ``--local-rank``), parse ``argv`` and check the positional ``config``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser, with its own arguments (``config``
            among them) already added.
        argv (Sequence[str], optional): The arguments; None means ``sys.argv[1:]``.
        cfg_options_example (str): Example key=value pairs for the ``--cfg-options`` help.

    Returns:
        argparse.Namespace: The parsed arguments; ``LOCAL_RANK`` is set in the environment.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs merged into it, e.g. '
        f'{cfg_options_example}. Quote lists/tuples; no white space inside a value.')
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


def load_config(args: argparse.Namespace) -> Config:
    """Load ``args.config`` and apply what both tools share: ``--launcher``, ``--cfg-options``
    (reporting keys the config did not have) and the work directory (command line > config >
    ``./work_dirs/<config name>``)."""
    from mmengine.logging import print_log

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    for key in merge_cfg_options(cfg, args.cfg_options):
        print_log(f'--cfg-options: "{key}" is not in the config {args.config}; it was added '
                  f'(check the spelling if you meant to override an existing key)',
                  logger='current', level=logging.WARNING)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def _torch_dist_env(launcher: str, dist_cfg: dict) -> None:
    """Put the rank, world size, local rank and rendezvous address of a ``launcher`` into the
    environment variables ``init_process_group(init_method='env://')`` reads (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), as mmengine's ``init_dist``
    does for GPUs."""
    import subprocess

    sources = {
        'pytorch': ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'),
        'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'),
        'mpi': ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK'),
    }[launcher]
    missing = [name for name in sources if name not in os.environ]
    if missing:
        how = {'pytorch': 'torchrun (tools/dist_train.sh, tools/dist_test.sh)',
               'slurm': 'srun', 'mpi': 'mpirun (Open MPI)'}[launcher]
        raise SystemExit(f'error: --launcher {launcher} needs the environment variables '
                         f'{", ".join(missing)}, which {how} sets: start the tool with it')
    for name, value in zip(('RANK', 'WORLD_SIZE', 'LOCAL_RANK'), sources):
        os.environ[name] = os.environ[value]
    if launcher == 'slurm':
        if dist_cfg.get('port') is not None:
            os.environ['MASTER_PORT'] = str(dist_cfg['port'])
        if 'MASTER_ADDR' not in os.environ:
            hosts = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
                                   capture_output=True, text=True, check=True).stdout.split()
            os.environ['MASTER_ADDR'] = hosts[0]
    if 'MASTER_ADDR' not in os.environ:
        raise SystemExit(f'error: --launcher {launcher} needs MASTER_ADDR (the address of rank 0)')
    os.environ.setdefault('MASTER_PORT', '29500')  # torch.distributed's default port


def configure_distributed(cfg: Config, launcher: str) -> None:
    """Fit a distributed run's config (``launcher`` other than ``none``) to the device there is.

    With CUDA nothing changes: mmengine binds each process to the GPU ``LOCAL_RANK``, initialises
    the process group with the config's ``env_cfg.dist_cfg`` (mmdet's configs say ``nccl``) and
    wraps the model in ``MMDistributedDataParallel`` on that GPU.

    Without CUDA that path fails (mmengine calls ``torch.cuda.set_device`` and gives DDP
    ``device_ids=[LOCAL_RANK]``), so an ``nccl`` backend becomes ``gloo`` (another backend the
    config names is kept) and the model wrapper (the config's ``model_wrapper_cfg``, or mmengine's
    default: ``MMDistributedDataParallel`` with ``broadcast_buffers=False``) gets
    ``device_ids=None``: DDP on CPU parameters. :func:`init_cpu_process_group` then starts the
    process group before the Runner. Jittor parts need nothing more: their parameters are torch
    parameters, whose gradients DDP all-reduces.
    """
    if launcher == 'none':
        return
    import torch

    if 'env_cfg' not in cfg:
        cfg.env_cfg = dict()
    if 'dist_cfg' not in cfg.env_cfg:
        cfg.env_cfg.dist_cfg = dict(backend='nccl')
    if torch.cuda.is_available():
        return
    if cfg.env_cfg.dist_cfg.get('backend', 'nccl') == 'nccl':
        cfg.env_cfg.dist_cfg.backend = 'gloo'

    import mmengine.model  # noqa: F401 (registers MMDistributedDataParallel)
    from mmengine.registry import MODEL_WRAPPERS
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                       find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    wrapper_class = (MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str)
                     else wrapper_type)
    if isinstance(wrapper_class, type) and issubclass(wrapper_class,
                                                      torch.nn.parallel.DistributedDataParallel):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def init_cpu_process_group(cfg: Config, launcher: str) -> bool:
    """Without CUDA, initialise the process group of a distributed ``launcher`` before the Runner
    (mmengine's ``init_dist`` would call ``torch.cuda.set_device``; the Runner uses a group that
    exists as it is), with the backend and options of the config's ``env_cfg.dist_cfg`` (see
    :func:`configure_distributed`). Returns whether it initialised one."""
    if launcher == 'none':
        return False
    import datetime

    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() or dist.is_initialized():
        return False
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    _torch_dist_env(launcher, dist_cfg)
    backend = dist_cfg.pop('backend', 'gloo')
    dist_cfg.pop('port', None)
    if dist_cfg.get('timeout') is not None:  # seconds in the config, as for mmengine's init_dist
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    dist.init_process_group(backend=backend, init_method='env://', **dist_cfg)
    return True


def build_runner(cfg: Config, runners: 'Registry') -> 'Runner':
    """Make mmengine checkpoints (``load_from``, ``--resume``) loadable with torch's
    ``weights_only=True``, then build the runner: mmengine's ``Runner`` or, with
    ``runner_type``, the one the registry ``runners`` builds. Its logger drops the stack's messages
    no user can act on (:mod:`jt_mm_plugins.utils.log_filters`)."""
    from mmengine.runner import Runner

    from jt_mm_plugins.utils.log_filters import drop_unactionable_messages

    load_checkpoint_compat().register_mmengine_safe_globals()
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else runners.build(cfg)
    drop_unactionable_messages(runner.logger)
    return runner
