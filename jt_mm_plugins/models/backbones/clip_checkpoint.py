"""Read CLIP ResNet image weights for :class:`~jt_mm_plugins.models.backbones.CLIPResNet`.

Accepted files:

* OpenAI CLIP releases (``RN50.pt``, ...): TorchScript archives whose state dict has the image
  tower under ``visual.`` (stored in float16; converted to float32 here);
* open_clip checkpoints or plain pickled state dicts, possibly wrapped in ``{'state_dict': ...}``
  and with a ``module.`` prefix, with the image tower under ``visual.``, ``visual.trunk.`` or bare.

Convert once for mmengine's ``init_cfg=dict(type='Pretrained', checkpoint=...)``::

    python -m jt_mm_plugins.models.backbones.clip_checkpoint RN50.pt clip_rn50_visual.pth
"""
import argparse
import logging
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections import Counter
from typing import Dict, Iterable, Optional

import torch
from mmengine.logging import print_log

VISUAL_PREFIXES = ('visual.trunk.', 'visual.')
# Top-level names of open_clip's ModifiedResNet; a bare state dict is reduced to these.
TRUNK_GROUPS = ('conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3', 'layer1', 'layer2', 'layer3',
                'layer4', 'attnpool')
_STAGE_GROUP = re.compile(r'^layer[1-4]$')


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript archives carry ``constants.pkl`` and ``code/``; ``torch.save`` files do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('/constants.pkl') for name in archive.namelist())


def _read_state_dict(path: str) -> Dict[str, object]:
    if _is_torchscript_archive(path):
        with warnings.catch_warnings():
            # torch deprecates TorchScript, but OpenAI's CLIP files exist only in that format.
            warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')
            return dict(torch.jit.load(path, map_location='cpu').state_dict())
    try:
        # weights_only: a weights file has no business running code when it is unpickled.
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f'{path} holds objects other than tensors and plain containers, which are not '
            f'unpickled here for safety. Re-save only its state dict (torch.save(sd, ...)). '
            f'Details: {err}') from err
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{path}: expected a state dict (or a dict with "state_dict"), got '
                        f'{type(checkpoint).__name__}')
    for wrapper_key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(wrapper_key), dict):
            checkpoint = checkpoint[wrapper_key]
            break
    if checkpoint and all(k.startswith('module.') for k in checkpoint):
        checkpoint = {k[len('module.'):]: v for k, v in checkpoint.items()}
    return checkpoint


def _select_visual(state_dict: Dict[str, object], path: str) -> Dict[str, object]:
    for prefix in VISUAL_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    # Bare: the image tower's own state dict (maybe saved together with unrelated entries).
    visual = {k: v for k, v in state_dict.items() if k.split('.')[0] in TRUNK_GROUPS}
    if not visual:
        sample = ', '.join(list(state_dict)[:5])
        raise ValueError(f'{path}: found no CLIP image-tower keys (none under "visual.", '
                         f'"visual.trunk." or bare conv1/layer1...); first keys: {sample}')
    return visual


def load_clip_visual_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Load the image tower of a CLIP ResNet checkpoint with open_clip ``ModifiedResNet`` keys.

    Args:
        path (str): An OpenAI CLIP ``.pt`` (TorchScript) file, or an open_clip / plain state dict.

    Returns:
        dict[str, torch.Tensor]: Keys without the ``visual.`` (or ``visual.trunk.``) prefix, e.g.
        ``conv1.weight``, ``layer1.0.downsample.0.weight``, ``attnpool.c_proj.weight``; floating
        tensors in float32. Text-tower entries are left out.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'CLIP checkpoint not found: {path}')
    visual = _select_visual(_read_state_dict(path), path)
    if 'conv1.weight' not in visual or not any(k.startswith('layer1.') for k in visual):
        raise ValueError(f'{path} is not a CLIP ResNet (ModifiedResNet) checkpoint: it has no '
                         f'conv1/layer1 image-trunk weights (a ViT CLIP model?). CLIPResNet needs '
                         f'an RN50/RN101/RN50x4/... model.')
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in visual.items()}


