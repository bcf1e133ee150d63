"""UniDetector's CLIP box heads (Jittor) against direct torch computations of the formulas in
../shared/specs/seed-systems.md section 1.3-1.4, tiny shapes (in_channels 32, 4x4 RoI features,
16-d embeddings, 4 heads).

* forward: ``100 * normalize(attnpool(x)) . normalize([E^T | 0])`` with open_clip's
  AttentionPool2d (same weights); background logit exactly 0;
* ``BBoxHeadCLIP`` loss: federated sigmoid BCE over the drawn classes / #RoIs * loss_weight (the
  draw is recorded and checked: present classes in, zero-image_count classes out, its size);
* ``BBoxHeadCLIPPartitioned``: three images of two datasets in one batch, each image's BCE in its
  own label space / its #RoIs, averaged over images (no loss_weight); gradients w.r.t. the logits;
* ``BBoxHeadCLIPInference``: calibration with a class of zero raw detections, times the proposal
  score; the bad-input errors.
Tolerances: values 1e-5 relative, gradients 1e-3 relative (no float32 decision is involved: the
draw is recorded and replayed).
Mixed mode: mmdet's MetaStandardRoIHead + CLIPResLayer + the partitioned head, dataset_id set by
the AddDatasetId transform, trains (gradients reach layer4 and the attention pool) and predicts
with the inference head.
"""
import json
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment.unidetector_reference import \
    federated_sigmoid_loss as torch_fed_loss  # the PyTorch twin's formula
from jt_mm_plugins.bridge import call_jittor
from jt_mm_plugins.models.roi_heads import bbox_head_clip
from jt_mm_plugins.models.roi_heads.bbox_head_clip import BBoxHeadCLIP, BBoxHeadCLIPInference
from jt_mm_plugins.models.roi_heads.bbox_head_clip_partitioned import BBoxHeadCLIPPartitioned
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

modified_resnet = pytest.importorskip('open_clip.modified_resnet')

IN_CH, ROI, DIM, HEADS = 32, 4, 16, 4
COMMON = dict(in_channels=IN_CH, roi_feat_size=ROI, embed_dim=DIM, num_heads=HEADS,
              reg_class_agnostic=True, loss_bbox=dict(type='L1Loss', loss_weight=1.0))


def save_embeddings(tmp_path, name, num, seed):
    path = str(tmp_path / f'{name}.npy')
    np.save(path, np.random.RandomState(seed).randn(num, DIM).astype(np.float16))
    return path


def torch_classifier(path):
    emb = torch.from_numpy(np.load(path).astype(np.float32))
    weight = torch.cat([emb.t(), torch.zeros(DIM, 1)], 1)
    return F.normalize(weight, p=2, dim=0)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture
def recorded_draws(monkeypatch):
    draws = []
    original = bbox_head_clip.federated_classes

    def record(*args, **kwargs):
        draws.append(original(*args, **kwargs))
        return draws[-1]
    monkeypatch.setattr(bbox_head_clip, 'federated_classes', record)
    from jt_mm_plugins.models.roi_heads import bbox_head_clip_partitioned
    monkeypatch.setattr(bbox_head_clip_partitioned, 'federated_classes', record)
    return draws


