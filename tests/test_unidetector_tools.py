"""UniDetector's tools (issue 11): tools/generate_clip_embeddings.py (tiny random-weight open_clip
model), the proposal files of tools/generate_proposals.py and their checked datasets, LVIS
evaluation through mmdet's LVISMetric, and tools/unidetector_pipeline.py run tiny end to end."""
import json
import os
import os.path as osp
import pickle

import numpy as np
import pytest

from tiny_demo import REPO, load_tool

open_clip = pytest.importorskip('open_clip')
emb_tool = load_tool('generate_clip_embeddings')
pipeline = load_tool('unidetector_pipeline')
TINY_CLIP = osp.join(REPO, 'clip_embeddings', 'model_configs', 'demo-tiny-clip.json')


def _names(tmp_path, names=('star', 'traffic_light', 'box')):
    path = tmp_path / 'names.txt'
    path.write_text(''.join(f'{n}\n' for n in names))
    return str(path)


def _embed(tmp_path, *extra, out='e.npy'):
    out = str(tmp_path / out)
    rc = emb_tool.main(['--class-names', _names(tmp_path), '--model', TINY_CLIP,
                        '--random-weights', '--out', out] + list(extra))
    return rc, out


def test_clip_embeddings_layout_prompts_and_resume(tmp_path, capsys):
    rc, out = _embed(tmp_path, '--prompt', 'single', out='single.npy')
    assert rc == 0
    single = np.load(out)
    assert single.shape == (3, 64) and single.dtype == np.float16
    # not normalised (the heads normalise), as the original's files
    assert not np.allclose(np.linalg.norm(single.astype(np.float32), axis=1), 1, atol=1e-2)
    meta = json.load(open(out[:-4] + '.json'))
    assert meta['class_names'] == ['star', 'traffic light', 'box']  # LVIS '_' -> ' '
    assert meta['templates'] == ['a {}']

    # the row of a class is encode_text of its prompt (a direct open_clip computation)
    import torch
    open_clip.add_model_config(TINY_CLIP)
    torch.manual_seed(0)
    model = open_clip.create_model('demo-tiny-clip', pretrained=None).eval()
    tokens = open_clip.get_tokenizer('demo-tiny-clip')(['a star', 'a traffic light', 'a box'])
    with torch.no_grad():
        expected = model.encode_text(tokens).numpy()
    np.testing.assert_allclose(single.astype(np.float32), expected, rtol=2e-3, atol=2e-3)

    rc, out = _embed(tmp_path, '--batch-size', '80')  # the 80-prompt ensemble, a class a batch
    assert rc == 0
    ensemble = np.load(out)
    assert ensemble.shape == (3, 64) and not np.allclose(ensemble, single, atol=1e-2)
    # a finished file with the same settings is not recomputed
    capsys.readouterr()
    assert _embed(tmp_path, '--batch-size', '80')[0] == 0
    assert 'skipping' in capsys.readouterr().out
    # an interrupted run (one class saved in OUT.partial.npz) resumes from there
    key = json.load(open(out[:-4] + '.json'))['key']
    np.savez(out + '.partial.npz', key=np.array(key),
             rows=ensemble[:1].astype(np.float32) + 1)
    os.remove(out)
    assert _embed(tmp_path, '--batch-size', '80')[0] == 0
    assert 'resuming' in capsys.readouterr().out
    resumed = np.load(out)
    np.testing.assert_array_equal(resumed[1:], ensemble[1:])
    np.testing.assert_allclose(resumed[0].astype(np.float32),
                               ensemble[0].astype(np.float32) + 1, atol=1e-2)
    assert not osp.exists(out + '.partial.npz')


def test_clip_embeddings_bad_input(tmp_path, capsys):
    out = str(tmp_path / 'x.npy')
    with pytest.raises(SystemExit):  # no weights and no --random-weights: refused
        emb_tool.main(['--class-names', _names(tmp_path), '--out', out])
    assert '--random-weights' in capsys.readouterr().err
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n  \n')
    assert emb_tool.main(['--class-names', _names(tmp_path), '--model', TINY_CLIP,
                          '--random-weights', '--prompt-file', str(empty), '--out', out]) == 2
    assert f'--prompt-file file {empty} is empty' in capsys.readouterr().err
    assert emb_tool.main(['--class-names', str(empty), '--model', TINY_CLIP,
                          '--random-weights', '--out', out]) == 2
    assert 'is empty' in capsys.readouterr().err
    assert emb_tool.main(['--class-names', _names(tmp_path), '--model', 'RN5O',
                          '--random-weights', '--out', out]) == 2
    assert "--model 'RN5O' is not an open_clip architecture" in capsys.readouterr().err


