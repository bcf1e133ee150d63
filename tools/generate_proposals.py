"""Run a first-stage detector checkpoint over a dataset and write its boxes as proposals, in the
format mmdet's ``LoadProposals`` reads (UniDetector's ``--out rp_train.pkl`` step,
../shared/specs/seed-systems.md 1.5).

The file is a dict ``{'<image folder>/<file name>': {'bboxes': (n, 4) float32 x1y1x2y2 in the
original image's pixels, 'scores': (n,) float32, 'img_id': int}}``, boxes sorted by score
(empty and inverted boxes dropped, ``--min-size``), as
mmdet's ``DumpProposals`` writes (``img_id`` added: the ``...WithProposals`` datasets of
``jt_mm_plugins/datasets/proposals.py`` use it to refuse a file made for another dataset; mmdet's
own datasets ignore it). For UniDetector's 1st stage (OLN) the boxes are the R-CNN's
class-agnostic detections with OLN's combined score.

The dataset is the config's ``test_dataloader`` one, or another annotation file with
``--ann-file`` (and ``--data-prefix`` for its image folder, ``--data-root``). A progress bar shows
the images done; every ``--save-every`` images the finished ones are saved to ``OUT.partial.pkl``,
and a run started again with the same ``--out`` skips the images done there (their model pass;
the images are still read). An existing ``OUT`` is not overwritten without ``--force``.

Example::

    python tools/generate_proposals.py configs/unidetector/oln_faster_rcnn_r50_fpn_1ststage_mixed.py \\
        work_dirs/oln/epoch_12.pth --ann-file annotations/instances_train2017.json \\
        --data-prefix train2017/ --out data/proposals/coco_train_rp.pkl
"""
import argparse
import importlib.util
import os
import os.path as osp
import pickle
import sys
from typing import Dict, Optional, Sequence

_COMMON_SPEC = importlib.util.spec_from_file_location(
    'jt_mm_plugins_tools_common', osp.join(osp.dirname(osp.abspath(__file__)), '_common.py'))
common = importlib.util.module_from_spec(_COMMON_SPEC)
_COMMON_SPEC.loader.exec_module(common)

from mmengine.config import Config  # noqa: E402 (after common's warning filter)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='First-stage checkpoint over a dataset -> proposal file (LoadProposals '
        'format)')
    parser.add_argument('config', help='config of the first-stage detector')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('--out', required=True, help='proposal file to write (.pkl)')
    parser.add_argument('--ann-file', help="annotation file (default: the config's "
                        'test_dataloader dataset)')
    parser.add_argument('--data-prefix', help='image folder of --ann-file, relative to the '
                        'data root (data_prefix.img)')
    parser.add_argument('--data-root', help="data root (default: the config's)")
    parser.add_argument('--num-max-proposals', type=int, default=None,
                        help='keep at most this many boxes per image (default: all the '
                        "detector's test_cfg gives)")
    parser.add_argument('--min-size', type=float, default=0.0,
                        help='drop boxes whose width or height is not above this (default 0: '
                        "drops the empty and inverted boxes an undertrained OLN gives, which "
                        "mmcv's CPU RoIAlign refuses; mmdet's RPN filters them likewise)")
    parser.add_argument('--save-every', type=int, default=100,
                        help='save finished images to OUT.partial.pkl every N images '
                        '(default: 100)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT and ignore OUT.partial.pkl')
    parser.add_argument('--work-dir', help='work directory of the runner (logs)')
    args = common.parse_common_args(parser, argv, 'test_dataloader.batch_size=2')
    if not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must name a .pkl or .pickle file, got {args.out}')
    if args.num_max_proposals is not None and args.num_max_proposals < 1:
        parser.error(f'--num-max-proposals must be >= 1, got {args.num_max_proposals}')
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = common.load_config(args)
    dataset = cfg.test_dataloader.dataset
    if args.data_root is not None:
        dataset.data_root = args.data_root
    if args.ann_file is not None:
        dataset.ann_file = args.ann_file
    if args.data_prefix is not None:
        dataset.data_prefix = dict(img=args.data_prefix)
    # Proposals are made for every image, annotated or not; no evaluation runs.
    dataset.pop('filter_cfg', None)
    dataset.test_mode = True
    cfg.test_evaluator = []
    cfg.load_from = None
    return cfg


def proposal_entry(sample, num_max: Optional[int], min_size: float) -> Dict:
    """One image's predictions as a proposal-file entry: boxes wider and higher than
    ``min_size``, sorted by score, the first ``num_max``."""
    import numpy as np
    pred = sample.pred_instances
    scores = pred.scores.detach().cpu().numpy().astype(np.float32)
    bboxes = pred.bboxes.detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
    valid = ((bboxes[:, 2] - bboxes[:, 0]) > min_size) & ((bboxes[:, 3] - bboxes[:, 1]) > min_size)
    bboxes, scores = bboxes[valid], scores[valid]
    order = np.argsort(-scores, kind='stable')[:num_max]
    return dict(bboxes=bboxes[order], scores=scores[order], img_id=int(sample.img_id),
                num_dropped=int((~valid).sum()))


def save(obj, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump(obj, f)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    common.tune_cpu_allocator()
    args = parse_args(argv)
    partial_path = args.out + '.partial.pkl'
    if osp.isfile(args.out) and not args.force:
        print(f'{args.out} exists: skipping (--force overwrites)')
        return 0

    import torch
    from mmdet.registry import RUNNERS
    from tqdm import tqdm

    from jt_mm_plugins.datasets.proposals import proposal_key

    cfg = build_config(args)
    runner = common.build_runner(cfg, RUNNERS)
    runner.load_checkpoint(args.checkpoint, map_location='cpu')
    loader = runner.build_dataloader(cfg.test_dataloader)
    done = {}
    if osp.isfile(partial_path) and not args.force:
        with open(partial_path, 'rb') as f:
            done = pickle.load(f)
        print(f'resuming from {partial_path}: {len(done)} images done')
    model = runner.model
    model.eval()
    since_save = 0
    with torch.no_grad():
        for data in tqdm(loader, desc='proposals', unit='batch'):
            keys = [proposal_key(s.img_path) for s in data['data_samples']]
            if all(k in done for k in keys):
                continue
            for key, sample in zip(keys, model.test_step(data)):
                done[key] = proposal_entry(sample, args.num_max_proposals, args.min_size)
            since_save += len(keys)
            if since_save >= args.save_every:
                save(done, partial_path)
                since_save = 0
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    counts = [len(e['scores']) for e in done.values()]
    dropped = sum(e.pop('num_dropped', 0) for e in done.values())
    save(done, args.out)
    if osp.isfile(partial_path):
        os.remove(partial_path)
    print(f'wrote {args.out}: {len(done)} images, {min(counts) if counts else 0}-'
          f'{max(counts) if counts else 0} proposals per image; {dropped} boxes of width or '
          f'height <= {args.min_size} dropped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