def test_clip_head_forward_and_loss_match_the_formulas(tmp_path, recorded_draws):
    num_classes = 12
    path = save_embeddings(tmp_path, 'coco', num_classes, 0)
    freq = str(tmp_path / 'cat_info.json')
    counts = [0 if c in (3, 7) else 5 for c in range(num_classes)]
    with open(freq, 'w') as f:  # ids out of order: sorted by id
        json.dump([dict(id=c + 1, image_count=counts[c]) for c in reversed(range(num_classes))], f)
    head = BBoxHeadCLIP(zeroshot_path=path, cat_freq_path=freq, num_classes=num_classes,
                        fed_loss_num_cat=8, loss_cls=dict(type='CrossEntropyLoss',
                                                          loss_weight=0.5), **COMMON)
    pool = modified_resnet.AttentionPool2d(ROI, IN_CH, HEADS, DIM)
    with torch.no_grad():
        for name, p in pool.named_parameters():
            p.copy_(torch.from_numpy(dict(head.attnpool.named_parameters())[name].numpy()))
    x = np.random.RandomState(1).randn(6, IN_CH, ROI, ROI).astype(np.float32)
    cls_score, bbox_pred = head(jt.array(x))
    with torch.no_grad():
        feat = pool(torch.from_numpy(x))
        ref_logits = 100 * F.normalize(feat, dim=1) @ torch_classifier(path)
    assert tuple(cls_score.shape) == (6, num_classes + 1) and tuple(bbox_pred.shape) == (6, 4)
    assert np.all(cls_score.numpy()[:, -1] == 0)
    assert rel(cls_score.numpy(), ref_logits.numpy()) < 1e-5

    labels = np.array([2, 5, num_classes, num_classes, 2, 9])
    logits_t = ref_logits.clone().requires_grad_(True)

    def jittor_loss(logits):
        return head.loss(logits, None, None, jt.array(labels.astype(np.int32)), None, None,
                         None)['loss_cls']
    got = call_jittor(jittor_loss, (logits_t, ))
    classes = recorded_draws[-1]
    assert len(classes) == 8 - 1  # the background label counts towards fed_loss_num_cat
    assert {2, 5, 9} <= set(classes) and not {3, 7} & set(classes)
    want = 0.5 * torch_fed_loss(logits_t, torch.from_numpy(labels), torch.from_numpy(classes),
                                num_classes)
    assert rel(got.detach().numpy(), want.detach().numpy()) < 1e-5
    g_got, = torch.autograd.grad(got.sum(), logits_t)
    g_want, = torch.autograd.grad(want, logits_t)
    assert rel(g_got.numpy(), g_want.numpy()) < 1e-3


def sampling_result(labels, num_neg, dataset_id=None):
    pos = len(labels)
    res = SimpleNamespace(pos_priors=jt.array(np.tile([[0., 0., 8., 8.]], (pos, 1)).astype(
                              np.float32)).reshape(pos, 4),
                          neg_priors=jt.zeros((num_neg, 4)),
                          pos_gt_bboxes=jt.array(np.tile([[1., 1., 9., 9.]], (pos, 1)).astype(
                              np.float32)).reshape(pos, 4),
                          pos_gt_labels=jt.array(np.array(labels, np.int32)))
    if dataset_id is not None:
        res.img_meta = dict(dataset_id=dataset_id)
    return res


def test_partitioned_loss_matches_the_formula(tmp_path, recorded_draws):
    sizes = (4, 7)
    paths = [save_embeddings(tmp_path, f'd{i}', n, i) for i, n in enumerate(sizes)]
    head = BBoxHeadCLIPPartitioned(zeroshot_path=paths, cat_freq_path=[None, None],
                                   num_classes=7, fed_loss_num_cat=3, **COMMON)
    head.train()
    # three images of two datasets, one of them with no positive
    results = [sampling_result([6, 2], 2, 1), sampling_result([3], 3, 0),
               sampling_result([], 2, 1)]
    num_rois = 2 + 2 + 1 + 3 + 0 + 2
    x = jt.array(np.random.RandomState(2).randn(num_rois, IN_CH, ROI, ROI).astype(np.float32))
    cls_scores, bbox_pred = head(x)
    assert [tuple(s.shape) for s in cls_scores] == [(num_rois, 5), (num_rois, 8)]
    cfg = dict(pos_weight=-1)
    logits_t = [torch.from_numpy(s.numpy()).requires_grad_(True) for s in cls_scores]

    def jittor_loss(scores):
        return head.loss_and_target(scores, bbox_pred, None, results, cfg)['loss_bbox']['loss_cls']
    got = call_jittor(jittor_loss, (logits_t, ))
    draws = recorded_draws[-3:]
    # per image: its rows, its dataset, its labels in its own label space (background = C_d)
    images = [(slice(0, 4), 1, [6, 2, 7, 7]), (slice(4, 8), 0, [3, 4, 4, 4]),
              (slice(8, 10), 1, [7, 7])]
    want = 0
    for (rows, dataset_id, labels), classes in zip(images, draws):
        present = {c for c in labels if c < sizes[dataset_id]}
        assert present <= set(classes) and max(classes) < sizes[dataset_id]
        assert len(classes) == min(3, sizes[dataset_id] + 1) - (len(set(labels)) - len(present))
        want = want + torch_fed_loss(logits_t[dataset_id][rows], torch.tensor(labels),
                                     torch.from_numpy(classes), sizes[dataset_id])
    want = want / 3
    assert rel(got.detach().numpy(), want.detach().numpy()) < 1e-5
    g_got = torch.autograd.grad(got.sum(), logits_t)
    g_want = torch.autograd.grad(want, logits_t)
    for a, b in zip(g_got, g_want):
        assert rel(a.numpy(), b.numpy()) < 1e-3

    with pytest.raises(KeyError, match="image 1 has no 'dataset_id'"):
        head.loss_and_target(cls_scores, bbox_pred, None,
                             [results[0], sampling_result([1], 1)], cfg)
    with pytest.raises(InputError, match='dataset_id 2, but there are 2 embeddings'):
        head.loss_and_target(cls_scores, bbox_pred, None, [sampling_result([1], 1, 2)], cfg)
    with pytest.raises(InputError, match=r'image 0 \(dataset_id 0\) has labels up to 5'):
        head.loss_and_target(cls_scores, bbox_pred, None, [sampling_result([5], 1, 0)], cfg)
    head.eval()  # test time: dataset test_dataset_id (0) only
    assert tuple(head(x)[0].shape) == (num_rois, 5)