def test_shipped_class_lists_are_mmdets():
    import mmdet.datasets as ds
    for name, cls, num in (('coco', 'CocoDataset', 80), ('objects365', 'Objects365V2Dataset', 365),
                           ('lvis_v1', 'LVISV1Dataset', 1203),
                           ('lvis_v0.5', 'LVISV05Dataset', 1230)):
        lines = open(osp.join(REPO, 'clip_embeddings', f'{name}.txt')).read().splitlines()
        assert len(lines) == num and tuple(lines) == getattr(ds, cls).METAINFO['classes']


def test_proposal_file_checks():
    from jt_mm_plugins.datasets.proposals import match_proposals
    from jt_mm_plugins.utils.errors import InputError
    data = [dict(img_path=f'/d/train/{i:06d}.png', img_id=i) for i in (1, 2)]
    entry = lambda i: dict(bboxes=np.zeros((1, 4), np.float32), scores=np.ones(1), img_id=i)  # noqa
    good = {'train/000001.png': entry(1), 'train/000002.png': entry(2)}
    match_proposals(good, [dict(d) for d in data], 'p.pkl', 'a.json', 'DS')
    with pytest.raises(InputError, match=r"p.pkl has no proposals for 1 of the 2 images of "
                       r"ann_file a.json, e.g. \['train/000002.png'\]"):
        match_proposals({'train/000001.png': entry(1)}, [dict(d) for d in data], 'p.pkl',
                        'a.json', 'DS')
    with pytest.raises(InputError, match='none of the 2 images.*made for another dataset'):
        match_proposals({'val/000001.png': entry(1)}, [dict(d) for d in data], 'p.pkl',
                        'a.json', 'DS')
    with pytest.raises(InputError, match=r"made for another dataset: 1 images have other ids "
                       r"than in ann_file a.json, e.g. 'train/000002.png' is img_id 7"):
        match_proposals({'train/000001.png': entry(1), 'train/000002.png': entry(7)},
                        [dict(d) for d in data], 'p.pkl', 'a.json', 'DS')


def test_raw_results_per_class(tmp_path):
    import torch
    dump = [dict(pred_instances=dict(bboxes=torch.tensor([[0., 0, 4, 4], [1, 1, 5, 5]]),
                                     scores=torch.tensor([.9, .2]),
                                     labels=torch.tensor([2, 0])))]
    path = tmp_path / 'raw.pkl'
    path.write_bytes(pickle.dumps(dump))
    out = pipeline.raw_results_per_class(str(path), 3, str(tmp_path / 'per_class.pkl'))
    per_class = pickle.load(open(out, 'rb'))
    assert [len(c) for c in per_class[0]] == [1, 0, 1]
    np.testing.assert_allclose(per_class[0][2], [[0, 0, 4, 4, .9]], rtol=1e-6)
    with pytest.raises(pipeline.PipelineError, match='label 2, but num_classes is 2'):
        pipeline.raw_results_per_class(str(path), 2, str(tmp_path / 'x.pkl'))


