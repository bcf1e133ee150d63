"""CLIP text embeddings of class names, for UniDetector's CLIP box heads (``zeroshot_path``).

The output is a ``.npy`` of shape (num_classes, embed_dim), float16, **not** L2-normalised, in
the class order of the input: the layout ``BBoxHeadCLIP`` / ``BBoxHeadCLIPPartitioned`` /
``BBoxHeadCLIPInference`` read (they append the background column and normalise themselves). As
the original's ``dump_clip_features_manyprompt.py`` (../shared/specs/seed-systems.md 1.3), each
class embedding is CLIP's ``encode_text`` averaged over the prompt templates, without
normalising before or after the average.

Class names come from

* ``--ann-file``: a COCO, Objects365 or LVIS annotation JSON (``categories`` sorted by ``id``, their
  ``name``; LVIS's underscores become spaces, as ``--class-names``), or
* ``--class-names``: a text file with one name per line (``clip_embeddings/*.txt`` hold COCO,
  Objects365 and LVIS v1 / v0.5 in mmdet's order), or a name of those lists (``coco``,
  ``objects365``, ``lvis_v1``, ``lvis_v0.5``).

Prompts: ``--prompt ensemble`` (default: CLIP's 80 ImageNet templates,
``open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES``), ``--prompt single`` (``--template``,
default ``'a {}'``: the original's ``a+cname`` files), or ``--prompt-file`` (one template with
``{}`` per line).

Model: any open_clip architecture (``--model RN50``, ``ViT-B-32``...; or a model config ``.json``
file, e.g. ``clip_embeddings/model_configs/demo-tiny-clip.json``) with weights from a local file
(``--weights``: OpenAI's TorchScript ``.pt`` such as ``RN50.pt``, or an open_clip checkpoint).
Nothing is downloaded: without ``--weights`` the tool refuses unless ``--random-weights`` is given
(random text tower seeded by ``--seed``: for tests and the shapes demo, the embeddings then mean
nothing).

Long runs (1203 LVIS classes x 80 prompts) show a progress bar and save their progress to
``OUT.partial.npz`` after every batch of classes: a run stopped half way resumes where it stopped
when started again with the same settings. A finished ``OUT`` with the same settings (recorded in
``OUT.json``, with the class names in order) is not recomputed; ``--force`` recomputes.

Examples::

    python tools/generate_clip_embeddings.py --class-names lvis_v1 --model RN50 \\
        --weights /models/clip/RN50.pt --out data/metadata/lvis_v1_clip_a+cname_rn50_manyprompt.npy
    python tools/generate_clip_embeddings.py --ann-file data/coco/annotations/instances_val2017.json \\
        --model RN50 --weights RN50.pt --prompt single --out coco_clip_a+cname_rn50.npy
    python tools/generate_clip_embeddings.py --class-names names.txt --random-weights \\
        --model clip_embeddings/model_configs/demo-tiny-clip.json --out /tmp/x.npy
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import sys
import zipfile
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASS_LIST_DIR = osp.join(REPO_ROOT, 'clip_embeddings')
#: mmdet dataset classes whose METAINFO gives the shipped class lists (--write-class-lists).
MMDET_CLASS_LISTS = {
    'coco': 'CocoDataset',
    'objects365': 'Objects365V2Dataset',
    'lvis_v1': 'LVISV1Dataset',
    'lvis_v0.5': 'LVISV05Dataset',
}


class ToolError(Exception):
    """Bad input; the message names the file or option."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='CLIP text embeddings of class names (.npy, float16, not normalised) for '
        "UniDetector's CLIP box heads.")
    names = parser.add_mutually_exclusive_group()
    names.add_argument('--ann-file', help='COCO / Objects365 / LVIS annotation JSON')
    names.add_argument('--class-names',
                       help='text file, one class name per line, or one of '
                       f'{", ".join(MMDET_CLASS_LISTS)} (the lists in clip_embeddings/)')
    parser.add_argument('--out', help='output .npy')
    parser.add_argument('--model', default='RN50',
                        help='open_clip architecture name, or a model config .json file '
                        '(default: RN50)')
    parser.add_argument('--weights', help="local CLIP weights: OpenAI's TorchScript .pt or an "
                        'open_clip checkpoint (.pt / .pth / .bin / .safetensors)')
    parser.add_argument('--random-weights', action='store_true',
                        help='no weights: a randomly initialised model (tests, demos)')
    parser.add_argument('--seed', type=int, default=0, help='seed of --random-weights')
    parser.add_argument('--prompt', choices=['ensemble', 'single'], default='ensemble',
                        help="ensemble: CLIP's 80 ImageNet templates, averaged; single: "
                        '--template (default: ensemble)')
    parser.add_argument('--template', default='a {}',
                        help="the template of --prompt single (default: 'a {}')")
    parser.add_argument('--prompt-file',
                        help='text file of templates with {} (one a line), instead of --prompt')
    parser.add_argument('--keep-underscores', action='store_true',
                        help="keep '_' in class names (default: LVIS-style underscores become "
                        'spaces)')
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    parser.add_argument('--batch-size', type=int, default=256,
                        help='prompts encoded at once (default: 256)')
    parser.add_argument('--force', action='store_true',
                        help='recompute even if OUT holds these settings')
    parser.add_argument('--write-class-lists', metavar='DIR',
                        help="write the class lists of mmdet's COCO, Objects365, LVIS v1 and "
                        'v0.5 datasets as DIR/<name>.txt and exit')
    args = parser.parse_args(argv)
    if args.write_class_lists:
        return args
    if not (args.ann_file or args.class_names):
        parser.error('give the class names: --ann-file or --class-names')
    if not args.out:
        parser.error('--out is required')
    if not args.out.endswith('.npy'):
        parser.error(f'--out must name a .npy file, got {args.out}')
    if args.weights and args.random_weights:
        parser.error('--weights and --random-weights exclude each other')
    if not args.weights and not args.random_weights:
        parser.error('no CLIP weights: pass --weights FILE (a local OpenAI .pt or open_clip '
                     'checkpoint; nothing is downloaded), or --random-weights for a randomly '
                     'initialised model whose embeddings mean nothing (tests, demos)')
    if args.weights and not osp.isfile(args.weights):
        parser.error(f'--weights file not found: {args.weights}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def write_class_lists(out_dir: str) -> Dict[str, int]:
    """Write mmdet's dataset class names (METAINFO) as ``out_dir/<name>.txt``."""
    import mmdet.datasets as mmdet_datasets
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, dataset in MMDET_CLASS_LISTS.items():
        classes = getattr(mmdet_datasets, dataset).METAINFO['classes']
        with open(osp.join(out_dir, f'{name}.txt'), 'w') as f:
            f.write(''.join(f'{c}\n' for c in classes))
        counts[name] = len(classes)
    return counts


def read_lines(path: str, what: str) -> List[str]:
    """Non-empty stripped lines of a text file; an error naming the file if there are none."""
    if not osp.isfile(path):
        raise ToolError(f'{what} file not found: {path}')
    with open(path, encoding='utf-8') as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line]
    if not lines:
        raise ToolError(f'{what} file {path} is empty')
    return lines


