"""UniDetector's three stages end to end on embedded toy-shapes data, in one command.

What it does (every step writes under ``--work-dir`` and is skipped when its output is there, so
an interrupted run continues; ``--force`` redoes everything):

1. **Data**: kwcoco's seven toy shapes (``tools/generate_demo_dataset.py --shapes all``) and an
   open-world split: training dataset A annotates only ``SPLIT['A']`` on the first half of the
   train images, dataset B only ``SPLIT['B']`` on the second half (disjoint label spaces, as
   COCO / Objects365 / OID), and ``SPLIT['held_out']`` are never annotated for training (their
   objects are in the training images, as unlabelled background).
2. **CLIP embeddings** of A's, B's and the seen classes' names (``tools/generate_clip_embeddings.py``):
   a random-weight CLIP (``--clip-model``, by default the tiny
   ``clip_embeddings/model_configs/demo-tiny-clip.json``) unless ``--clip-weights`` names a local
   CLIP file. Random text embeddings are fixed random class prototypes: nothing about language.
3. **Stage 1** (OLN, class-agnostic, on A + B): ``configs/unidetector/oln_faster_rcnn_r50_fpn_1ststage_mixed.py``
   with a ResNet-18 + FPN of the demo's size, trained through ``tools/train.py``.
4. **Proposals** for the train and val images (``tools/generate_proposals.py``) and their
   **recall** AR@100 (IoU 0.5:0.95, mmdet's ``eval_recalls``) on the val images' seen and
   held-out shapes separately.
5. **Stage 2**: ``configs/unidetector/clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py``
   (FastRCNN on the proposal files, CLIPResNet C4 + CLIPResLayer + ``BBoxHeadCLIPPartitioned``
   with A's and B's embeddings, A and B concatenated with their ``dataset_id``), demo-sized.
6. **Inference** with ``configs/unidetector/clip_fast_rcnn_r50_c4_lvis_v0.5_inference_mixed.py``'s
   ``BBoxHeadCLIPInference`` (score ``s^0.3 * o^0.7``) on the val images against the seen classes'
   embeddings, raw and then calibrated (``gamma`` 0.6, prior = detections per class of the raw
   run, :func:`raw_results_per_class`), evaluated with mmdet's ``LVISMetric`` on an LVIS-format
   file written from the val annotations (:func:`write_lvis_annotations`).

It prints and writes ``summary.json``: AR@100 on seen and held-out shapes, and the stage-2 LVIS
bbox AP on the seen classes, raw and calibrated.

Examples::

    python tools/unidetector_pipeline.py --work-dir work_dirs/unidetector_pipeline
    python tools/unidetector_pipeline.py --tiny --work-dir /tmp/pipe     # seconds, for tests
    # time a stage-2 step's parts (backbone, RoI extractor, layer4, box head) instead of training
    python tools/unidetector_pipeline.py --work-dir work_dirs/unidetector_pipeline --profile-stage2 5
    # calibration prior from another raw result file (mmdet 3.x tools/test.py --out):
    python tools/unidetector_pipeline.py --convert-raw raw.pkl --num-classes 1203 \\
        --out raw_lvis_results.pkl
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import pickle
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO_ROOT, 'tools')
#: The open-world split of kwcoco's seven shapes.
SPLIT = dict(A=('circle', 'star', 'eff'), B=('box', 'superstar'), held_out=('octagon', 'diamond'))
SEEN = SPLIT['A'] + SPLIT['B']
OLN_CONFIG = 'configs/unidetector/oln_faster_rcnn_r50_fpn_1ststage_mixed.py'
STAGE2_CONFIG = 'configs/unidetector/clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py'
INFERENCE_CONFIG = 'configs/unidetector/clip_fast_rcnn_r50_c4_lvis_v0.5_inference_mixed.py'
DEMO_BASE = 'configs/demo/_base_/demo_shapes.py'
TINY_CLIP = 'clip_embeddings/model_configs/demo-tiny-clip.json'
#: LVIS's frequency groups by training image count.
FREQUENCY = ((10, 'r'), (100, 'c'))


class PipelineError(Exception):
    """Bad input; the message names the file."""


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'jtmm_tool_{name}', osp.join(TOOLS,
                                                                                f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repo_path(path: str) -> str:
    return path if osp.isabs(path) else osp.join(REPO_ROOT, path)


# ------------------------------------------------------------------ annotation files
def read_json(path: str) -> Dict:
    with open(path) as f:
        return json.load(f)


def write_json(obj, path: str) -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f)
    os.replace(tmp, path)
    return path


def subset_coco(coco: Dict, image_ids: Sequence[int], class_names: Sequence[str],
                merge_as: Optional[str] = None) -> Dict:
    """The images ``image_ids`` with only the annotations of ``class_names`` (categories
    re-numbered 1..K in that order), or all of them as one class ``merge_as``."""
    by_name = {c['name']: c['id'] for c in coco['categories']}
    missing = [n for n in class_names if n not in by_name]
    if missing:
        raise PipelineError(f'classes {missing} are not in the annotation file (it has '
                            f'{sorted(by_name)})')
    new_id = {by_name[n]: i + 1 for i, n in enumerate(class_names)}
    if merge_as:
        new_id = {old: 1 for old in new_id}
        categories = [dict(id=1, name=merge_as)]
    else:
        categories = [dict(id=i + 1, name=n) for i, n in enumerate(class_names)]
    keep = set(image_ids)
    annotations = [dict(ann, category_id=new_id[ann['category_id']])
                   for ann in coco['annotations']
                   if ann['image_id'] in keep and ann['category_id'] in new_id]
    return dict(info=coco.get('info', {}), licenses=[], categories=categories,
                images=[im for im in coco['images'] if im['id'] in keep],
                annotations=annotations)


def write_lvis_annotations(coco: Dict, class_names: Sequence[str], train_sets: Sequence[Dict],
                           out: str) -> str:
    """An LVIS-format annotation file of ``coco``'s images and ``class_names`` for mmdet's
    ``LVISMetric``: categories with ``frequency`` (r / c / f by the number of training images in
    ``train_sets`` that annotate the class: <= 10, <= 100, more), ``image_count`` and
    ``instance_count``; images with empty ``neg_category_ids`` / ``not_exhaustive_category_ids``
    (every seen class is exhaustively annotated in the toy data); ``file_name`` kept so that
    mmdet's ``CocoDataset`` reads the same file."""
    lvis = subset_coco(coco, [im['id'] for im in coco['images']], class_names)
    image_count = {n: 0 for n in class_names}
    instance_count = {n: 0 for n in class_names}
    for train in train_sets:
        names = {c['id']: c['name'] for c in train['categories']}
        per_image = {}
        for ann in train['annotations']:
            name = names[ann['category_id']]
            if name in instance_count:
                instance_count[name] += 1
                per_image.setdefault(name, set()).add(ann['image_id'])
        for name, images in per_image.items():
            image_count[name] += len(images)
    for cat in lvis['categories']:
        count = image_count[cat['name']]
        cat.update({'image_count': count, 'instance_count': instance_count[cat['name']],
                    'synonyms': [cat['name']], 'def': f'a toy {cat["name"]} shape',
                    'frequency': next((f for limit, f in FREQUENCY if count <= limit), 'f')})
    for img in lvis['images']:
        img.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    for ann in lvis['annotations']:
        ann.pop('segmentation', None)
    return write_json(lvis, out)


