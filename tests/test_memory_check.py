"""tools/memory_check.py: RSS per training iteration, growth after warm-up, exit codes."""
import json
import os.path as osp

import pytest
from tiny_demo import generate_tiny_data, load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


memory_check = load_tool('memory_check')


def test_growth_is_measured_from_the_end_of_warm_up():
    report = memory_check.growth_report([100, 300, 400, 404, 402, 408], warmup=3)
    assert report['warmup_end_mb'] == 400 and report['last_mb'] == 408 and report['max_mb'] == 408
    assert report['growth'] == pytest.approx(0.02) and report['max_growth'] == pytest.approx(0.02)
    with pytest.raises(ValueError, match='--warmup'):
        memory_check.growth_report([1, 2], warmup=2)


def test_the_config_warm_up_is_kept_and_epoch_schedules_dropped():
    warm_up = dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50)
    steps = dict(type='MultiStepLR', begin=0, end=4, by_epoch=True, milestones=[3])
    assert memory_check.iteration_schedulers([warm_up, steps]) == [warm_up]
    assert memory_check.iteration_schedulers(steps) == []  # mmengine's by_epoch default is True
    assert memory_check.iteration_schedulers(None) == []


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert memory_check.main([str(tmp_path / 'missing.py'), '--iters', '4', '--warmup', '1']) == 2
    assert 'not found' in capsys.readouterr().err
    assert memory_check.main(['x.py', '--iters', '4', '--warmup', '4']) == 2


def test_a_short_pure_jittor_run_samples_every_iteration(tmp_path, capsys):
    data_root = generate_tiny_data(tmp_path / 'shapes', num_val=1)
    out = tmp_path / 'mem.json'
    config = osp.join(REPO, 'configs', 'demo', 'faster_rcnn_r18_fpn_demo_jittor.py')
    code = memory_check.main([config, '--iters', '4', '--warmup', '2', '--work-dir',
                              str(tmp_path / 'work'), '--json', str(out), '--max-growth', '10',
                              '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
                              'train_dataloader.batch_size=2'])
    assert code == 0
    result = json.loads(out.read_text())
    assert result['iters'] == 4 and len(result['rss_mb']) == 4 and result['warmup_end_mb'] > 100
    assert 'memory_check:' in capsys.readouterr().out