def filter_for_backbone(state_dict: Dict[str, torch.Tensor], model_keys: Iterable[str],
                        logger: Optional[str] = 'current') -> Dict[str, torch.Tensor]:
    """Drop the parts of a CLIP image state dict that the backbone does not have.

    ``attnpool.*`` (CLIP's attention pool: :class:`CLIPResNet` has none) and ``layerK.*`` of stages
    that were not built (``out_indices`` ending early) are dropped, with one message per group.
    Everything else is kept, so a strict load still reports any real mismatch.

    Args:
        state_dict (dict[str, torch.Tensor]): E.g. from :func:`load_clip_visual_state_dict`.
        model_keys (Iterable[str]): The backbone's state-dict keys.
        logger (str, optional): Passed to mmengine's ``print_log``. Defaults to 'current'.

    Returns:
        dict[str, torch.Tensor]: The filtered state dict (a new dict; tensors are shared).
    """
    model_groups = {k.split('.')[0] for k in model_keys}
    kept, dropped = {}, Counter()
    for key, value in state_dict.items():
        group = key.split('.')[0]
        droppable = group == 'attnpool' or _STAGE_GROUP.match(group)
        if droppable and group not in model_groups:
            dropped[group] += 1
        else:
            kept[key] = value
    for group, count in sorted(dropped.items()):
        if group == 'attnpool':
            reason = 'the backbone has no attention pool (CLIP uses it only for image embeddings)'
        else:
            reason = 'that stage is not built (out_indices ends before it)'
        print_log(f'CLIP checkpoint: dropped {count} {group}.* keys: {reason}.', logger=logger,
                  level=logging.INFO)
    return kept


def convert(src: str, dst: str, keep_attnpool: bool = False) -> Dict[str, torch.Tensor]:
    """Write ``{'state_dict': ...}`` with CLIPResNet keys from a CLIP checkpoint, with progress."""
    print(f'[clip_checkpoint] reading {src}', flush=True)
    state_dict = load_clip_visual_state_dict(src)
    num_values = sum(v.numel() for v in state_dict.values() if torch.is_tensor(v))
    print(f'[clip_checkpoint] image tower: {len(state_dict)} tensors, '
          f'{num_values / 1e6:.2f} M values', flush=True)
    if not keep_attnpool:
        num_attnpool = sum(k.startswith('attnpool.') for k in state_dict)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith('attnpool.')}
        print(f'[clip_checkpoint] dropped {num_attnpool} attnpool.* tensors (CLIPResNet has no '
              f'attention pool; --keep-attnpool keeps them)', flush=True)
    out_dir = os.path.dirname(os.path.abspath(dst))
    os.makedirs(out_dir, exist_ok=True)
    print(f'[clip_checkpoint] writing {dst}', flush=True)
    torch.save({'state_dict': state_dict,
                'meta': {'source': os.path.basename(src), 'converted_by': __name__}}, dst)
    print(f'[clip_checkpoint] done: {len(state_dict)} tensors; use it with '
          f"init_cfg=dict(type='Pretrained', checkpoint='{dst}')", flush=True)
    return state_dict


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Convert an OpenAI CLIP / open_clip ResNet checkpoint into an mmengine '
        'checkpoint of CLIPResNet weights ({"state_dict": ...}).')
    parser.add_argument('src', help='CLIP checkpoint, e.g. RN50.pt')
    parser.add_argument('dst', help='output file, e.g. clip_rn50_visual.pth')
    parser.add_argument('--keep-attnpool', action='store_true',
                        help='keep the attention-pool weights (unused by CLIPResNet)')
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, args.keep_attnpool)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as err:
        print(f'[clip_checkpoint] error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
