"""Distributed training on CPU: ``tools/dist_train.sh CONFIG 2`` (torchrun, ``--launcher pytorch``,
gloo) on the mixed GFL demo config (mmdet ResNet-18 + FPN, Jittor GFL head) and on the pure-Jittor
one (``JittorGFL``), 2 iterations of 1 image per rank, against ``tools/train.py`` in one process on
the union of the two ranks' first batches (2 images, 1 iteration).

What is checked, from the parameters a hook saves before training and after every iteration:

* both ranks hold identical parameters at the start and after every step (DDP all-reduces the
  gradients that the bridge hands to the torch parameters of the Jittor parts);
* the update of the first step equals the one-process update on the union of the two batches:
  max abs difference, beyond the float32 rounding of the parameters (one ulp), within 1e-3 of the
  largest update of each parameter (the project's gradient tolerance; SGD's first step is
  ``-lr * (grad + weight_decay * param)``). This holds because every loss divides by counts
  averaged over the processes, as mmdet's ``reduce_mean`` does (GFL: positives and box-loss
  weights; without it in the Jittor GFL head the updates differed by up to 18%), and the backbone
  keeps BatchNorm in eval mode (``norm_eval=True``): batch statistics of 1 image per rank cannot
  equal those of 2 images. GFL clamps its averaged box-loss weight (the summed predicted scores of
  the positives) at 1, which breaks the equality while it is below 1 (from the prior-0.01
  initialisation it is, here: the two-process update of the box branch came out half the
  one-process one), so the hook starts both runs with ``gfl_cls.bias`` at 0 (scores ~0.5). GFL is used because its ATSS assignment draws no random
  samples (Faster R-CNN's samplers would draw other anchors and proposals in two processes than in
  one).
"""
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch
from tiny_demo import generate_tiny_data, load_tool

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'mixed': osp.join(REPO, 'configs', 'demo', 'gfl_r18_fpn_jittor_head_demo.py'),
    'jittor': osp.join(REPO, 'configs', 'demo', 'gfl_r18_fpn_demo_jittor.py'),
}
UPDATE_TOLERANCE = 1e-3  # relative to the largest update of each parameter

# Saves the parameters (and the batch's image ids) of the rank before training and after each step.
PROBE_HOOK = '''
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SaveParametersHook(Hook):
    priority = 'LOWEST'

    def __init__(self, out_dir, zero=()):
        self.out_dir = out_dir
        self.zero = zero

    def _save(self, runner, step, img_ids):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        params = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.save(dict(params=params, img_ids=img_ids, world_size=runner.world_size,
                        wrapper=type(runner.model).__name__),
                   osp.join(self.out_dir, f'rank{runner.rank}_step{step}.pt'))

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self.zero:
                    param.zero_()
        self._save(runner, 0, [])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._save(runner, runner.iter + 1,
                   [sample.img_id for sample in data_batch['data_samples']])
'''

# The demo config at 64 px without random flips (a flip would be drawn differently by two
# processes than by one), images in file order, constant lr, no validation.
TINY_CONFIG = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['jt_mm_plugins', 'jtmm_dist_probe'], allow_failed_imports=False)
data_root = {data_root!r}
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(data_root=data_root, indices={num_images}, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(64, 64), keep_ratio=True),
        dict(type='PackDetInputs')]))
val_dataloader = None
val_cfg = None
val_evaluator = None
# (for tools/dist_test.sh: each of two processes tests one of the two validation images)
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(64, 64), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
train_cfg = dict(max_epochs=1)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [
    dict(type='SaveParametersHook', out_dir={out_dir!r}, zero=['bbox_head.gfl_cls.bias'])]
