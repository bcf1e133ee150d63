"""``SyncBN`` in a Jittor component: BatchNorm2d in one process (as mmengine's revert_sync_batchnorm
makes of torch's), and a clear refusal in a multi-process run instead of silently per-process
statistics (two real gloo processes on CPU)."""
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import torch

from jt_mm_plugins.models.layers import build_norm_layer
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d, SyncBatchNorm
from jt_mm_plugins.runtime import jt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RANK_SCRIPT = textwrap.dedent('''
    import sys
    import torch.distributed as dist
    import jt_mm_plugins  # noqa: F401
    from jt_mm_plugins.models.layers import build_norm_layer
    from jt_mm_plugins.runtime import jt
    _, early = build_norm_layer(dict(type='SyncBN'), 3)   # built before the process group exists
    dist.init_process_group('gloo', init_method=sys.argv[1], rank=int(sys.argv[2]), world_size=2)
    try:
        build_norm_layer(dict(type='SyncBN'), 3)
        print('BUILD: built')
    except NotImplementedError as err:
        print('BUILD:', err)
    x = jt.ones((2, 3, 4, 4))
    early.eval()
    print('EVAL OK', early(x).shape)          # running statistics: nothing to synchronise
    early.train()
    try:
        early(x)
        print('TRAIN: ran')
    except NotImplementedError as err:
        print('TRAIN:', err)
    dist.destroy_process_group()
''')


def test_one_process_syncbn_is_batchnorm_with_a_batchnorm_mirror():
    name, layer = build_norm_layer(dict(type='SyncBN', momentum=0.03), 3)
    assert name == 'bn' and isinstance(layer, SyncBatchNorm) and isinstance(layer, BatchNorm2d)
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    reference = torch.nn.BatchNorm2d(3, momentum=0.03)
    expected = reference(torch.from_numpy(x)).detach().numpy()
    assert np.abs(layer(jt.array(x)).numpy() - expected).max() < 1e-5
    assert np.abs(layer.running_var.numpy() - reference.running_var.numpy()).max() < 1e-6
    bridged = SyncBatchNorm.bridged if hasattr(SyncBatchNorm, 'bridged') else None
    assert bridged is None  # a layer, not a registered component: its mirror comes from BatchNorm2d


def test_two_processes_refuse_unsynchronised_statistics_naming_the_config():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    init = f'tcp://127.0.0.1:{port}'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    procs = [subprocess.Popen([sys.executable, '-c', RANK_SCRIPT, init, str(rank)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
        assert "BUILD: norm_cfg=dict(type='SyncBN') in a Jittor component" in out, out
        assert 'on 2 processes' in out and "Use norm_cfg=dict(type='BN')" in out, out
        assert 'EVAL OK' in out, out
        assert "TRAIN: norm_cfg=dict(type='SyncBN')" in out, out
