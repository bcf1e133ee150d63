"""The Jittor components with a PyTorch reference, as (candidate, reference, inputs) builders.

Adding a pair is one entry: a function decorated with ``@alignment_pair('name', ...)`` that builds the
bridged Jittor module and its reference with identical (random) weights and returns sample inputs.
``tools/align.py``, ``tools/benchmark.py`` and the alignment tests all read this table.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch

from .compare import DEFAULT_TOLERANCES, Tolerances, randomize_norm_statistics

Built = Tuple[torch.nn.Module, torch.nn.Module, List[torch.Tensor]]


@dataclass
class AlignmentPair:
    name: str
    description: str
    # (size, seed) -> (bridged Jittor module, PyTorch reference, positional inputs (tensors or
    # tuples of tensors))
    build: Callable[[str, int], Built]
    tolerances: Tolerances = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))


ALIGNMENT_PAIRS: Dict[str, AlignmentPair] = {}


def alignment_pair(name: str, description: str, tolerances: Tolerances = None):

    def decorator(build):
        ALIGNMENT_PAIRS[name] = AlignmentPair(name, description, build,
                                              dict(tolerances or DEFAULT_TOLERANCES))
        return build

    return decorator


def get_pair(name: str) -> AlignmentPair:
    if name not in ALIGNMENT_PAIRS:
        raise KeyError(f'unknown alignment pair {name!r}; available: {sorted(ALIGNMENT_PAIRS)}')
    return ALIGNMENT_PAIRS[name]


def _sized(size: str, small, large):
    if size not in ('small', 'large'):
        raise ValueError(f'size must be "small" or "large", got {size!r}')
    return small if size == 'small' else large


def _load_identical(candidate: torch.nn.Module, reference: torch.nn.Module, seed: int) -> None:
    randomize_norm_statistics(reference, seed)
    own = candidate.state_dict()
    candidate.load_state_dict({k: v for k, v in reference.state_dict().items() if k in own},
                              strict=True)


@alignment_pair('clip_resnet', "CLIPResNet (Jittor) vs open_clip's ModifiedResNet trunk")
def build_clip_resnet(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    layers, width, hw, batch = _sized(size, ([1, 1, 1, 1], 16, 64, 2), ([3, 4, 6, 3], 64, 224, 2))
    reference = MODELS.build(dict(type='OpenCLIPResNet', layers=layers, width=width))
    candidate = MODELS.build(dict(type='CLIPResNet', layers=layers, width=width))
    _load_identical(candidate, reference, seed)
    return candidate, reference, [torch.randn(batch, 3, hw, hw)]


@alignment_pair('fpn', "JittorFPN vs mmdet's FPN (add_extra_convs='on_input')")
def build_fpn(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    in_channels, out_channels, hw = _sized(size, ([8, 16, 32, 64], 16, 32),
                                           ([256, 512, 1024, 2048], 256, 200))
    cfg = dict(in_channels=in_channels, out_channels=out_channels, num_outs=5,
               add_extra_convs='on_input')
    reference = MODELS.build(dict(type='FPN', **cfg))
    candidate = MODELS.build(dict(type='JittorFPN', **cfg))
    _load_identical(candidate, reference, seed)
    feats = tuple(torch.randn(2, c, hw // 2**i, hw // 2**i) for i, c in enumerate(in_channels))
    return candidate, reference, [feats]  # FPN takes one argument: the tuple of levels


@alignment_pair('resnet', "JittorResNet vs mmdet's ResNet")
def build_resnet(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    depth, hw = _sized(size, (18, 64), (50, 224))
    cfg = dict(depth=depth, out_indices=(0, 1, 2, 3), norm_eval=False)
    reference = MODELS.build(dict(type='ResNet', **cfg))
    candidate = MODELS.build(dict(type='JittorResNet', **cfg))
    _load_identical(candidate, reference, seed)
    return candidate, reference, [torch.randn(2, 3, hw, hw)]