model = dict(backbone=dict(norm_eval=True))
randomness = dict(seed=0)
load_from = {load_from!r}
'''


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    (root / 'jtmm_dist_probe.py').write_text(PROBE_HOOK)
    generate_tiny_data(root / 'shapes', num_train=4, num_val=2)
    return root


def _train(root, name, nproc, load_from=None):
    """Train ``name``'s config in ``nproc`` processes (1: plain tools/train.py on 2 images of batch
    2; 2: tools/dist_train.sh on 4 images, batch 1 per rank), starting from the checkpoint
    ``load_from`` if given; return {(rank, step): saved dict}."""
    out_dir = root / f'{name}_{nproc}'
    out_dir.mkdir()
    config = out_dir / 'config.py'
    config.write_text(TINY_CONFIG.format(
        base=CONFIGS[name], data_root=str(root / 'shapes') + '/', out_dir=str(out_dir),
        batch_size=2 if nproc == 1 else 1, num_images=2 if nproc == 1 else 4,
        load_from=None if load_from is None else str(load_from)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), REPO]), OMP_NUM_THREADS='1',
               PYTHON=sys.executable, PORT=str(_free_port()), PYTHONWARNINGS='ignore')
    if nproc == 1:
        command = [sys.executable, osp.join(REPO, 'tools', 'train.py'), str(config)]
    else:
        command = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), str(config), str(nproc)]
    result = subprocess.run(command + ['--work-dir', str(out_dir / 'work')], cwd=str(root),
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    saved = {}
    for file in os.listdir(out_dir):
        if file.endswith('.pt'):
            rank, step = file[len('rank'):-len('.pt')].split('_step')
            saved[int(rank), int(step)] = torch.load(out_dir / file, weights_only=True)
    return saved


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_two_cpu_processes_train_as_one_process_on_the_union(workspace, name):
    ddp = _train(workspace, name, nproc=2)
    # The one-process run starts from the two-process run's initial parameters (mmengine's
    # load_from into the torch parameters, which the Jittor parts compute with), whatever
    # generator drew them.
    start_checkpoint = workspace / f'{name}_start.pth'
    torch.save(dict(state_dict=ddp[0, 0]['params']), start_checkpoint)
    one = _train(workspace, name, nproc=1, load_from=start_checkpoint)
    assert sorted(ddp) == [(rank, step) for rank in (0, 1) for step in (0, 1, 2)]
    assert sorted(one) == [(0, 0), (0, 1)]
    assert ddp[0, 0]['world_size'] == 2 and ddp[0, 0]['wrapper'] == 'MMDistributedDataParallel'
    assert one[0, 0]['world_size'] == 1

    # Every rank holds the same parameters at the start and after every step.
    names = list(ddp[0, 0]['params'])
    for step in (0, 1, 2):
        for key in names:
            assert torch.equal(ddp[0, step]['params'][key], ddp[1, step]['params'][key]), \
                f'{name}: rank 0 and rank 1 differ in {key} after step {step}'

    # The first step saw images 1 and 2 between the two ranks, the one-process step both.
    assert ddp[0, 1]['img_ids'] + ddp[1, 1]['img_ids'] == one[0, 1]['img_ids'] == [1, 2]
    start, after_ddp, after_one = ddp[0, 0]['params'], ddp[0, 1]['params'], one[0, 1]['params']
    largest, updated = 0.0, 0
    for key in names:
        assert torch.equal(start[key], one[0, 0]['params'][key]), f'{name}: initial {key} differs'
        update_one = after_one[key] - start[key]
        update_ddp = after_ddp[key] - start[key]
        # (0 for the first BatchNorm of each residual block: the second one starts at 0,
        # mmdet's zero_init_residual, and passes no gradient back; then both must be 0)
        scale = float(update_one.abs().max())
        updated += scale > 0
        # Each run's parameters after the step are float32: an update read back from them carries
        # up to half a unit in the last place of the parameter from each run.
        magnitude = after_one[key].abs()
        rounding = torch.nextafter(magnitude, torch.full_like(magnitude, float('inf'))) - magnitude
        excess = (update_ddp - update_one).abs() - rounding
        error = float(excess.max())
        largest = max(largest, error / scale if scale > 0 else error)
        assert error <= UPDATE_TOLERANCE * scale, \
            f'{name}: the two-process update of {key} differs from the one-process update on ' \
            f'the union by {error:.3g} beyond float32 rounding (largest update {scale:.3g})'
    assert updated > 0.8 * len(names), f'{name}: only {updated} of {len(names)} parameters changed'
    print(f'{name}: largest relative update difference {largest:.2e}')


# ----------------------------------------------------------------- the tools' distributed set-up

@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_cpu_config_uses_gloo_and_ddp_without_device_ids():
    from mmengine.config import Config
    common = load_tool('_common')
    cfg = Config.fromfile(CONFIGS['mixed'])
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'  # mmdet's default_runtime
    common.configure_distributed(cfg, 'pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                                         find_unused_parameters=False, device_ids=None)
    # A backend the config names other than nccl stays; the config's wrapper keeps its options.
    cfg = Config.fromfile(CONFIGS['mixed'])
    cfg.env_cfg.dist_cfg.backend = 'mpi'
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
    common.configure_distributed(cfg, 'slurm')
    assert cfg.env_cfg.dist_cfg.backend == 'mpi'
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         find_unused_parameters=True, device_ids=None)
    cfg = Config.fromfile(CONFIGS['mixed'])
    common.configure_distributed(cfg, 'none')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
@pytest.mark.parametrize('launcher,variable', [('pytorch', 'RANK'), ('slurm', 'SLURM_PROCID'),
                                                ('mpi', 'OMPI_COMM_WORLD_RANK')])
def test_launcher_without_its_environment_is_a_clear_error(monkeypatch, launcher, variable):
    from mmengine.config import Config
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'SLURM_PROCID', 'SLURM_NTASKS',
                 'SLURM_LOCALID', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
                 'OMPI_COMM_WORLD_LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    common = load_tool('_common')
    with pytest.raises(SystemExit) as exc:
        common.init_cpu_process_group(Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo')))),
                                      launcher)
    assert f'--launcher {launcher} needs the environment variables' in str(exc.value)
    assert variable in str(exc.value)


@pytest.mark.parametrize('script,positional', [('dist_train.sh', 'CONFIG NPROC'),
                                               ('dist_test.sh', 'CONFIG CHECKPOINT NPROC')])
def test_dist_scripts_print_their_usage(script, positional):
    result = subprocess.run(['bash', osp.join(REPO, 'tools', script)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and f'{script} {positional}' in result.stderr



def test_dist_test_runs_two_processes_on_the_trained_checkpoint(workspace):
    out_dir = workspace / 'mixed_2'
    if not (out_dir / 'work' / 'epoch_1.pth').exists():
        _train(workspace, 'mixed', nproc=2)
    out = workspace / 'predictions.pkl'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(workspace), REPO]),
               OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT=str(_free_port()),
               PYTHONWARNINGS='ignore')
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), str(out_dir / 'config.py'),
         str(out_dir / 'work' / 'epoch_1.pth'), '2', '--work-dir', str(workspace / 'test_work'),
         '--out', str(out)], cwd=str(workspace), env=env, capture_output=True, text=True,
        timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert 'Epoch(test) [1/1]' in log and 'Evaluating bbox' in log
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    # Both ranks' predictions, gathered in dataset order on rank 0.
    assert [p['img_id'] for p in predictions] == [1, 2]