def test_embedding_files_are_checked(tmp_path):
    path = save_embeddings(tmp_path, 'e', 5, 0)
    with pytest.raises(InputError, match=r'e.npy holds 5 class embeddings but num_classes is 6'):
        BBoxHeadCLIP(zeroshot_path=path, num_classes=6, **COMMON)
    with pytest.raises(FileNotFoundError, match='zeroshot_path file /nowhere.npy'):
        BBoxHeadCLIP(zeroshot_path='/nowhere.npy', num_classes=6, **COMMON)
    with pytest.raises(InputError, match='num_classes 6 must be the largest'):
        BBoxHeadCLIPPartitioned(zeroshot_path=[path], cat_freq_path=[None], num_classes=6,
                                **COMMON)
    with pytest.raises(InputError, match='zeroshot_path entries but 2 cat_freq_path'):
        BBoxHeadCLIPPartitioned(zeroshot_path=[path], cat_freq_path=[None, None], num_classes=5,
                                **COMMON)


def test_calibrated_inference_score_with_a_zero_count_class(tmp_path):
    num_classes = 4
    path = save_embeddings(tmp_path, 'lvis', num_classes, 3)
    raw = str(tmp_path / 'raw.pkl')
    per_image = [[np.zeros((n, 5)) for n in (3, 0, 1, 2)], [np.zeros((n, 5)) for n in (1, 0, 0, 6)]]
    with open(raw, 'wb') as f:
        pickle.dump(per_image, f)
    head = BBoxHeadCLIPInference(beta=0.3, withcalibration=True, resultfile=raw, gamma=0.6,
                                 zeroshot_path=path, num_classes=num_classes, **COMMON)
    logits = np.random.RandomState(4).randn(5, num_classes + 1).astype(np.float32) * 3
    proposal = np.random.RandomState(5).uniform(0.05, 1, 5).astype(np.float32)
    got = head.cls_probabilities(jt.array(logits), jt.zeros((5, 5)),
                                 dict(proposal_scores=jt.array(proposal))).numpy()
    s = torch.sigmoid(torch.from_numpy(logits[:, :num_classes]).double())
    counts = torch.tensor([4., 0., 1., 8.]).clamp(min=1)  # class 1: no raw detection
    w = counts**-0.6
    s = s * w / w.mean()
    want = s**0.3 * torch.from_numpy(proposal).double()[:, None]**0.7
    assert np.isfinite(got).all() and np.all(got[:, -1] == 0)
    assert rel(got[:, :num_classes], want.numpy()) < 1e-5

    with pytest.raises(InputError, match=r'raw.pkl has 4 classes for image 0, but num_classes is 5'):
        BBoxHeadCLIPInference(beta=0.3, withcalibration=True, resultfile=raw, gamma=0.6,
                              num_classes=5, **COMMON)
    with pytest.raises(KeyError, match="proposal scores in img_meta"):
        head.cls_probabilities(jt.array(logits), jt.zeros((5, 5)), dict())