def test_lvis_metric_on_a_written_lvis_file(tmp_path):
    pytest.importorskip('lvis')
    import torch
    from mmdet.evaluation import LVISMetric

    import jt_mm_plugins.datasets  # noqa: F401 (lvis 0.5.3 with numpy >= 1.24)
    coco = dict(
        images=[dict(id=1, file_name='1.png', width=64, height=64),
                dict(id=2, file_name='2.png', width=64, height=64)],
        categories=[dict(id=1, name='a'), dict(id=2, name='b'), dict(id=3, name='c')],
        annotations=[dict(id=1, image_id=1, category_id=1, bbox=[2, 2, 20, 20], area=400),
                     dict(id=2, image_id=1, category_id=3, bbox=[30, 30, 10, 20], area=200),
                     dict(id=3, image_id=2, category_id=2, bbox=[5, 5, 30, 30], area=900)])
    path = pipeline.write_lvis_annotations(coco, ('c', 'a'), [coco], str(tmp_path / 'l.json'))
    lvis = json.load(open(path))
    assert [(c['id'], c['name'], c['frequency'], c['image_count']) for c in lvis['categories']] \
        == [(1, 'c', 'r', 1), (2, 'a', 'r', 1)]
    assert len(lvis['annotations']) == 2 and lvis['images'][0]['neg_category_ids'] == []
    metric = LVISMetric(ann_file=path, metric='bbox')
    metric.dataset_meta = dict(classes=('c', 'a'))
    # the gt boxes as detections (labels: 0 = c, 1 = a) give AP 1; shifted ones less
    for shift, expected in ((0, 1.0), (6, None)):
        samples = [dict(img_id=1, ori_shape=(64, 64), pred_instances=dict(
            bboxes=torch.tensor([[30. + shift, 30, 40, 50], [2, 2, 22, 22]]),
            scores=torch.tensor([.9, .8]), labels=torch.tensor([0, 1]))),
            dict(img_id=2, ori_shape=(64, 64), pred_instances=dict(bboxes=torch.zeros((0, 4)),
                                               scores=torch.zeros(0),
                                               labels=torch.zeros(0, dtype=torch.long)))]
        metric.results = []
        metric.process({}, samples)
        ap = metric.compute_metrics(metric.results)['bbox_AP']
        if expected is None:
            assert 0 <= ap < 1
        else:
            assert ap == pytest.approx(expected)


def test_pipeline_tiny(tmp_path, capsys):
    pytest.importorskip('lvis')
    work = tmp_path / 'pipe'
    assert pipeline.main(['--tiny', '--work-dir', str(work)]) == 0
    summary = json.load(open(work / 'summary.json'))
    ar = summary['stage1_recall']['AR@20']
    assert set(ar) == {'seen', 'held_out'} and all(0 <= v <= 1 for v in ar.values())
    assert summary['stage1_recall']['num_gt']['held_out'] > 0
    for name in ('raw', 'calibrated'):
        assert -1 <= summary[f'stage2_lvis_{name}']['lvis/bbox_AP'] <= 1
    # seven shapes, the open-world split's files
    cats = json.load(open(work / 'data' / 'annotations' / 'instances_val.json'))['categories']
    assert [c['name'] for c in cats] == ['box', 'circle', 'star', 'superstar', 'eff', 'octagon',
                                         'diamond']
    a = json.load(open(work / 'annotations' / 'train_A.json'))
    assert [c['name'] for c in a['categories']] == list(pipeline.SPLIT['A'])
    # the proposal files: LoadProposals's format, sorted by score, with img_id
    props = pickle.load(open(work / 'proposals' / 'val.pkl', 'rb'))
    assert sorted(props) == ['val/000001.png', 'val/000002.png']
    for key, entry in props.items():
        assert entry['bboxes'].dtype == np.float32 and entry['bboxes'].shape[1] == 4
        assert len(entry['scores']) <= 20 and (np.diff(entry['scores']) <= 0).all()
        assert entry['img_id'] == int(key[4:10])
    from mmdet.datasets.transforms import LoadProposals
    loaded = LoadProposals(num_max_proposals=5).transform(dict(proposals=entry))
    assert loaded['proposals'].shape[1] == 4
    # the calibration prior: per image, per seen class
    per_class = pickle.load(open(work / 'inference_raw' / 'raw_lvis_results.pkl', 'rb'))
    assert len(per_class) == 2 and all(len(p) == len(pipeline.SEEN) for p in per_class)
    # the stage-2 step's parts (the finished steps before it are skipped)
    times = pipeline.run(pipeline.parse_args(['--tiny', '--work-dir', str(work),
                                              '--profile-stage2', '1']))
    for part in pipeline.STAGE2_PARTS:
        assert times[f'forward {part}'] > 0 and times[f'backward {part}'] > 0
    assert sum(times[f'forward {p}'] for p in pipeline.STAGE2_PARTS) < times['forward (all)']
    backward = [v for k, v in times.items() if k.startswith('backward ') and '(all)' not in k]
    assert sum(backward) == pytest.approx(times['backward (all)'], abs=1e-6)
    # a finished stage 2 of other settings is not taken for this run's
    assert pipeline.main(['--tiny', '--work-dir', str(work), '--stage2-lr', '0.001']) == 2
    assert 'pipeline_config.py differs' in capsys.readouterr().err
