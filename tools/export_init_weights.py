"""Save a config's freshly initialised model weights, so that two configs can train from the same start.

A pure-Jittor config and its mmdet counterpart share parameter names, but each framework consumes the
random generator differently while building, so the same seed gives them different initial weights.
To compare training curves, export one model's initial weights and let both configs load them:

    python tools/export_init_weights.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py init.pth
    python tools/train.py configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py --cfg-options load_from=init.pth
    python tools/train.py configs/demo/faster_rcnn_r18_fpn_demo_jittor.py --cfg-options load_from=init.pth
    python tools/compare_curves.py work_dirs/<mmdet run>/vis_data/scalars.json \
        work_dirs/<jittor run>/vis_data/scalars.json

The file is an mmengine checkpoint (``{'state_dict': ..., 'meta': ...}``) with plain tensors only.
"""
import argparse
import os
import sys
from typing import Optional, Sequence

import torch

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config (mmdet or pure-Jittor)')
    parser.add_argument('out', help='checkpoint file to write')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.config):
        print(f'export_init_weights: config {args.config} not found', file=sys.stderr)
        return 2
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(args.config)  # also imports the config's custom_imports
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    torch.save({'state_dict': state,
                'meta': {'config': os.path.abspath(args.config), 'seed': args.seed,
                         'what': 'initial weights (tools/export_init_weights.py)'}}, args.out)
    print(f'export_init_weights: {len(state)} tensors of {type(model).__name__} '
          f'(seed {args.seed}) -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
