"""Do a detector's predictions depend on the image? A probe for the plateau of query-based
detectors (DETR), where the loss stops falling while every query predicts a box of its own that
is the same whatever the image shows.

For the first ``--num-images`` images of the test set (or of the training images, ``--split
train``, through the test pipeline) it prints, per image: the GT count, the top scores, and the
best IoU of each GT box with the ``--top-k`` highest-scoring boxes (its mean, and the recall at
IoU 0.5); then, over every pair of images, the best IoU of each box of one image with the other
image's boxes. A detector that looks at the image has boxes that fit its GT better than they
fit another image's boxes; one on the plateau puts (nearly) the same boxes on every image:
cross-image IoU high, GT IoU low.

Example::

    python tools/prediction_spread.py configs/demo/detr_r18_demo_mmdet.py \\
        work_dirs/detr/epoch_40.pth --num-images 8 --split train
"""
import argparse
import importlib.util
import os.path as osp
from typing import Dict, List, Optional, Sequence

_COMMON_SPEC = importlib.util.spec_from_file_location(
    'jt_mm_plugins_tools_common', osp.join(osp.dirname(osp.abspath(__file__)), '_common.py'))
common = importlib.util.module_from_spec(_COMMON_SPEC)
_COMMON_SPEC.loader.exec_module(common)

import torch  # noqa: E402 (after common's warning filter)

RECALL_IOU = 0.5


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Per-image spread of a detector\'s predictions (is it looking at the image?)')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--top-k', type=int, default=100,
                        help='boxes per image compared (the highest-scoring ones)')
    parser.add_argument('--split', choices=['test', 'train'], default='test',
                        help="'train': the training images through the test pipeline")
    parser.add_argument('--work-dir', default=None)
    args = common.parse_common_args(parser, argv, 'test_dataloader.dataset.data_root=/x/')
    if not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.num_images < 2 or args.top_k < 1:
        parser.error('--num-images must be at least 2 and --top-k at least 1')
    return args


def build_config(args: argparse.Namespace):
    cfg = common.load_config(args)
    cfg.load_from = args.checkpoint
    loader = cfg.test_dataloader
    loader.batch_size = 1
    if args.split == 'train':
        train_set = cfg.train_dataloader.dataset
        if 'ann_file' not in train_set:
            raise SystemExit('error: --split train needs train_dataloader.dataset.ann_file (a '
                             'wrapped training set is not supported)')
        for key in ('data_root', 'ann_file', 'data_prefix'):
            if key in train_set:
                loader.dataset[key] = train_set[key]
    cfg.test_evaluator = cfg.get('test_evaluator') or []
    return cfg


def spread(predictions: List[Dict[str, torch.Tensor]]) -> Dict[str, float]:
    """``predictions``: per image ``bboxes`` (top-k, xyxy) and ``gt`` (xyxy)."""
    from mmdet.structures.bbox import bbox_overlaps
    gt_best, cross_best = [], []
    for i, a in enumerate(predictions):
        if len(a['gt']) and len(a['bboxes']):
            gt_best.append(bbox_overlaps(a['gt'], a['bboxes']).max(dim=1).values)
        for j, b in enumerate(predictions):
            if i != j and len(a['bboxes']) and len(b['bboxes']):
                cross_best.append(bbox_overlaps(a['bboxes'], b['bboxes']).max(dim=1).values)
    def mean(parts, measure=lambda ious: ious):  # NaN where there was nothing to compare
        return float(measure(torch.cat(parts)).float().mean()) if parts else float('nan')

    return dict(gt_iou=mean(gt_best), recall=mean(gt_best, lambda ious: ious >= RECALL_IOU),
                cross_image_iou=mean(cross_best))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    cfg = build_config(args)
    from mmdet.registry import RUNNERS
    runner = common.build_runner(cfg, RUNNERS)
    runner.load_or_resume()
    model = runner.model
    model.eval()
    predictions = []
    for data in runner.test_dataloader:
        if len(predictions) == args.num_images:
            break
        with torch.no_grad():
            sample = model.test_step(data)[0]
        pred = sample.pred_instances
        order = pred.scores.argsort(descending=True)[:args.top_k]
        boxes, scores = pred.bboxes[order].float(), pred.scores[order]
        gt = sample.gt_instances.bboxes if 'gt_instances' in sample else torch.zeros(0, 4)
        gt = torch.as_tensor(getattr(gt, 'tensor', gt)).float()
        predictions.append(dict(bboxes=boxes, gt=gt))
        one = spread([predictions[-1]])
        print(f'image {len(predictions) - 1} ({osp.basename(sample.img_path)}): {len(gt)} GT, '
              f'top scores {[round(float(s), 3) for s in scores[:5]]}, '
              f'GT best IoU {one["gt_iou"]:.3f} (recall@{RECALL_IOU} {one["recall"]:.3f})', flush=True)
    if len(predictions) < 2:
        raise SystemExit(f'error: the {args.split} set has fewer than 2 images')
    result = spread(predictions)
    print(f'{args.split} split, {len(predictions)} images, top {args.top_k} boxes each: '
          f'mean best IoU of a GT box {result["gt_iou"]:.3f} (recall@{RECALL_IOU} '
          f'{result["recall"]:.3f}); mean best IoU of a box with another image\'s boxes '
          f'{result["cross_image_iou"]:.3f}')
    return result


if __name__ == '__main__':
    main()
