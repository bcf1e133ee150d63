"""scripts/demo.sh (what `make demo` runs): the order of the steps and the arguments it passes,
with a recorder standing in for Python (the real tools are tested in test_tools.py)."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECORDER = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [[ "$1" == tools/train.py ]]; then
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == --work-dir ]]; then mkdir -p "$2"; echo "$2/epoch_4.pth" > "$2/last_checkpoint"; fi
        shift
    done
fi
if [[ "$1" == tools/test.py ]]; then echo "coco/bbox_mAP: 0.5000  coco/bbox_mAP_50: 0.9000"; fi
'''


def _run_demo(tmp_path, **env):
    recorder = tmp_path / 'python'
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    calls = tmp_path / 'calls.txt'
    full_env = dict(os.environ, DEMO_PYTHON=str(recorder), CALLS=str(calls),
                    DEMO_WORK_DIR=str(tmp_path / 'wd'), **env)
    result = subprocess.run(['bash', os.path.join(REPO, 'scripts', 'demo.sh')], cwd=REPO,
                            env=full_env, capture_output=True, text=True, timeout=60)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_generate_train_then_test_with_cfg_options(tmp_path):
    config = 'configs/demo/faster_rcnn_r18_fpn_demo_jittor.py'
    result, calls = _run_demo(tmp_path, DEMO_CONFIG=config,
                              DEMO_CFG_OPTIONS='randomness.seed=1 train_cfg.max_epochs=6')
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in calls] == ['tools/generate_demo_dataset.py', 'tools/train.py',
                                             'tools/test.py']
    assert calls[1] == (f'tools/train.py {config} --work-dir {tmp_path}/wd --cfg-options '
                        'randomness.seed=1 train_cfg.max_epochs=6')
    assert calls[2].startswith(f'tools/test.py {config} {tmp_path}/wd/epoch_4.pth ')
    assert '--show-dir vis' in calls[2] and f'--out {tmp_path}/wd/predictions.pkl' in calls[2]
    assert 'demo: bbox metrics: coco/bbox_mAP: 0.5000' in result.stdout


def test_without_cfg_options_train_gets_none(tmp_path):
    result, calls = _run_demo(tmp_path, DEMO_CONFIG='configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py')
    assert result.returncode == 0, result.stderr
    assert '--cfg-options' not in calls[1]
    assert calls[0] == 'tools/generate_demo_dataset.py --out-dir data/demo_shapes'


def test_data_args_reach_the_generator(tmp_path):
    result, calls = _run_demo(tmp_path, DEMO_CONFIG='configs/demo/detr_r18_demo_jittor.py',
                              DEMO_DATA_ARGS='--out-dir data/demo_shapes_2k --num-train 2000')
    assert result.returncode == 0, result.stderr
    assert calls[0] == ('tools/generate_demo_dataset.py --out-dir data/demo_shapes_2k '
                        '--num-train 2000')


@pytest.mark.parametrize('config, message', [
    ('configs/demo/no_such_config.py', 'demo: config configs/demo/no_such_config.py not found'),
    ('', 'set DEMO_CONFIG'),
])
def test_missing_config_is_a_clear_error(tmp_path, config, message):
    result, calls = _run_demo(tmp_path, DEMO_CONFIG=config)
    assert result.returncode != 0 and message in result.stderr and calls == []
