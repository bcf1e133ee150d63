"""UniDetector's ``CLIPResLayer`` RoI shared head: CLIP's ``layer4`` in Jittor."""
from typing import Optional, Sequence

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.backbones.clip_resnet import NUM_STAGES, CLIPBottleneck
from jt_mm_plugins.models.backbones.resnet import train_keeping_frozen
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@register_jittor_module()
class CLIPResLayer(jt.nn.Module):
    """CLIP's last ResNet stage as an RoI shared head (UniDetector's ``CLIPResLayer``): RoI
    features of CLIP's C4 (``width * 16`` channels, e.g. 1024 x 14 x 14 for RN50) become
    ``width * 32`` channels at half the size (2048 x 7 x 7).

    ``layer4`` is a stride-2 stage of ``layers[3]`` CLIP anti-aliased bottlenecks (the blocks of
    :class:`~jt_mm_plugins.models.backbones.CLIPResNet`). Keys are open_clip ModifiedResNet's
    under ``layer4.`` (``layer4.0.downsample.0.weight``...), so CLIP weights load unchanged.
    As in the original, every BatchNorm stays in eval mode while the head trains (running
    statistics used and never updated; the affine parameters learn).

    Args:
        layers (Sequence[int]): Blocks of CLIP's four stages (``[3, 4, 6, 3]`` for RN50); only
            ``layers[3]`` is used.
        output_dim (int): CLIP's embedding size; unused here, accepted as the original.
        input_resolution (int): CLIP's image size; unused, accepted as the original.
        width (int): CLIP's stem width (64 for RN50, 80 for RN50x4). Defaults to 64.
        pretrained (str, optional): Not supported: load weights with ``init_cfg`` or
            ``load_from``.
    """

    def __init__(self,
                 layers: Sequence[int] = (3, 4, 6, 3),
                 output_dim: int = 512,
                 input_resolution: int = 224,
                 width: int = 64,
                 pretrained: Optional[str] = None) -> None:
        super().__init__()
        if len(layers) != NUM_STAGES or int(layers[3]) < 1:
            raise InputError(f'CLIPResLayer: layers must hold {NUM_STAGES} block counts with a '
                             f'positive last one (e.g. [3, 4, 6, 3]), got {list(layers)}')
        if pretrained is not None:
            raise InputError('CLIPResLayer: pretrained= is not supported; load CLIP weights with '
                             "init_cfg=dict(type='Pretrained', ...) or load_from (keys layer4.*)")
        self.width = width
        self.in_channels = width * 16
        self.out_channels = width * 32
        planes = width * 8
        blocks = [CLIPBottleneck(self.in_channels, planes, stride=2)]
        blocks += [CLIPBottleneck(self.out_channels, planes) for _ in range(1, int(layers[3]))]
        self.layer4 = jt.nn.Sequential(*blocks)

    def train(self, mode: bool = True) -> 'CLIPResLayer':
        """Train mode with every BatchNorm in eval mode (their affine parameters still learn)."""
        if not mode:
            return self.eval()
        return train_keeping_frozen(self, [], norm_eval=True)

    def execute(self, x: jt.Var) -> jt.Var:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f'CLIPResLayer expects (N, {self.in_channels}, H, W) RoI features, '
                             f'got {tuple(x.shape)}')
        if self.is_training():
            self.train()  # a Jittor parent's train() sets the flags without calling ours
        return self.layer4(x)
