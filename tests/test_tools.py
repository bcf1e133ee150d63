"""tools/train.py and tools/test.py: arguments, config handling, checkpoint loading, and a tiny
end-to-end run (train 2 iterations, resume 2 more, test with --out and --show-dir)."""
import importlib.util
import os
import os.path as osp
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_demo import generate_tiny_data, write_tiny_config

# mmengine resolves mmdet:: config paths with pkg_resources, which warns on every use.
pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'faster_rcnn_r18_fpn_demo_mmdet.py')
DEMO_BASE = osp.join(REPO, 'configs', 'demo', '_base_', 'demo_shapes.py')


def _load(name):
    spec = importlib.util.spec_from_file_location(f'tools_{name}',
                                                  osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_tool = _load('train')
test_tool = _load('test')
gen_tool = _load('generate_demo_dataset')


def _run(args, cwd, timeout=300):
    """Run a tool as the user does; return the completed process (output included)."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='2')
    result = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    return result


# ----------------------------------------------------------------- argument handling


def test_train_missing_config_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        train_tool.parse_args(['configs/demo/no_such_config.py'])
    assert exc.value.code == 2
    assert 'config file not found: configs/demo/no_such_config.py' in capsys.readouterr().err


def test_train_missing_resume_checkpoint_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        train_tool.parse_args([DEMO_CONFIG, '--resume', 'no/such/epoch_1.pth'])
    assert '--resume checkpoint not found: no/such/epoch_1.pth' in capsys.readouterr().err


def test_test_tool_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        test_tool.parse_args(['no_such_config.py', 'x.pth'])
    assert 'config file not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        test_tool.parse_args([DEMO_CONFIG, str(tmp_path / 'missing.pth')])
    assert 'checkpoint file not found' in capsys.readouterr().err
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    with pytest.raises(SystemExit):
        test_tool.parse_args([DEMO_CONFIG, str(checkpoint), '--out', 'results.json'])
    assert '--out must name a .pkl or .pickle file' in capsys.readouterr().err


def test_cfg_options_merge_and_work_dir():
    args = train_tool.parse_args([
        DEMO_CONFIG, '--cfg-options', 'train_cfg.max_epochs=3',
        'model.roi_head.bbox_head.num_classes=5', 'param_scheduler.1.milestones=[1,2]',
        'optim_wrapper.optimizer.lr=0.01'
    ])
    cfg = train_tool.build_config(args)
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.model.roi_head.bbox_head.num_classes == 5
    assert cfg.param_scheduler[1].milestones == [1, 2]
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    # untouched values come from the config (and its mmdet:: bases)
    assert cfg.model.backbone.depth == 18 and cfg.model.type == 'FasterRCNN'
    assert cfg.work_dir == osp.join('./work_dirs', 'faster_rcnn_r18_fpn_demo_mmdet')
    assert cfg.resume is False and cfg.load_from is None
    assert cfg.launcher == 'none'


def test_cfg_options_report_keys_not_in_the_config():
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    new_keys = train_tool.merge_cfg_options(
        cfg, {'train_cfg.max_epoch': 3, 'train_cfg.max_epochs': 4, 'param_scheduler.1.gamma': 0.5})
    assert new_keys == ['train_cfg.max_epoch']
    assert cfg.train_cfg.max_epochs == 4 and cfg.param_scheduler[1].gamma == 0.5
    # mmengine itself refuses a list index out of range
    with pytest.raises(KeyError, match='Index 7 exceeds'):
        train_tool.merge_cfg_options(cfg, {'param_scheduler.7.gamma': 0.5})


def test_resume_and_work_dir_arguments(tmp_path):
    cfg = train_tool.build_config(
        train_tool.parse_args([DEMO_CONFIG, '--resume', '--work-dir', str(tmp_path)]))
    assert cfg.resume is True and cfg.load_from is None and cfg.work_dir == str(tmp_path)
    checkpoint = tmp_path / 'epoch_1.pth'
    checkpoint.write_bytes(b'')
    cfg = train_tool.build_config(train_tool.parse_args([DEMO_CONFIG, '--resume', str(checkpoint)]))
    assert cfg.resume is True and cfg.load_from == str(checkpoint)


def test_launcher_on_cpu_uses_gloo():
    cfg = train_tool.build_config(train_tool.parse_args([DEMO_CONFIG, '--launcher', 'pytorch']))
    assert cfg.launcher == 'pytorch'
    expected = 'nccl' if torch.cuda.is_available() else 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason='AMP is available with CUDA')
def test_amp_on_cpu_is_a_clear_error():
    with pytest.raises(SystemExit) as exc:
        train_tool.build_config(train_tool.parse_args([DEMO_CONFIG, '--amp']))
    assert '--amp needs a CUDA' in str(exc.value)


def test_test_tool_show_dir_turns_on_the_visualization_hook(tmp_path):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    cfg = test_tool.build_config(
        test_tool.parse_args([DEMO_CONFIG, str(checkpoint), '--show-dir', 'vis']))
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == 'vis'
    assert cfg.load_from == str(checkpoint)


def test_demo_configs_share_the_base():
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    base = Config.fromfile(DEMO_BASE)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator',
                'train_cfg', 'param_scheduler', 'optim_wrapper', 'default_hooks'):
        assert cfg[key] == base[key], key
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.train_dataloader.num_workers == 2 and cfg.train_dataloader.persistent_workers
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.02, momentum=0.9,
                                               weight_decay=0.0001)
    assert cfg.val_evaluator.type == 'CocoMetric' and cfg.val_evaluator.metric == 'bbox'
    assert cfg.default_hooks.visualization.type == 'DetVisualizationHook'
    assert cfg.train_dataloader.dataset.metainfo.classes == ('star', 'superstar', 'eff')
    model = cfg.model
    assert model.backbone.depth == 18 and model.backbone.init_cfg is None
    assert model.neck.in_channels == [64, 128, 256, 512] and model.neck.out_channels == 64
    assert model.rpn_head.anchor_generator.scales == [4]
    assert model.roi_head.bbox_head.num_classes == 3


def test_demo_model_builds_and_runs_a_loss_step():
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    register_all_modules()
    cfg = Config.fromfile(DEMO_CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 30.]]),
                                       labels=torch.tensor([2]))
    losses = model.loss(torch.rand(1, 3, 64, 64), [sample])
    total, log_vars = model.parse_losses(losses)
    assert torch.isfinite(total)
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'} <= set(log_vars)


# ----------------------------------------------------------------- checkpoint loading

MMENGINE_LIKE_CHECKPOINT = '''
import numpy as np, torch
from mmengine.logging import HistoryBuffer, MessageHub
hub = MessageHub.get_instance('ckpt_test')
hub.update_scalar('train/loss', 1.5)
hub.update_scalar('train/loss', 0.5)
hub.update_info('eta', np.float64(3.0))
torch.save(dict(state_dict=dict(w=torch.ones(2)),
                message_hub=hub.state_dict(),
                meta=dict(arr=np.arange(3, dtype=np.int64), f=np.float32(1.0))), PATH)
'''


def _python(code, timeout=120):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))


def test_mmengine_checkpoint_loads_weights_only_after_registration(tmp_path):
    """Without the compat module torch refuses the file; with it, weights_only=True loads it."""
    path = str(tmp_path / 'ckpt.pth')
    result = _python(f'''
        PATH = {path!r}
        {textwrap.indent(textwrap.dedent(MMENGINE_LIKE_CHECKPOINT), '        ').strip()}
        import pickle, torch
        try:
            torch.load(PATH)
            print('LOADED WITHOUT COMPAT')
        except pickle.UnpicklingError as e:
            print('REFUSED WITHOUT COMPAT')
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location('train_tool', 'tools/train.py')
        train_tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(train_tool)
        compat = train_tool.load_checkpoint_compat()
        # the tools get the compat module without importing jt_mm_plugins (and Jittor)
        print('JITTOR IMPORTED', 'jittor' in sys.modules or 'jt_mm_plugins' in sys.modules)
        compat.register_mmengine_safe_globals()
        compat.register_mmengine_safe_globals()  # idempotent
        ckpt = torch.load(PATH, weights_only=True)
        buffer = ckpt['message_hub']['log_scalars']['train/loss']
        print('MEAN', buffer.mean(), 'ETA', float(ckpt['message_hub']['runtime_info']['eta']))
        print('ARR', ckpt['meta']['arr'].tolist())
    ''')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'REFUSED WITHOUT COMPAT' in result.stdout
    assert 'MEAN 1.0 ETA 3.0' in result.stdout
    assert 'ARR [0, 1, 2]' in result.stdout
    assert 'JITTOR IMPORTED False' in result.stdout


class _ArbitraryGetattr:
    """Pickles as getattr(numpy.ndarray, 'tofile'): a getattr that is not HistoryBuffer's."""

    def __reduce__(self):
        import numpy as np
        return getattr, (np.ndarray, 'tofile')


def test_getattr_is_only_allowed_for_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer

    checkpoint_compat = train_tool.load_checkpoint_compat()
    checkpoint_compat.register_mmengine_safe_globals()
    assert checkpoint_compat.history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='refuses getattr'):
        checkpoint_compat.history_buffer_getattr(HistoryBuffer, '__init__')
    path = tmp_path / 'evil.pth'
    torch.save({'x': _ArbitraryGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='refuses getattr'):
        torch.load(path, weights_only=True)


# ----------------------------------------------------------------- end to end

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """4 train images of 64 px, batch 2: one epoch = 2 iterations; then validation."""
    root = tmp_path_factory.mktemp('e2e')
    data_root = generate_tiny_data(root / 'shapes')
    config = root / 'tiny_demo.py'
    write_tiny_config(config, DEMO_CONFIG, data_root)
    work_dir = root / 'work'
    result = _run([osp.join(REPO, 'tools', 'train.py'), str(config), '--work-dir', str(work_dir)],
                  cwd=str(root))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return dict(root=root, config=config, work_dir=work_dir, log=result.stdout + result.stderr)


def test_train_writes_a_checkpoint_and_validates(trained):
    assert osp.isfile(trained['work_dir'] / 'epoch_1.pth')
    assert 'Epoch(train) [1][2/2]' in trained['log']
    assert 'coco/bbox_mAP' in trained['log']


def test_resume_continues_from_the_checkpoint(trained):
    work_dir = trained['work_dir']
    common = [osp.join(REPO, 'tools', 'train.py'), str(trained['config']), '--work-dir',
              str(work_dir), '--cfg-options', 'train_cfg.max_epochs=2']
    result = _run(common + ['--resume', str(work_dir / 'epoch_1.pth')], cwd=str(trained['root']))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][2/2]' in log and 'Epoch(train) [1]' not in log
    # The new checkpoint loads with torch's weights_only default once the compat is registered.
    train_tool.load_checkpoint_compat().register_mmengine_safe_globals()
    ckpt = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 4
    assert 'train/loss' in ckpt['message_hub']['log_scalars']

    # --resume without a path picks the latest checkpoint of the work dir (epoch_2: nothing left).
    result = _run(common + ['--resume'], cwd=str(trained['root']))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Auto resumed from the latest checkpoint' in log and 'epoch_2.pth' in log
    assert 'Epoch(train)' not in log


def test_test_tool_dumps_predictions_and_paints_images(trained):
    out_pkl = trained['root'] / 'results.pkl'
    show_dir = trained['root'] / 'painted'
    result = _run([
        osp.join(REPO, 'tools', 'test.py'),
        str(trained['config']),
        str(trained['work_dir'] / 'epoch_1.pth'), '--work-dir',
        str(trained['root'] / 'test_work'), '--out',
        str(out_pkl), '--show-dir',
        str(show_dir)
    ], cwd=str(trained['root']))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'coco/bbox_mAP' in log
    with open(out_pkl, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 2
    assert {'img_id', 'pred_instances'} <= set(predictions[0])
    assert set(predictions[0]['pred_instances']) >= {'bboxes', 'scores', 'labels'}
    assert sorted(os.listdir(show_dir)) == ['000001.png', '000002.png']