def class_names_from_annotations(path: str) -> List[str]:
    """Category names of a COCO / Objects365 / LVIS JSON, sorted by category id."""
    if not osp.isfile(path):
        raise ToolError(f'--ann-file not found: {path}')
    with open(path) as f:
        data = json.load(f)
    categories = data.get('categories') if isinstance(data, dict) else None
    if not categories:
        raise ToolError(f'--ann-file {path} has no "categories"')
    return [c['name'] for c in sorted(categories, key=lambda c: c['id'])]


def resolve_class_names(args: argparse.Namespace) -> List[str]:
    if args.ann_file:
        names = class_names_from_annotations(args.ann_file)
    elif args.class_names in MMDET_CLASS_LISTS:
        names = read_lines(osp.join(CLASS_LIST_DIR, f'{args.class_names}.txt'), 'class-name')
    else:
        names = read_lines(args.class_names, '--class-names')
    if not args.keep_underscores:
        names = [n.replace('_', ' ') for n in names]
    return names


def resolve_templates(args: argparse.Namespace) -> List[str]:
    if args.prompt_file:
        templates = read_lines(args.prompt_file, '--prompt-file')
    elif args.prompt == 'single':
        templates = [args.template]
    else:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
        return [t('{}') for t in OPENAI_IMAGENET_TEMPLATES]
    source = args.prompt_file or '--template'
    for t in templates:
        if t.count('{}') != 1:
            raise ToolError(f'{source}: template {t!r} must contain "{{}}" exactly once (the '
                            'class name goes there)')
    return templates


def model_name(model: str) -> str:
    """Register a model config ``.json`` with open_clip (its name is the file's stem); check that
    an architecture name exists."""
    import open_clip
    if model.endswith('.json'):
        if not osp.isfile(model):
            raise ToolError(f'--model config file not found: {model}')
        open_clip.add_model_config(model)
        return osp.splitext(osp.basename(model))[0]
    if model not in open_clip.list_models():
        raise ToolError(f'--model {model!r} is not an open_clip architecture; known: '
                        f'{", ".join(open_clip.list_models())}')
    return model


