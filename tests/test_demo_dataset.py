"""tools/generate_demo_dataset.py: plain, valid, reproducible COCO from kwcoco, offline."""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import socket

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = ['--num-train', '3', '--num-val', '2', '--image-size', '64']


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'generate_demo_dataset', osp.join(REPO, 'tools', 'generate_demo_dataset.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_tool()


def _digest_tree(root):
    """sha256 of every file under root, keyed by relative path."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                digests[osp.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digests


@pytest.fixture(scope='module')
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    assert gen.main(['--out-dir', str(out)] + TINY) == 0
    return out


def test_layout_and_plain_coco(tiny_dataset):
    out = tiny_dataset
    # Only the COCO layout remains: kwcoco's temporary bundle is gone.
    assert sorted(os.listdir(out)) == ['annotations', 'train', 'val']
    assert sorted(os.listdir(out / 'annotations')) == ['instances_train.json', 'instances_val.json']
    for split, num in (('train', 3), ('val', 2)):
        with open(out / 'annotations' / f'instances_{split}.json') as f:
            coco = json.load(f)
        assert [c['id'] for c in coco['categories']] == [1, 2, 3]
        assert [c['name'] for c in coco['categories']] == ['star', 'superstar', 'eff']
        assert len(coco['images']) == num
        assert sorted(os.listdir(out / split)) == sorted(im['file_name'] for im in coco['images'])
        for img in coco['images']:
            assert not osp.isabs(img['file_name']) and '/' not in img['file_name']
            assert (img['width'], img['height']) == (64, 64)
        assert len(coco['annotations']) >= num  # kwcoco places ~9 shapes per image
        image_ids = {im['id'] for im in coco['images']}
        for ann in coco['annotations']:
            assert ann['category_id'] in (1, 2, 3)
            assert ann['image_id'] in image_ids
            assert ann['iscrowd'] == 0
            assert len(ann['bbox']) == 4 and all(isinstance(v, float) for v in ann['bbox'])
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0 and 0 <= x and x + w <= 64 and 0 <= y and y + h <= 64
            assert ann['area'] == pytest.approx(w * h)
            for polygon in ann.get('segmentation', []):
                assert isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
        ann_ids = [a['id'] for a in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)


def test_pycocotools_and_mmdet_load_it(tiny_dataset):
    from pycocotools.coco import COCO
    coco = COCO(str(tiny_dataset / 'annotations' / 'instances_val.json'))
    assert len(coco.getImgIds()) == 2
    for ann in coco.loadAnns(coco.getAnnIds()):
        if 'segmentation' in ann:
            assert coco.annToMask(ann).shape == (64, 64)

    from mmdet.datasets import CocoDataset
    dataset = CocoDataset(
        data_root=str(tiny_dataset), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=('star', 'superstar', 'eff')),
        pipeline=[], filter_cfg=None)
    assert len(dataset) == 3
    info = dataset[0]
    assert osp.isfile(info['img_path'])
    assert info['instances'] and all(0 <= inst['bbox_label'] < 3 for inst in info['instances'])


def test_second_run_skips_and_keeps_files(tiny_dataset, capsys):
    before = _digest_tree(tiny_dataset)
    mtime = os.stat(tiny_dataset / 'annotations' / 'instances_train.json').st_mtime_ns
    assert gen.main(['--out-dir', str(tiny_dataset)] + TINY) == 0
    assert 'present and complete' in capsys.readouterr().out
    assert _digest_tree(tiny_dataset) == before
    assert os.stat(tiny_dataset / 'annotations' / 'instances_train.json').st_mtime_ns == mtime


def test_other_settings_refused_without_force(tmp_path, capsys):
    out = tmp_path / 'shapes'
    assert gen.main(['--out-dir', str(out), '--num-train', '1', '--num-val', '1',
                     '--image-size', '64']) == 0
    assert gen.main(['--out-dir', str(out), '--num-train', '2', '--num-val', '1',
                     '--image-size', '64']) == 2
    assert '--force' in capsys.readouterr().err
    assert len(os.listdir(out / 'train')) == 1
    assert gen.main(['--out-dir', str(out), '--num-train', '2', '--num-val', '1',
                     '--image-size', '64', '--force']) == 0
    assert len(os.listdir(out / 'train')) == 2


def test_incomplete_split_is_regenerated(tmp_path):
    out = tmp_path / 'shapes'
    args = ['--out-dir', str(out), '--num-train', '1', '--num-val', '1', '--image-size', '64']
    assert gen.main(args) == 0
    os.remove(out / 'annotations' / 'instances_val.json')  # as after an interrupted run
    assert gen.main(args) == 0
    assert osp.isfile(out / 'annotations' / 'instances_val.json')


def test_same_seed_same_bytes_other_seed_differs(tiny_dataset, tmp_path):
    again = tmp_path / 'again'
    assert gen.main(['--out-dir', str(again)] + TINY) == 0
    assert _digest_tree(again) == _digest_tree(tiny_dataset)
    other = tmp_path / 'other'
    assert gen.main(['--out-dir', str(other), '--seed', '5'] + TINY) == 0
    assert _digest_tree(other)['train/000001.png'] != _digest_tree(tiny_dataset)['train/000001.png']
    # train and val splits differ (seed and seed + 1)
    digests = _digest_tree(tiny_dataset)
    assert digests['train/000001.png'] != digests['val/000001.png']


def test_offline_and_nothing_outside_out_dir(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError('network access attempted')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    cache = tmp_path / 'cache'
    monkeypatch.setenv('XDG_CACHE_HOME', str(cache))
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    out = tmp_path / 'shapes'
    assert gen.main(['--out-dir', str(out), '--num-train', '1', '--num-val', '1',
                     '--image-size', '64']) == 0
    assert not cache.exists() and not (tmp_path / 'home').exists()
    assert sorted(os.listdir(tmp_path)) == ['shapes']


def test_global_numpy_random_state_is_restored(tmp_path):
    import numpy as np
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    assert gen.main(['--out-dir', str(tmp_path / 's'), '--num-train', '1', '--num-val', '1',
                     '--image-size', '64']) == 0
    assert np.random.rand() == expected


@pytest.mark.parametrize('bad', [['--num-train', '0'], ['--image-size', '16']])
def test_bad_arguments_are_rejected(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        gen.main(['--out-dir', str(tmp_path)] + bad)
    assert exc.value.code == 2
    assert bad[0] in capsys.readouterr().err
