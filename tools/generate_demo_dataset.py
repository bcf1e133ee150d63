"""Generate the offline demo detection dataset (toy shapes) in plain COCO format.

The images and boxes come from kwcoco's toy-shape generator
(:func:`kwcoco.demo.toydata_image.demodata_toy_dset`): grey noise images with non-overlapping
``star``, ``superstar`` and ``eff`` shapes, about 9 objects per image. Nothing is downloaded: the
generator draws everything from a seeded random state. kwcoco writes its bundle (images, a kwcoco
JSON and a ``_cache`` stamp folder) into a temporary folder inside ``--out-dir``; this script
converts it to plain COCO and removes the temporary folder.

Plain COCO means what ``mmdet.datasets.CocoDataset`` and ``pycocotools`` expect:

* categories ``1..K`` without kwcoco's ``background`` category (id 0),
* ``file_name`` relative to the split's image folder,
* ``bbox`` ``[x, y, w, h]`` floats, ``iscrowd = 0``, ``area = w * h`` (the box area, as kwcoco
  computes it: its polygons trace pixel centres, so their area underestimates thin shapes and can
  be 0, and mmdet's ``CocoDataset`` ignores a box whose ``area`` is 0),
* ``segmentation`` as COCO polygon lists ``[[x1, y1, x2, y2, ...]]`` (kwcoco writes
  ``[{'exterior': ..., 'interiors': ...}]``; a polygon with holes cannot be written as a COCO
  polygon, so such an annotation keeps its box and loses its segmentation, which the script
  reports).

Layout::

    <out-dir>/train/000001.png ...
    <out-dir>/val/000001.png ...
    <out-dir>/annotations/instances_train.json
    <out-dir>/annotations/instances_val.json

Each JSON's ``info`` records the generation settings. A second run with the same settings finds the
complete dataset and returns at once; a run with other settings refuses unless ``--force`` is given.
The train split uses ``--seed`` and the val split ``--seed + 1``, so the two splits hold different
images and every run with the same settings writes identical files.

Example::

    python tools/generate_demo_dataset.py                   # 200 train / 50 val, 256x256
    python tools/generate_demo_dataset.py --out-dir /tmp/shapes --num-train 8 --num-val 4 \\
        --image-size 64
    python tools/generate_demo_dataset.py --out-dir data/shapes7 --shapes all

``--shapes`` picks kwcoco's shapes (its pattern set has seven: ``box circle star superstar eff
octagon diamond``; ``demodata_toy_dset`` hard-codes the last three of the default list, so the
option swaps its pattern list while it runs). The default ``star,superstar,eff`` writes the same
files (and the same recorded settings) as before the option existed.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

GENERATOR = 'kwcoco.demo.toydata_image.demodata_toy_dset'
SPLITS = ('train', 'val')
# Offset between the train and val seeds: the val split must not repeat train images.
VAL_SEED_OFFSET = 1
#: The shapes demodata_toy_dset draws, in its order; and all of kwcoco's toy patterns.
DEFAULT_SHAPES = ('star', 'superstar', 'eff')
KWCOCO_SHAPES = ('box', 'circle', 'star', 'superstar', 'eff', 'octagon', 'diamond')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the toy-shapes demo detection dataset (COCO format) offline '
        'with kwcoco.')
    parser.add_argument('--out-dir', default='data/demo_shapes',
                        help='dataset root (default: data/demo_shapes)')
    parser.add_argument('--num-train', type=int, default=200,
                        help='number of train images (default: 200)')
    parser.add_argument('--num-val', type=int, default=50,
                        help='number of val images (default: 50)')
    parser.add_argument('--image-size', type=int, default=256,
                        help='width and height of the square images (default: 256)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed of the train split; val uses seed + 1 (default: 0)')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if the dataset exists (replaces it)')
    parser.add_argument('--shapes', default=','.join(DEFAULT_SHAPES),
                        help='comma-separated kwcoco shapes, in category order, or "all" '
                        f'({",".join(KWCOCO_SHAPES)}); default: {",".join(DEFAULT_SHAPES)}')
    args = parser.parse_args(argv)
    args.shapes = KWCOCO_SHAPES if args.shapes == 'all' else tuple(
        s.strip() for s in args.shapes.split(',') if s.strip())
    unknown = [s for s in args.shapes if s not in KWCOCO_SHAPES]
    if unknown or not args.shapes or len(set(args.shapes)) != len(args.shapes):
        parser.error(f'--shapes: {",".join(args.shapes)!r} must be distinct names among '
                     f'{",".join(KWCOCO_SHAPES)}')
    for name in ('num_train', 'num_val'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if args.image_size < 32:
        parser.error(f'--image-size must be >= 32 (kwcoco places shapes of a few pixels and mmdet '
                     f'filters images smaller than 32 px), got {args.image_size}')
    return args


def split_settings(split: str, num_images: int, image_size: int, seed: int,
                   shapes: Sequence[str] = DEFAULT_SHAPES) -> Dict:
    """The settings that decide a split's content; stored in the JSON's ``info`` (``shapes``
    only when not the default, so datasets written before the option stay complete)."""
    import kwcoco
    settings = dict(
        generator=GENERATOR,
        kwcoco_version=kwcoco.__version__,
        split=split,
        num_images=num_images,
        image_size=image_size,
        seed=seed,
    )
    if tuple(shapes) != DEFAULT_SHAPES:
        settings['shapes'] = list(shapes)
    return settings


@contextlib.contextmanager
def kwcoco_shapes(shapes: Sequence[str]):
    """Make ``demodata_toy_dset`` draw ``shapes``: it builds its patterns with
    ``CategoryPatterns.coerce([...three names...])``; while this runs, that call gets ``shapes``
    instead (an existing patterns object passes through, as in kwcoco)."""
    from kwcoco.demo import toydata_image
    original = toydata_image.CategoryPatterns
    if tuple(shapes) == DEFAULT_SHAPES:
        yield
        return

    class Patterns(original):

        @classmethod
        def coerce(cls, data=None, **kwargs):
            if isinstance(data, original):
                return data
            return original.coerce(list(shapes), **kwargs)

    toydata_image.CategoryPatterns = Patterns
    try:
        yield
    finally:
        toydata_image.CategoryPatterns = original


def annotation_file(out_dir: str, split: str) -> str:
    return osp.join(out_dir, 'annotations', f'instances_{split}.json')


def existing_split_state(out_dir: str, split: str, settings: Dict) -> str:
    """Return ``'complete'``, ``'missing'`` or ``'different'`` for a split already on disk.

    ``'complete'``: the annotation file exists, records the same settings, and every image it names
    exists. ``'missing'``: no annotation file (the JSON is written last, so an interrupted run leaves
    none). ``'different'``: an annotation file with other settings or with missing images.
    """
    ann_file = annotation_file(out_dir, split)
    if not osp.isfile(ann_file):
        return 'missing'
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except (OSError, ValueError):
        return 'different'
    recorded = coco.get('info', {}).get('settings')
    if recorded != settings:
        return 'different'
    img_dir = osp.join(out_dir, split)
    for img in coco.get('images', []):
        if not osp.isfile(osp.join(img_dir, img['file_name'])):
            return 'different'
    return 'complete'


def convert_categories(kw_categories: List[Dict]) -> Tuple[List[Dict], Dict[int, int]]:
    """Drop ``background`` and re-index the remaining categories ``1..K`` in kwcoco's order.

    Returns:
        tuple[list[dict], dict[int, int]]: COCO categories and the kwcoco-id -> COCO-id map.
    """
    categories, id_map = [], {}
    for cat in kw_categories:
        if cat['name'] == 'background':
            continue
        new_id = len(categories) + 1
        id_map[cat['id']] = new_id
        categories.append(
            dict(id=new_id, name=cat['name'], supercategory=cat.get('supercategory', 'shape')))
    return categories, id_map


def convert_segmentation(kw_segmentation) -> Optional[List[List[float]]]:
    """kwcoco polygons ``[{'exterior': [[x, y], ...], 'interiors': [...]}]`` -> COCO polygons.

    Returns None when the shape cannot be written as COCO polygons (holes, fewer than 3 points or an
    unknown format); the caller then drops the segmentation.
    """
    if not isinstance(kw_segmentation, list):
        return None
    polygons = []
    for part in kw_segmentation:
        if not isinstance(part, dict) or 'exterior' not in part or part.get('interiors'):
            return None
        exterior = part['exterior']
        if len(exterior) < 3:
            continue
        polygons.append([float(v) for point in exterior for v in point])
    return polygons or None


def generate_split(out_dir: str, split: str, num_images: int, image_size: int, seed: int,
                   shapes: Sequence[str] = DEFAULT_SHAPES) -> Dict:
    """Generate one split with kwcoco in a temporary folder and write it as plain COCO.

    Returns:
        dict: counts for the summary (images, annotations, per-category, dropped segmentations).
    """
    import numpy as np
    from kwcoco.demo.toydata_image import demodata_toy_dset

    settings = split_settings(split, num_images, image_size, seed, shapes)
    img_dir = osp.join(out_dir, split)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    # kwcoco's bundle (its images, JSON and cache stamp) goes to a temporary folder inside out_dir,
    # so the final moves stay on one file system and nothing lands in ~/.cache.
    tmp_root = tempfile.mkdtemp(prefix=f'.kwcoco_{split}_', dir=out_dir)
    try:
        print(f'[{split}] generating {num_images} images of {image_size}x{image_size} '
              f'with kwcoco (seed {seed}) ...', flush=True)
        # kwcoco seeds box placement with ``rng`` but draws the shapes' categories and pixels from
        # numpy's global random state (its CategoryPatterns is built with rng=None). Seed that too,
        # and restore it afterwards, so a seed fully decides the output.
        global_state = np.random.get_state()
        np.random.seed(seed)
        try:
            with warnings.catch_warnings(), kwcoco_shapes(shapes):
                # kwimage falls back to its numpy NMS without its compiled extension: harmless.
                warnings.filterwarnings('ignore', message='.*kwimage_ext.*')
                kw_dset = demodata_toy_dset(
                    image_size=(image_size, image_size),
                    n_imgs=num_images,
                    rng=seed,
                    bundle_dpath=osp.join(tmp_root, 'bundle'),
                    use_cache=False,
                    verbose=0)
        finally:
            np.random.set_state(global_state)
        kw_data = kw_dset.dataset
        categories, id_map = convert_categories(kw_data['categories'])

        if osp.isdir(img_dir):
            shutil.rmtree(img_dir)
        os.makedirs(img_dir)
        images, new_image_id = [], {}
        for index, kw_img in enumerate(sorted(kw_data['images'], key=lambda im: im['id'])):
            file_name = f'{index + 1:06d}.png'
            src = kw_img['file_name']
            if not osp.isabs(src):
                src = osp.join(kw_dset.bundle_dpath, src)
            shutil.move(src, osp.join(img_dir, file_name))
            new_image_id[kw_img['id']] = index + 1
            images.append(
                dict(id=index + 1, file_name=file_name, width=int(kw_img['width']),
                     height=int(kw_img['height'])))

        annotations, dropped_segmentations = [], 0
        per_category = {cat['name']: 0 for cat in categories}
        cat_name = {cat['id']: cat['name'] for cat in categories}
        for kw_ann in sorted(kw_data['annotations'], key=lambda a: a['id']):
            if kw_ann['category_id'] not in id_map:  # a background annotation
                continue
            image_id = new_image_id[kw_ann['image_id']]
            x, y, w, h = (float(v) for v in kw_ann['bbox'])
            ann = dict(id=len(annotations) + 1, image_id=image_id,
                       category_id=id_map[kw_ann['category_id']], bbox=[x, y, w, h],
                       area=w * h, iscrowd=0)
            polygons = convert_segmentation(kw_ann.get('segmentation'))
            if polygons is None:
                dropped_segmentations += 1
            else:
                ann['segmentation'] = polygons
            annotations.append(ann)
            per_category[cat_name[ann['category_id']]] += 1

        coco = dict(
            # No creation date: the same settings must give byte-identical files.
            info=dict(description=f'kwcoco toy-shapes demo dataset, {split} split',
                      settings=settings),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        # The JSON is written last and atomically: its presence marks a complete split.
        ann_file = annotation_file(out_dir, split)
        tmp_ann = ann_file + '.tmp'
        with open(tmp_ann, 'w') as f:
            json.dump(coco, f)
        os.replace(tmp_ann, ann_file)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return dict(images=len(images), annotations=len(annotations), per_category=per_category,
                dropped_segmentations=dropped_segmentations, ann_file=ann_file)


def check_with_pycocotools(ann_file: str, img_dir: str) -> None:
    """Load the annotation file with pycocotools and check the images it names exist."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its own progress
        coco = COCO(ann_file)
    if any(cat['name'] == 'background' for cat in coco.loadCats(coco.getCatIds())):
        raise RuntimeError(f'{ann_file}: a background category is present')
    missing = [img['file_name'] for img in coco.loadImgs(coco.getImgIds())
               if not osp.isfile(osp.join(img_dir, img['file_name']))]
    if missing:
        raise RuntimeError(f'{ann_file}: {len(missing)} images missing in {img_dir}, '
                           f'e.g. {missing[0]}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out_dir = args.out_dir
    os.makedirs(out_dir, exist_ok=True)
    plan = [('train', args.num_train, args.seed),
            ('val', args.num_val, args.seed + VAL_SEED_OFFSET)]

    for split, num_images, seed in plan:
        settings = split_settings(split, num_images, args.image_size, seed, args.shapes)
        state = 'missing' if args.force else existing_split_state(out_dir, split, settings)
        if state == 'complete':
            print(f'[{split}] {annotation_file(out_dir, split)} is present and complete '
                  f'({num_images} images, seed {seed}): skipping (use --force to regenerate)')
            continue
        if state == 'different':
            print(f'error: {annotation_file(out_dir, split)} exists but was generated with other '
                  f'settings (or images are missing). Pass --force to replace it, or choose another '
                  f'--out-dir.', file=sys.stderr)
            return 2
        start = time.time()
        summary = generate_split(out_dir, split, num_images, args.image_size, seed, args.shapes)
        check_with_pycocotools(summary['ann_file'], osp.join(out_dir, split))
        print(f'[{split}] wrote {summary["images"]} images, {summary["annotations"]} boxes '
              f'{summary["per_category"]} to {summary["ann_file"]} in {time.time() - start:.1f} s'
              + (f'; {summary["dropped_segmentations"]} segmentations dropped (holes or < 3 points)'
                 if summary['dropped_segmentations'] else ''))
    print(f'demo dataset ready in {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
