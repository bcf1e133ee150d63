"""open_clip's ModifiedResNet trunk as an mmdet backbone (PyTorch): the reference twin of CLIPResNet."""
from typing import Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from jt_mm_plugins.utils.errors import InputError

STAGES = ('layer1', 'layer2', 'layer3', 'layer4')


@MODELS.register_module()
class OpenCLIPResNet(BaseModule):
    """CLIP's modified ResNet (`Radford et al., 2021 <https://arxiv.org/abs/2103.00020>`_) from
    open_clip, without its attention pool, returning the requested C2..C5 stage outputs.

    It is the PyTorch reference of the Jittor ``CLIPResNet`` (same state-dict keys, same arguments
    except freezing) and the backbone of the PyTorch twin of the mixed-mode demo.

    Args:
        layers (Sequence[int]): Bottleneck blocks per stage, e.g. ``[3, 4, 6, 3]`` for RN50.
        width (int): Stem width; stage ``i`` outputs ``width * 4 * 2**i`` channels. Defaults to 64.
        out_indices (Sequence[int]): Stages to return (0 = C2 ... 3 = C5). Defaults to (0, 1, 2, 3).
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, layers: Sequence[int], width: int = 64,
                 out_indices: Sequence[int] = (0, 1, 2, 3), init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        from open_clip.modified_resnet import ModifiedResNet
        if len(layers) != 4:
            raise InputError(f'OpenCLIPResNet: layers must have 4 entries, got {list(layers)}')
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise InputError(f'OpenCLIPResNet: out_indices must be within 0..3, got {out_indices}')
        net = ModifiedResNet(layers=list(layers), output_dim=width * 8, heads=max(width // 8, 1),
                             image_size=224, width=width)
        self.out_indices = tuple(out_indices)
        # Same attribute names as ModifiedResNet (so CLIP's keys); no attention pool, and no stage
        # beyond the last one requested.
        for name in ('conv1', 'bn1', 'act1', 'conv2', 'bn2', 'act2', 'conv3', 'bn3', 'act3',
                     'avgpool') + STAGES[:max(self.out_indices) + 1]:
            setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.act3(self.bn3(self.conv3(x))))
        outs = []
        for i, name in enumerate(STAGES[:max(self.out_indices) + 1]):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