def raw_results_per_class(dump_file: str, num_classes: int, out: str) -> str:
    """mmdet 3.x raw results (``tools/test.py --out``: per image ``pred_instances`` with
    ``bboxes``, ``scores``, ``labels``) -> the original's raw result layout that
    ``BBoxHeadCLIPInference(withcalibration=True, resultfile=...)`` reads: per image, per class,
    an (n, 5) array ``x1, y1, x2, y2, score``."""
    import numpy as np
    if not osp.isfile(dump_file):
        raise PipelineError(f'raw result file not found: {dump_file}')
    with open(dump_file, 'rb') as f:
        results = pickle.load(f)
    per_image = []
    for i, result in enumerate(results):
        pred = result.get('pred_instances') if isinstance(result, dict) else None
        if pred is None:
            raise PipelineError(f'{dump_file}: image {i} has no pred_instances (expected the '
                                'output of tools/test.py --out)')
        labels = np.asarray(pred['labels']).astype(np.int64)
        if len(labels) and labels.max() >= num_classes:
            raise PipelineError(f'{dump_file}: image {i} has label {labels.max()}, but '
                                f'num_classes is {num_classes}: results of another class count')
        dets = np.concatenate([np.asarray(pred['bboxes'], np.float32).reshape(-1, 4),
                               np.asarray(pred['scores'], np.float32).reshape(-1, 1)], axis=1)
        per_image.append([dets[labels == c] for c in range(num_classes)])
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'wb') as f:
        pickle.dump(per_image, f)
    return out