def test_mixed_mode_training_reaches_dataset_ids_and_inference_uses_proposal_scores(tmp_path):
    """mmdet's MetaStandardRoIHead with the bridged CLIPResLayer (width 2: 32 -> 64 channels) and
    partitioned head; dataset_id comes from the AddDatasetId transform on packed samples."""
    pytest.importorskip('mmcv.ops')
    from mmdet.registry import MODELS, TRANSFORMS
    from mmdet.structures import DetDataSample
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData
    paths = [save_embeddings(tmp_path, f'd{i}', n, i) for i, n in enumerate((3, 5))]
    head_args = dict(COMMON, in_channels=64)
    roi_head = dict(
        type='MetaStandardRoIHead',
        shared_head=dict(type='CLIPResLayer', layers=[1, 1, 1, 1], width=2),
        bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=32, featmap_strides=[16],
                                roi_layer=dict(type='RoIAlign', output_size=2 * ROI,
                                               sampling_ratio=0)),
        bbox_head=dict(type='BBoxHeadCLIPPartitioned', zeroshot_path=paths,
                       cat_freq_path=[None, None], num_classes=5, **head_args),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                                     min_pos_iou=0.5, ignore_iof_thr=-1),
                       sampler=dict(type='RandomSampler', num=16, pos_fraction=0.25),
                       pos_weight=-1),
        test_cfg=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))
    model = MODELS.build(ConfigDict(roi_head))
    model.train()
    rng = np.random.RandomState(0)
    feats = (torch.from_numpy(rng.randn(2, 32, 4, 4).astype(np.float32)).requires_grad_(True), )
    samples, proposals = [], []
    for dataset_id, labels in ((1, [4, 1]), (0, [2])):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), scale_factor=(1., 1.)))
        gts = torch.tensor([[4., 4., 30., 30.], [20., 10., 60., 50.]][:len(labels)])
        sample.gt_instances = InstanceData(bboxes=gts, labels=torch.tensor(labels))
        sample = TRANSFORMS.build(dict(type='AddDatasetId', dataset_id=dataset_id))(
            dict(data_samples=sample))['data_samples']
        samples.append(sample)
        boxes = torch.cat([gts + 1, torch.tensor([[0., 0., 63., 63.], [30., 30., 50., 62.]])])
        proposals.append(InstanceData(bboxes=boxes, scores=torch.full((len(boxes), ), 0.25)))
    seen = []
    jt_head = model.bbox_head.jittor_module
    original = jt_head.dataset_ids
    jt_head.dataset_ids = lambda results: seen.append(original(results)) or seen[-1]
    losses = model.loss(feats, [p.clone() for p in proposals], samples)
    assert seen == [[1, 0]]
    assert sorted(losses) == ['loss_bbox', 'loss_cls'] and float(losses['loss_cls'].detach()) > 0
    (losses['loss_cls'] + losses['loss_bbox']).backward()
    assert feats[0].grad.abs().max() > 0
    for name in ('shared_head.layer4.0.conv1.weight', 'bbox_head.attnpool.q_proj.weight'):
        assert model.get_submodule(name.rsplit('.', 1)[0]).weight.grad.abs().max() > 0, name

    roi_head['bbox_head'] = dict(type='BBoxHeadCLIPInference', beta=0.3, zeroshot_path=paths[1],
                                 num_classes=5, **head_args)
    inference = MODELS.build(ConfigDict(roi_head)).eval()
    with torch.no_grad():
        results = inference.predict(feats, proposals, samples, rescale=False)
    assert all(len(r) > 0 for r in results)
    # score = s^0.3 * 0.25^0.7 with s < 1
    assert all(float(r.scores.max()) < 0.25**0.7 for r in results)
