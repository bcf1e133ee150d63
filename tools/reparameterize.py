"""Write a deploy (re-parameterised) checkpoint of a Gold-YOLO / RepVGG-style model.

    python tools/reparameterize.py CONFIG CKPT OUT

Builds CONFIG's model, loads CKPT (an mmengine checkpoint or a bare state dict) strictly, fuses
every RepVGG block into one 3x3 conv (``switch_to_deploy()``) and saves ``{'state_dict', 'meta'}``
to OUT. The result loads into the same config with ``model.backbone.deploy=True`` and
``model.neck.deploy=True`` (e.g. ``--cfg-options model.backbone.deploy=True
model.neck.deploy=True`` for tools/test.py); the fused model computes the unfused one's eval-mode
function. A checkpoint that is already fused, or that does not match CONFIG, is refused naming the
keys.

``--time N`` also times the raw forward (``mode='tensor'``, eval, batch 1, ``--image-size``,
default 640) of the model before and after fusing: the median of N runs after 2 warm-up runs each.
"""
import argparse
import os
import statistics
import sys
import time
from typing import Optional, Sequence

import torch


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='training config of the model (deploy=False)')
    parser.add_argument('checkpoint', help='training checkpoint of that config')
    parser.add_argument('out', help='deploy checkpoint to write')
    parser.add_argument('--time', type=int, default=0, metavar='N',
                        help='time N batch-1 forwards before and after fusing (0: do not)')
    parser.add_argument('--image-size', type=int, default=640)
    return parser.parse_args(argv)


def median_forward_ms(model, image_size: int, runs: int) -> float:
    """Median wall time (ms) of ``runs`` eval forwards of one random image, after 2 warm-ups."""
    x = torch.rand(1, 3, image_size, image_size)
    times = []
    with torch.no_grad():
        for i in range(runs + 2):
            start = time.perf_counter()
            model(x, mode='tensor')
            if i >= 2:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not os.path.isfile(path):
            print(f'reparameterize: {what} {path} not found', file=sys.stderr)
            return 2
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'switch_to_deploy'):
        print(f'reparameterize: {type(model).__name__} has no switch_to_deploy()', file=sys.stderr)
        return 2
    checkpoint = torch.load(args.checkpoint, map_location='cpu', weights_only=False)
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        print(f'reparameterize: {args.checkpoint} holds no state dict', file=sys.stderr)
        return 2
    if any('rbr_reparam' in k for k in state):
        print(f'reparameterize: {args.checkpoint} is already a deploy checkpoint (rbr_reparam '
              f'keys)', file=sys.stderr)
        return 2
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        print(f'reparameterize: {args.checkpoint} does not match {args.config}: missing '
              f'{result.missing_keys[:5]}..., unexpected {result.unexpected_keys[:5]}...',
              file=sys.stderr)
        return 2
    model.eval()
    unfused_ms = median_forward_ms(model, args.image_size, args.time) if args.time else None
    model.switch_to_deploy()
    fused = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({'state_dict': fused,
                'meta': {'config': os.path.abspath(args.config),
                         'source': os.path.abspath(args.checkpoint),
                         'what': 'deploy weights (tools/reparameterize.py): load with '
                                 'model.backbone.deploy=True model.neck.deploy=True'}}, args.out)
    print(f'reparameterize: {len(state)} -> {len(fused)} tensors -> {args.out}')
    if args.time:
        fused_ms = median_forward_ms(model, args.image_size, args.time)
        print(f'reparameterize: batch-1 forward at {args.image_size}px, median of {args.time}: '
              f'unfused {unfused_ms:.1f} ms, fused {fused_ms:.1f} ms '
              f'({fused_ms / unfused_ms:.2f}x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