def is_torchscript(path: str) -> bool:
    """OpenAI's CLIP files are TorchScript archives (a zip with ``code/`` inside)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any('/code/' in n or n.startswith('code/') for n in z.namelist())


def build_model(args: argparse.Namespace, name: str):
    """The CLIP model in eval mode on ``args.device`` (float32)."""
    import open_clip
    import torch
    if args.random_weights:
        torch.manual_seed(args.seed)
        model = open_clip.create_model(name, pretrained=None, device=args.device)
    elif is_torchscript(args.weights):
        from open_clip.openai import load_openai_model
        model = load_openai_model(args.weights, precision='fp32', device=args.device)
    else:
        try:
            model = open_clip.create_model(name, pretrained=args.weights, device=args.device)
        except RuntimeError as e:  # a state dict of another architecture
            raise ToolError(f'--weights {args.weights} does not fit --model {args.model}: {e}')
    return model.eval()


def settings_key(args: argparse.Namespace, names: List[str], templates: List[str]) -> Dict:
    weights = None
    if args.weights:
        weights = dict(path=osp.abspath(args.weights), size=osp.getsize(args.weights),
                       mtime=int(os.stat(args.weights).st_mtime))
    settings = dict(model=args.model, weights=weights,
                    random_seed=args.seed if args.random_weights else None,
                    templates=templates, class_names=names)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return dict(settings, key=digest)


def encode(model, tokenizer, names: List[str], templates: List[str], args, done_rows,
           on_progress) -> 'np.ndarray':
    """Rows ``len(done_rows):`` of the embedding matrix, class by class (batches of whole
    classes), calling ``on_progress(rows)`` after each batch."""
    import numpy as np
    import torch
    from tqdm import tqdm

    rows = list(done_rows)
    per_batch = max(1, args.batch_size // len(templates))
    with torch.no_grad(), tqdm(total=len(names), initial=len(rows), unit='class',
                               desc='CLIP text embeddings') as bar:
        for start in range(len(rows), len(names), per_batch):
            batch = names[start:start + per_batch]
            texts = [t.format(n) for n in batch for t in templates]
            tokens = tokenizer(texts).to(args.device)
            features = model.encode_text(tokens).float()
            features = features.reshape(len(batch), len(templates), -1).mean(dim=1)
            rows.extend(features.cpu().numpy())
            on_progress(rows)
            bar.update(len(batch))
    return np.stack(rows).astype(np.float16)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.write_class_lists:
        counts = write_class_lists(args.write_class_lists)
        print(f'wrote {counts} to {args.write_class_lists}')
        return 0
    import numpy as np
    try:
        names = resolve_class_names(args)
        templates = resolve_templates(args)
        name = model_name(args.model)
        settings = settings_key(args, names, templates)
        meta_path = args.out[:-len('.npy')] + '.json'
        partial_path = args.out + '.partial.npz'
        if not args.force and osp.isfile(args.out) and osp.isfile(meta_path):
            with open(meta_path) as f:
                if json.load(f).get('key') == settings['key']:
                    print(f'{args.out} holds these settings ({len(names)} classes): skipping '
                          '(--force recomputes)')
                    return 0
        done = []
        if not args.force and osp.isfile(partial_path):
            partial = np.load(partial_path)
            if str(partial['key']) == settings['key']:
                done = list(partial['rows'])
                print(f'resuming from {partial_path}: {len(done)} of {len(names)} classes done')
        model = build_model(args, name)
        import open_clip
        tokenizer = open_clip.get_tokenizer(name)
    except ToolError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)

    def save_progress(rows):
        tmp = partial_path + '.tmp.npz'
        np.savez(tmp, key=np.array(settings['key']), rows=np.stack(rows).astype(np.float32))
        os.replace(tmp, partial_path)

    embeddings = encode(model, tokenizer, names, templates, args, done, save_progress)
    np.save(args.out, embeddings)
    with open(meta_path, 'w') as f:
        json.dump(dict(settings, shape=list(embeddings.shape), dtype='float16',
                       normalized=False), f, indent=1)
    if osp.isfile(partial_path):
        os.remove(partial_path)
    print(f'wrote {args.out}: {embeddings.shape[0]} classes x {embeddings.shape[1]} float16 '
          f'({len(templates)} prompt(s) per class; settings in {meta_path})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
