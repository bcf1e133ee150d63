"""tools/export_init_weights.py and tools/compare_curves.py: training two configs from the same
initial weights and comparing their logged curves."""
import importlib.util
import json
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MMDET_DEMO = os.path.join(REPO, 'configs', 'demo', 'faster_rcnn_r18_fpn_demo_mmdet.py')
JITTOR_DEMO = os.path.join(REPO, 'configs', 'demo', 'faster_rcnn_r18_fpn_demo_jittor.py')


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare_curves = _tool('compare_curves')
export_init_weights = _tool('export_init_weights')


def _scalars(path, losses_by_step, val=None):
    with open(path, 'w') as f:
        for step, (epoch, loss, loss_cls) in losses_by_step.items():
            f.write(json.dumps({'lr': 0.02, 'loss': loss, 'loss_cls': loss_cls, 'epoch': epoch,
                                'iter': step, 'step': step}) + '\n')
        for epoch, mAP in (val or {}).items():
            f.write(json.dumps({'coco/bbox_mAP': mAP, 'step': epoch}) + '\n')
    return str(path)


def test_curves_step_table_epoch_means_and_validation(tmp_path, capsys):
    a = _scalars(tmp_path / 'a.json', {10: (1, 1.0, 0.5), 20: (1, 0.8, 0.4), 30: (2, 0.6, 0.3)},
                 {2: 0.40})
    b = _scalars(tmp_path / 'b.json', {10: (1, 1.1, 0.5), 20: (1, 0.9, 0.4), 30: (2, 0.6, 0.33),
                                       40: (2, 0.5, 0.2)}, {2: 0.42})
    assert compare_curves.main([a, b, '--names', 'mmdet', 'jittor']) == 0
    out = capsys.readouterr().out
    assert 'A = mmdet' in out and 'B = jittor' in out
    assert '    30          0.6000          0.6000          0.3000          0.3300' in out
    assert '    40' not in out  # only steps both runs logged
    assert 'loss e1           0.9000    1.0000    +11.1%' in out  # (1.0+0.8)/2 vs (1.1+0.9)/2
    # means over the common steps only: B's step 40 (epoch 2) is left out
    assert 'loss_cls e2       0.3000    0.3300    +10.0%' in out
    assert 'coco/bbox_mAP        2: 0.400 / 0.420' in out
    assert 'largest per-epoch difference: 11.1% over 3 common logged steps' in out
    assert compare_curves.main([a, b, '--max-epoch-rel', '0.2']) == 0
    assert compare_curves.main([a, b, '--max-epoch-rel', '0.1']) == 1
    assert '11.1% > 10.0%' in capsys.readouterr().err


def test_curves_bad_inputs_exit_2_naming_the_file(tmp_path, capsys):
    good = _scalars(tmp_path / 'a.json', {10: (1, 1.0, 0.5)})
    assert compare_curves.main([good, str(tmp_path / 'missing.json')]) == 2
    assert 'missing.json not found' in capsys.readouterr().err
    broken = tmp_path / 'broken.json'
    broken.write_text('{"loss": 1, "step": 10}\nnot json\n')
    assert compare_curves.main([good, str(broken)]) == 2
    assert 'broken.json:2 is not JSON' in capsys.readouterr().err
    assert compare_curves.main([good, good, '--keys', 'loss_nothing']) == 2
    assert 'none of the requested keys' in capsys.readouterr().err


def test_exported_initial_weights_load_strictly_into_the_jittor_twin(tmp_path, capsys):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    out = tmp_path / 'init' / 'init.pth'
    assert export_init_weights.main([MMDET_DEMO, str(out), '--seed', '3']) == 0
    assert 'tensors of FasterRCNN (seed 3)' in capsys.readouterr().out
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint['meta']['seed'] == 3
    state = checkpoint['state_dict']
    twin = MODELS.build(Config.fromfile(JITTOR_DEMO).model)
    twin.load_state_dict(state, strict=True)
    loaded = twin.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # the same seed gives the same weights again
    again = tmp_path / 'again.pth'
    assert export_init_weights.main([MMDET_DEMO, str(again), '--seed', '3']) == 0
    assert all(torch.equal(v, torch.load(again, weights_only=True)['state_dict'][k])
               for k, v in state.items())


def test_export_missing_config_exits_2(tmp_path, capsys):
    assert export_init_weights.main(['configs/nope.py', str(tmp_path / 'x.pth')]) == 2
    assert 'configs/nope.py not found' in capsys.readouterr().err


def test_curves_plot_draws_every_shared_loss_and_the_validation_map(tmp_path, capsys):
    a = _scalars(tmp_path / 'a.json', {10: (1, 1.0, 0.5), 20: (1, 0.8, 0.4)}, {1: 0.40, 2: 0.5})
    b = _scalars(tmp_path / 'b.json', {10: (1, 1.1, 0.5), 30: (2, 0.6, 0.33)}, {1: 0.42})
    out = tmp_path / 'curves.png'
    assert compare_curves.main([a, b, '--names', 'mmdet', 'jittor', '--keys', 'loss', 'loss_cls',
                                'loss_nothing', '--plot', str(out)]) == 0
    assert f'plot: {out}' in capsys.readouterr().out
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 5000
    series = compare_curves.plot_curves(a, b, ['loss', 'loss_cls', 'loss_nothing'],
                                        ['mmdet', 'jittor'], str(tmp_path / 'again.png'))
    assert sorted(series) == ['coco/bbox_mAP/jittor', 'coco/bbox_mAP/mmdet', 'loss/jittor',
                              'loss/mmdet', 'loss_cls/jittor', 'loss_cls/mmdet']
    assert series['loss/mmdet'] == ([10, 20], [1.0, 0.8])  # every step each run logged
    assert series['loss_cls/jittor'] == ([10, 30], [0.5, 0.33])
    assert series['coco/bbox_mAP/mmdet'] == ([1, 2], [0.40, 0.5])