def proposal_recall(proposal_file: str, coco: Dict, folder: str, class_names: Sequence[str],
                    num: int = 100) -> Dict[str, float]:
    """AR@num (recall averaged over IoU 0.5:0.95) and recall@0.5 of each image's ``num``
    best-scored proposals on the gt boxes of ``class_names``, and the number of those boxes; the
    images of ``coco`` are in the folder ``folder`` (the proposal files' keys).

    mmdet's ``eval_recalls`` computes this but fails under numpy >= 1.24 (it makes one array of
    the images' differently shaped IoU matrices); its matching (``_recalls``: greedy one-to-one
    assignment of gts to proposals, per IoU threshold) is used on a ragged array."""
    import numpy as np
    from mmdet.evaluation.functional import bbox_overlaps
    from mmdet.evaluation.functional.recall import _recalls

    from jt_mm_plugins.datasets.proposals import proposal_key
    with open(proposal_file, 'rb') as f:
        proposals = pickle.load(f)
    ids = {c['id'] for c in coco['categories'] if c['name'] in class_names}
    all_ious, num_gt = [], 0
    for img in coco['images']:
        boxes = np.array([a['bbox'] for a in coco['annotations']
                          if a['image_id'] == img['id'] and a['category_id'] in ids],
                         np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        key = proposal_key(osp.join(folder, img['file_name']))
        if key not in proposals:
            raise PipelineError(f'{proposal_file} has no proposals for {key}')
        entry = proposals[key]
        order = np.argsort(-entry['scores'], kind='stable')[:num]
        all_ious.append(bbox_overlaps(boxes, entry['bboxes'][order]))
        num_gt += len(boxes)
    per_image = np.empty(len(all_ious), dtype=object)  # ragged: one IoU matrix per image
    for i, ious in enumerate(all_ious):
        per_image[i] = ious
    iou_thrs = np.arange(0.5, 0.951, 0.05)
    recalls = _recalls(per_image, np.array([num]), iou_thrs)[0]
    return dict(AR=float(recalls.mean()), recall_iou50=float(recalls[0]), num_gt=num_gt)


# ------------------------------------------------------------------ configs
def demo_runtime(data_root: str, epochs: int, batch_size: int, workers: int, image_size: int):
    """The demo's dataset / schedule / runtime config, without validation during training."""
    from mmengine.config import Config
    cfg = Config.fromfile(repo_path(DEMO_BASE))
    cfg.data_root = data_root
    cfg.image_scale = (image_size, image_size)
    for pipeline in (cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline):
        for step in pipeline:
            if step['type'] == 'Resize':
                step['scale'] = cfg.image_scale
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler[0]['end'] = min(cfg.param_scheduler[0]['end'], 10 * epochs)
    cfg.param_scheduler[1].update(end=epochs, milestones=[max(1, epochs - 1)])
    loader = dict(batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    cfg.train_dataloader.update(loader)
    cfg.test_dataloader.update(num_workers=workers, persistent_workers=workers > 0)
    cfg.default_hooks.checkpoint.update(max_keep_ckpts=1)
    return cfg


def stage1_config(paths: Dict, opts: argparse.Namespace):
    """OLN (the 1st-stage config's model) at the demo's size on the class-agnostic A + B file."""
    from mmengine.config import Config
    cfg = demo_runtime(paths['data'], opts.stage1_epochs, opts.batch_size, opts.workers,
                       opts.image_size)
    oln = Config.fromfile(repo_path(OLN_CONFIG))
    cfg.custom_imports = oln.custom_imports
    cfg.model = oln.model
    base, ch = opts.r18_base_channels, opts.fpn_channels
    cfg.merge_from_dict({
        'model.backbone': dict(depth=18, base_channels=base, frozen_stages=-1, norm_eval=False,
                               init_cfg=None),
        'model.neck': dict(in_channels=[base, base * 2, base * 4, base * 8], out_channels=ch),
        'model.rpn_head': dict(in_channels=ch, feat_channels=ch,
                               anchor_generator=dict(scales=[4])),
        # The untrained OLN RPN proposes inverted boxes (its decode keeps every box, as the
        # original's); mmcv's CPU RoIAlign asserts on them, the Jittor one takes them as mmcv's
        # CUDA kernel does.
        'model.roi_head.bbox_roi_extractor': dict(type='JittorSingleRoIExtractor',
                                                  out_channels=ch),
        'model.roi_head.bbox_head': dict(in_channels=ch, fc_out_channels=opts.fc_channels),
        'model.train_cfg.rpn_proposal': dict(nms_pre=1000, max_per_img=opts.rois),
        'model.train_cfg.rcnn.sampler.num': opts.rois // 2,
        'model.test_cfg.rpn': dict(nms_pre=opts.rois, max_per_img=opts.rois),
        'model.test_cfg.rcnn.max_per_img': opts.num_proposals,
    })
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=paths['data'], ann_file=paths['stage1_train'], data_prefix=dict(img='train/'),
              metainfo=dict(classes=('object', )))
    cfg.test_dataloader.dataset.update(data_root=paths['data'],
                                       metainfo=dict(classes=('object', )))
    cfg.test_evaluator = []  # tools/generate_proposals.py runs the test set without a metric
    return cfg


def proposal_pipelines(num_proposals: int, image_scale, dataset_id: Optional[int]):
    broadcast = [dict(type='Resize', scale=image_scale, keep_ratio=True)]
    load = [dict(type='LoadImageFromFile', backend_args=None)]
    if dataset_id is None:  # test
        return load + [
            dict(type='LoadProposals', num_max_proposals=num_proposals),
            dict(type='ProposalBroadcaster', transforms=broadcast),
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    return load + [
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='LoadProposals', num_max_proposals=num_proposals),
        dict(type='ProposalBroadcaster',
             transforms=broadcast + [dict(type='RandomFlip', prob=0.5)]),
        dict(type='PackDetInputs'),
        dict(type='AddDatasetId', dataset_id=dataset_id)]


def clip_sizes(opts: argparse.Namespace, embed_dim: int) -> Dict:
    layers, width = [opts.clip_blocks] * 4, opts.clip_width
    return dict(layers=layers, width=width, c4=width * 16, c5=width * 32, embed_dim=embed_dim,
                heads=max(1, width * 32 // 128))


def stage2_config(paths: Dict, opts: argparse.Namespace, embed_dim: int):
    """The 2nd-stage config's model at the demo's size, trained on A and B with their
    proposals."""
    from mmengine.config import Config
    cfg = demo_runtime(paths['data'], opts.stage2_epochs, opts.batch_size, opts.workers,
                       opts.image_size)
    s2 = Config.fromfile(repo_path(STAGE2_CONFIG))
    cfg.custom_imports = s2.custom_imports
    cfg.model = s2.model
    cfg.optim_wrapper.clip_grad = s2.optim_wrapper.clip_grad
    size = clip_sizes(opts, embed_dim)
    # mmdet's lr 0.02 is for batch 16: scaled linearly to the demo's batch (--stage2-lr)
    cfg.optim_wrapper.optimizer.lr = opts.stage2_lr
    cfg.merge_from_dict({
        # from scratch: no frozen stage, BatchNorm trains (as the shapes demo of the 2nd stage)
        'model.backbone': dict(layers=size['layers'], width=size['width'], frozen_stages=-1,
                               norm_eval=False),
        'model.roi_head.shared_head': dict(layers=size['layers'], width=size['width']),
        # The Jittor RoIAlign (same op as mmcv's): mmcv's CPU backward took 1.4 s of a 10 s step
        # at the old demo size and 0.22 s of 1.1 s at this one; the Jittor one 0.03 s.
        'model.roi_head.bbox_roi_extractor': dict(type='JittorSingleRoIExtractor',
                                                  out_channels=size['c4']),
        'model.roi_head.bbox_head': dict(
            in_channels=size['c5'], embed_dim=embed_dim, num_heads=size['heads'],
            num_classes=max(len(SPLIT['A']), len(SPLIT['B'])),
            zeroshot_path=[paths['emb_A'], paths['emb_B']], cat_freq_path=[None, None]),
        'model.train_cfg.rcnn.sampler.num': opts.stage2_rois,
        'model.test_cfg.rcnn.max_per_img': opts.num_proposals,
    })
    scale = cfg.image_scale
    datasets = []
    for i, part in enumerate(('A', 'B')):
        datasets.append(dict(
            type='CocoDatasetWithProposals', data_root=paths['data'],
            ann_file=paths[f'train_{part}'], data_prefix=dict(img='train/'),
            metainfo=dict(classes=SPLIT[part]), proposal_file=paths['proposals_train'],
            filter_cfg=dict(filter_empty_gt=True, min_size=8),
            pipeline=proposal_pipelines(opts.num_proposals, scale, i)))
    cfg.train_dataloader.dataset = dict(type='ConcatDataset', ignore_keys=['classes', 'palette'],
                                        datasets=datasets)
    cfg.test_dataloader = None
    cfg.test_cfg = cfg.test_evaluator = None
    return cfg


def inference_config(paths: Dict, opts: argparse.Namespace, embed_dim: int,
                     calibrated: bool):
    """The LVIS inference config's head at the demo's size, on the val images against the seen
    classes, evaluated with LVISMetric."""
    from mmengine.config import Config
    cfg = stage2_config(paths, opts, embed_dim)
    inference = Config.fromfile(repo_path(INFERENCE_CONFIG))
    size = clip_sizes(opts, embed_dim)
    head = inference.model.roi_head.bbox_head
    head.update(in_channels=size['c5'], embed_dim=embed_dim, num_heads=size['heads'],
                num_classes=len(SEEN), zeroshot_path=paths['emb_seen'])
    if calibrated:
        head.update(withcalibration=True, resultfile=paths['raw_per_class'], gamma=0.6)
    cfg.model.roi_head.bbox_head = head
    cfg.model.test_cfg = inference.model.test_cfg
    cfg.model.test_cfg.rcnn.max_per_img = opts.num_proposals
    cfg.test_cfg = dict(type='TestLoop')
    cfg.test_dataloader = dict(
        batch_size=1, num_workers=opts.workers, persistent_workers=opts.workers > 0,
        drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CocoDatasetWithProposals', data_root=paths['data'],
                     ann_file=paths['val_lvis'], data_prefix=dict(img='val/'),
                     metainfo=dict(classes=SEEN), proposal_file=paths['proposals_val'],
                     test_mode=True,
                     pipeline=proposal_pipelines(opts.num_proposals, cfg.image_scale, None)))
    cfg.test_evaluator = dict(type='LVISMetric', ann_file=paths['val_lvis'], metric='bbox')
    return cfg


# ------------------------------------------------------------------ steps
def last_checkpoint(work_dir: str) -> Optional[str]:
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        path = f.read().strip()
    return path if osp.isfile(path) else None


def dump_config(cfg, work_dir: str, name: str) -> str:
    """``work_dir/name.py``; each run gets its own name, as mmengine names a runner (its logger,
    message hub) by the config file's name and the second it starts."""
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, f'{name}.py')
    cfg.dump(path)
    return path


def train(cfg, work_dir: str, force: bool) -> str:
    """Train in ``work_dir``, or skip when its last checkpoint exists and was trained on the
    same config (``pipeline_config.py`` there, which mmengine's runner does not overwrite)."""
    ckpt = None if force else last_checkpoint(work_dir)
    composed = osp.join(work_dir, 'pipeline_config.py')
    if ckpt:
        if osp.isfile(composed) and open(composed).read() != cfg.pretty_text:
            raise PipelineError(f'{ckpt} was trained with other settings than this run\'s '
                                f'({composed} differs): pass --force, or another --work-dir')
        print(f'[pipeline] {ckpt} exists: training skipped')
        return ckpt
    dump_config(cfg, work_dir, 'pipeline_config')
    path = dump_config(cfg, work_dir, f'train_{osp.basename(work_dir)}')
    load_tool('train').main([path, '--work-dir', work_dir])
    ckpt = last_checkpoint(work_dir)
    if ckpt is None:
        raise PipelineError(f'training in {work_dir} left no checkpoint')
    return ckpt


def evaluate(cfg, ckpt: str, work_dir: str, out: Optional[str]) -> Dict:
    path = dump_config(cfg, work_dir, osp.basename(work_dir))
    argv = [path, ckpt, '--work-dir', work_dir] + (['--out', out] if out else [])
    metrics = load_tool('test').main(argv)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


#: The parts of a stage-2 step that :func:`profile_stage2` times (FastRCNN attribute paths).
STAGE2_PARTS = ('backbone', 'roi_head.bbox_roi_extractor', 'roi_head.shared_head',
                'roi_head.bbox_head')


def profile_stage2(cfg, work_dir: str, steps: int) -> Dict[str, float]:
    """Mean seconds of ``steps`` stage-2 training steps (after one warm-up step) and of their
    parts, on the training data: each part's forward (from its forward hooks) and backward (from
    the moment the gradient reaches its output to the moment it reaches the next part's output
    below it; the backbone's ends with the backward), the loss step as a whole, the optimizer
    step. Prints a table."""
    import torch
    from mmengine.runner import Runner
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    runner = Runner.from_cfg(cfg)
    model = runner.model.train()
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    stamps: Dict[str, float] = {}

    def hooks(name):
        def pre(module, args):
            stamps[f'{name}/start'] = time.perf_counter()
            stamps[f'{name}/inputs'] = tuple(args[0].shape) if torch.is_tensor(args[0]) else ()

        def post(module, args, out):
            stamps[f'forward {name}'] = time.perf_counter() - stamps[f'{name}/start']
            while isinstance(out, (tuple, list)):  # the first tensor of the outputs
                out = out[0]
            if torch.is_tensor(out) and out.requires_grad:
                out.register_hook(lambda g: stamps.__setitem__(f'{name}/grad', time.perf_counter()))
        return pre, post

    for name in STAGE2_PARTS:
        module = model.get_submodule(name)
        pre, post = hooks(name)
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
    batches = iter(runner.build_dataloader(cfg.train_dataloader))
    totals: Dict[str, float] = {}
    for step in range(steps + 1):
        stamps.clear()
        batch = next(batches)
        t0 = time.perf_counter()
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optim.step()
        optim.zero_grad()
        t3 = time.perf_counter()
        times = {k: v for k, v in stamps.items() if k.startswith('forward ')}
        # the gradient reaches the parts' outputs from the top (bbox head) down; a part's
        # backward ends when it reaches the output of the part below
        order = STAGE2_PARTS[::-1]
        arrivals = [t1] + [stamps[f'{name}/grad'] for name in order] + [t2]
        times['backward losses'] = arrivals[1] - arrivals[0]
        times.update({f'backward {name}': arrivals[i + 2] - arrivals[i + 1]
                      for i, name in enumerate(order)})
        times.update({'forward (all)': t1 - t0, 'backward (all)': t2 - t1,
                      'optimizer step': t3 - t2, 'step': t3 - t0})
        print(f'[pipeline] stage-2 step {step}' + (' (warm-up)' if step == 0 else '') +
              f': {t3 - t0:.3f} s, RoI features '
              f'{stamps["roi_head.shared_head/inputs"]}', flush=True)
        if step:
            for key, value in times.items():
                totals[key] = totals.get(key, 0.0) + value / steps
    print('[pipeline] stage-2 step, mean seconds over the steps after the warm-up:')
    for key, value in totals.items():
        print(f'  {key:<40} {value:8.3f}')
    return totals


def prepare_data(paths: Dict, opts: argparse.Namespace) -> None:
    gen = load_tool('generate_demo_dataset')
    if gen.main(['--out-dir', paths['data'], '--num-train', str(opts.num_train), '--num-val',
                 str(opts.num_val), '--image-size', str(opts.image_size), '--seed',
                 str(opts.seed), '--shapes', 'all']) != 0:
        raise PipelineError(f'{paths["data"]} holds a dataset of other settings: choose another '
                            '--work-dir or pass --force')
    train_coco = read_json(osp.join(paths['data'], 'annotations', 'instances_train.json'))
    ids = sorted(im['id'] for im in train_coco['images'])
    half = len(ids) // 2
    part_ids = dict(A=ids[:half], B=ids[half:])
    parts = {p: subset_coco(train_coco, part_ids[p], SPLIT[p]) for p in ('A', 'B')}
    for p in ('A', 'B'):
        write_json(parts[p], paths[f'train_{p}'])
    # Stage 1: every image with its own dataset's boxes only, class-agnostic.
    agnostic = [subset_coco(train_coco, part_ids[p], SPLIT[p], merge_as='object')
                for p in ('A', 'B')]
    merged = dict(agnostic[0], images=agnostic[0]['images'] + agnostic[1]['images'],
                  annotations=agnostic[0]['annotations'] + agnostic[1]['annotations'])
    for i, ann in enumerate(merged['annotations']):
        ann['id'] = i + 1
    write_json(merged, paths['stage1_train'])
    val_coco = read_json(osp.join(paths['data'], 'annotations', 'instances_val.json'))
    write_lvis_annotations(val_coco, SEEN, [parts['A'], parts['B']], paths['val_lvis'])


def make_embeddings(paths: Dict, opts: argparse.Namespace) -> int:
    import numpy as np
    tool = load_tool('generate_clip_embeddings')
    names_dir = osp.join(opts.work_dir, 'class_names')
    os.makedirs(names_dir, exist_ok=True)
    weights = (['--weights', opts.clip_weights] if opts.clip_weights
               else ['--random-weights', '--seed', str(opts.seed)])
    for key, names in (('A', SPLIT['A']), ('B', SPLIT['B']), ('seen', SEEN)):
        names_file = osp.join(names_dir, f'{key}.txt')
        with open(names_file, 'w') as f:
            f.write(''.join(f'{n}\n' for n in names))
        argv = ['--class-names', names_file, '--model', repo_path(opts.clip_model)
                if opts.clip_model.endswith('.json') else opts.clip_model,
                '--prompt', opts.prompt, '--out', paths[f'emb_{key}'], '--device', 'cpu']
        if tool.main(argv + weights + (['--force'] if opts.force else [])) != 0:
            raise PipelineError(f'generate_clip_embeddings failed for {names_file}')
    return int(np.load(paths['emb_seen']).shape[1])


def make_proposals(cfg, ckpt: str, paths: Dict, opts: argparse.Namespace) -> None:
    tool = load_tool('generate_proposals')
    work_dir = osp.join(opts.work_dir, 'proposals')
    for split, ann in (('train', osp.join('annotations', 'instances_train.json')),
                       ('val', osp.join('annotations', 'instances_val.json'))):
        argv = [dump_config(cfg, work_dir, f'proposals_{split}'), ckpt, '--out', paths[f'proposals_{split}'], '--ann-file', ann,
                '--data-prefix', f'{split}/', '--work-dir', work_dir,
                '--num-max-proposals', str(opts.num_proposals)]
        if tool.main(argv + (['--force'] if opts.force else [])) != 0:
            raise PipelineError(f'generate_proposals failed for the {split} images')


def layout(work_dir: str) -> Dict[str, str]:
    w = osp.abspath(work_dir)
    return dict(
        data=osp.join(w, 'data') + '/',
        train_A=osp.join(w, 'annotations', 'train_A.json'),
        train_B=osp.join(w, 'annotations', 'train_B.json'),
        stage1_train=osp.join(w, 'annotations', 'stage1_train_agnostic.json'),
        val_lvis=osp.join(w, 'annotations', 'val_seen_lvis.json'),
        emb_A=osp.join(w, 'embeddings', 'A.npy'),
        emb_B=osp.join(w, 'embeddings', 'B.npy'),
        emb_seen=osp.join(w, 'embeddings', 'seen.npy'),
        stage1=osp.join(w, 'stage1'),
        stage2=osp.join(w, 'stage2'),
        proposals_train=osp.join(w, 'proposals', 'train.pkl'),
        proposals_val=osp.join(w, 'proposals', 'val.pkl'),
        raw_dump=osp.join(w, 'inference_raw', 'raw_results.pkl'),
        raw_per_class=osp.join(w, 'inference_raw', 'raw_lvis_results.pkl'),
        summary=osp.join(w, 'summary.json'))


def run(opts: argparse.Namespace) -> Dict:
    start = time.time()
    paths = layout(opts.work_dir)
    prepare_data(paths, opts)
    embed_dim = make_embeddings(paths, opts)

    if opts.force or not all(osp.isfile(paths[f'proposals_{s}']) for s in ('train', 'val')):
        cfg1 = stage1_config(paths, opts)
        make_proposals(cfg1, train(cfg1, paths['stage1'], opts.force), paths, opts)
    else:  # stage 1 is only needed for its proposals (its checkpoint may have been deleted)
        print('[pipeline] proposal files exist: stage 1 and the proposals skipped')
    val_coco = read_json(osp.join(paths['data'], 'annotations', 'instances_val.json'))
    recall = {group: proposal_recall(paths['proposals_val'], val_coco, 'val', names,
                                     opts.num_proposals)
              for group, names in (('seen', SEEN), ('held_out', SPLIT['held_out']))}

    if opts.profile_stage2:
        return profile_stage2(stage2_config(paths, opts, embed_dim),
                              osp.join(opts.work_dir, 'profile_stage2'), opts.profile_stage2)
    ckpt2 = train(stage2_config(paths, opts, embed_dim), paths['stage2'], opts.force)
    raw = evaluate(inference_config(paths, opts, embed_dim, calibrated=False), ckpt2,
                   osp.join(opts.work_dir, 'inference_raw'), paths['raw_dump'])
    raw_results_per_class(paths['raw_dump'], len(SEEN), paths['raw_per_class'])
    calibrated = evaluate(inference_config(paths, opts, embed_dim, calibrated=True), ckpt2,
                          osp.join(opts.work_dir, 'inference_calibrated'), None)
    summary = dict(
        split=dict(SPLIT), clip=dict(model=opts.clip_model, weights=opts.clip_weights or
                                     f'random (seed {opts.seed})', prompt=opts.prompt,
                                     embed_dim=embed_dim),
        data=dict(num_train=opts.num_train, num_val=opts.num_val, image_size=opts.image_size),
        epochs=dict(stage1=opts.stage1_epochs, stage2=opts.stage2_epochs),
        stage1_recall={f'AR@{opts.num_proposals}': {g: r['AR'] for g, r in recall.items()},
                       'recall@0.5': {g: r['recall_iou50'] for g, r in recall.items()},
                       'num_gt': {g: r['num_gt'] for g, r in recall.items()}},
        stage2_lvis_raw=raw, stage2_lvis_calibrated=calibrated,
        seconds=round(time.time() - start, 1))
    write_json(summary, paths['summary'])
    print_summary(summary, opts.num_proposals)
    return summary


def print_summary(s: Dict, num: int) -> None:
    ar = s['stage1_recall'][f'AR@{num}']
    n = s['stage1_recall']['num_gt']
    print(f'[pipeline] stage-1 proposal recall AR@{num} (IoU .5:.95, val): '
          f'seen {ar["seen"]:.3f} ({n["seen"]} boxes), held-out {ar["held_out"]:.3f} '
          f'({n["held_out"]} boxes)')
    for name in ('raw', 'calibrated'):
        m = s[f'stage2_lvis_{name}']
        print(f'[pipeline] stage-2 LVIS bbox AP on the seen classes, {name}: '
              f'{m.get("lvis/bbox_AP", float("nan")):.3f} (AP50 '
              f'{m.get("lvis/bbox_AP50", float("nan")):.3f})')
    print(f'[pipeline] {s["seconds"]} s; summary.json in the work dir')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="UniDetector's three stages end to end on toy shapes (see the docs)")
    parser.add_argument('--work-dir', default='work_dirs/unidetector_pipeline')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--stage1-epochs', type=int, default=12)
    parser.add_argument('--stage2-epochs', type=int, default=12)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--clip-width', type=int, default=16,
                        help="stage 2's CLIP ResNet stem width (RN50: 64; see parse_args)")
    parser.add_argument('--stage2-rois', type=int, default=32,
                        help='RoIs sampled per image in stage 2 (the original: 512)')
    parser.add_argument('--stage2-lr', type=float, default=0.005,
                        help="stage 2's SGD lr (default: mmdet's 0.02 at batch 16, scaled to "
                        'batch 4)')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--num-proposals', type=int, default=100,
                        help='proposals per image kept from stage 1 and used by stage 2')
    parser.add_argument('--clip-model', default=TINY_CLIP,
                        help='open_clip architecture or model config .json (default: the tiny '
                        'demo CLIP)')
    parser.add_argument('--clip-weights', help='local CLIP weights (default: random weights)')
    parser.add_argument('--prompt', choices=['ensemble', 'single'], default='ensemble')
    parser.add_argument('--tiny', action='store_true',
                        help='seconds-long run for tests: 4 + 2 images of 64 px, 1 epoch each, '
                        'narrow networks')
    parser.add_argument('--force', action='store_true', help='redo every step')
    parser.add_argument('--profile-stage2', type=int, default=0, metavar='STEPS',
                        help='instead of training stage 2, time STEPS of its training steps '
                        'and their parts (after the steps before it, skipped when done)')
    parser.add_argument('--convert-raw', metavar='DUMP',
                        help='only convert a tools/test.py --out file to the per-class raw '
                        'results of the calibration (with --num-classes, --out)')
    parser.add_argument('--num-classes', type=int)
    parser.add_argument('--out')
    opts = parser.parse_args(argv)
    if opts.convert_raw and (opts.num_classes is None or not opts.out):
        parser.error('--convert-raw needs --num-classes and --out')
    # Network sizes. Stage 1: ResNet-18 + FPN 64, 256 RPN proposals (128 sampled RoIs) per image.
    opts.r18_base_channels, opts.fpn_channels, opts.fc_channels, opts.rois = 64, 64, 256, 256
    # Stage 2: CLIP ResNet with one block per stage. Its step took 8.7 s on one core with stem
    # width 32 and 128 sampled RoIs per image (--profile-stage2 times the parts: 8.0 s of it
    # in layer4 and the attention pool, which every RoI goes through: ~286M MACs per 14x14 RoI
    # at width 32), ~0.9 s with the defaults --clip-width 16 (C4 256, C5 512 channels, 4
    # attention heads: 4x fewer MACs per RoI) and --stage2-rois 32 (at most 8 positives: the
    # toy images hold a few objects). The RoI size stays 14 (layer4 halves it to the attention
    # pool's 7x7).
    opts.clip_blocks = 1
    if opts.tiny:
        opts.num_train, opts.num_val, opts.image_size = 4, 2, 64
        opts.stage1_epochs = opts.stage2_epochs = 1
        opts.batch_size, opts.workers, opts.num_proposals = 2, 0, 20
        opts.r18_base_channels, opts.fpn_channels, opts.fc_channels = 8, 16, 32
        opts.clip_width, opts.rois, opts.stage2_rois = 8, 32, 16
    return opts


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = parse_args(argv)
    try:
        if opts.convert_raw:
            raw_results_per_class(opts.convert_raw, opts.num_classes, opts.out)
            print(f'wrote {opts.out}')
            return 0
        run(opts)
    except PipelineError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
