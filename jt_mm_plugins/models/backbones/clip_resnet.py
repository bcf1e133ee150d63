"""CLIP's modified ResNet trunk in Jittor, the image backbone of UniDetector."""
from collections import OrderedDict
from typing import List, Sequence, Tuple

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.activation import ReLU
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

nn = jt.nn

NUM_STAGES = 4


class CLIPBottleneck(nn.Module):
    """CLIP's anti-aliased bottleneck block.

    All convolutions have stride 1; a stride is applied by an average pool after the 3x3
    convolution, and the shortcut is prepended with the same average pool before its 1x1
    convolution. Attribute names follow open_clip's ``Bottleneck`` so that state-dict keys equal
    CLIP's.

    Args:
        inplanes (int): Input channels.
        planes (int): Channels of the 1x1 and 3x3 convolutions; the block outputs
            ``planes * expansion`` channels.
        stride (int): Spatial down-sampling factor of the block. Defaults to 1.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.act1 = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.act2 = ReLU()
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self.act3 = ReLU()
        self.stride = stride

        self.downsample = None
        if stride > 1 or inplanes != out_channels:
            # open_clip names the pool "-1" so that the conv and BN keep CLIP's keys ".0"/".1".
            self.downsample = nn.Sequential(OrderedDict([
                ('-1', nn.AvgPool2d(stride) if stride > 1 else nn.Identity()),
                ('0', Conv2d(inplanes, out_channels, 1, bias=False)),
                ('1', BatchNorm2d(out_channels)),
            ]))

    def execute(self, x: jt.Var) -> jt.Var:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        return self.act3(out + identity)


@register_jittor_module()
class CLIPResNet(nn.Module):
    """The modified ResNet image trunk of CLIP (`Learning Transferable Visual Models From
    Natural Language Supervision <https://arxiv.org/abs/2103.00020>`_), as UniDetector
    (`Detecting Everything in the Open World <https://arxiv.org/abs/2303.11749>`_) uses it for
    detection.

    Differences from torchvision's ResNet: a stem of three 3x3 convolutions followed by a 2x2
    average pool instead of one 7x7 convolution and a max pool, and anti-aliased strided blocks (see
    :class:`CLIPBottleneck`). CLIP's attention pool is not part of the trunk: CLIP checkpoints load
    after :func:`~jt_mm_plugins.models.backbones.clip_checkpoint.filter_for_backbone` drops it. The
    state-dict keys equal open_clip ``ModifiedResNet``'s (``conv1.weight``, ``bn1.running_mean``,
    ``layer1.0.downsample.0.weight``, ...).

    Args:
        layers (Sequence[int]): Number of bottleneck blocks of each of the four stages, e.g.
            ``(3, 4, 6, 3)`` for CLIP RN50, ``(3, 4, 23, 3)`` for RN101.
            Defaults to ``(3, 4, 6, 3)``.
        width (int): Channels after the stem; stage ``i`` outputs ``width * 2**i * 4`` channels.
            CLIP uses 64 (RN50, RN101), 80 (RN50x4), 96 (RN50x16), 128 (RN50x64). Defaults to 64.
        out_indices (Sequence[int]): Stages whose outputs are returned, 0..3 meaning C2..C5. Stages
            after the last requested one are not built. Defaults to ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem and stages 1..k: their
            parameters get ``requires_grad = False`` and their BatchNorms stay in eval mode.
            Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode (running statistics used and not
            updated) while the module trains; their affine parameters still learn.
            Defaults to False.
    """

    def __init__(self,
                 layers: Sequence[int] = (3, 4, 6, 3),
                 width: int = 64,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False) -> None:
        super().__init__()
        self._check_args(layers, width, out_indices, frozen_stages)
        self.stage_blocks = [int(n) for n in layers]
        self.width = width
        self.out_indices = tuple(sorted(int(i) for i in out_indices))
        self.num_built_stages = self.out_indices[-1] + 1
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self._init_stem(width)
        self._init_stages(width)
        self._freeze_stages()

    @staticmethod
    def _check_args(layers: Sequence[int], width: int, out_indices: Sequence[int],
                    frozen_stages: int) -> None:
        if len(layers) != NUM_STAGES or any(int(n) < 1 for n in layers):
            raise InputError(f'CLIPResNet: layers must hold {NUM_STAGES} positive block counts '
                             f'(e.g. [3, 4, 6, 3]), got {list(layers)}')
        if width < 2 or width % 2:
            raise InputError(f'CLIPResNet: width must be an even number >= 2, got {width}')
        if len(out_indices) == 0 or len(set(out_indices)) != len(out_indices) or any(
                not 0 <= int(i) < NUM_STAGES for i in out_indices):
            raise InputError(f'CLIPResNet: out_indices must be distinct stage indices in '
                             f'0..{NUM_STAGES - 1} (C2..C5), got {tuple(out_indices)}')
        num_built = max(int(i) for i in out_indices) + 1
        if not -1 <= frozen_stages <= num_built:
            raise InputError(f'CLIPResNet: frozen_stages must be in -1..{num_built} (stages built '
                             f'for out_indices={tuple(out_indices)}), got {frozen_stages}')

    def _init_stem(self, width: int) -> None:
        """The three-convolution stem and its 2x2 average pool (names as open_clip)."""
        half = width // 2
        self.conv1 = Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = BatchNorm2d(half)
        self.act1 = ReLU()
        self.conv2 = Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(half)
        self.act2 = ReLU()
        self.conv3 = Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = BatchNorm2d(width)
        self.act3 = ReLU()
        self.avgpool = nn.AvgPool2d(2)

    def _init_stages(self, width: int) -> None:
        """``layer1`` .. ``layerN`` up to the last stage in ``out_indices``."""
        inplanes = width
        for i in range(self.num_built_stages):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [CLIPBottleneck(inplanes, planes, stride)]
            inplanes = planes * CLIPBottleneck.expansion
            blocks += [CLIPBottleneck(inplanes, planes) for _ in range(1, self.stage_blocks[i])]
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))

    def _stem_modules(self) -> List[nn.Module]:
        return [self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3]

    def _frozen_modules(self) -> List[nn.Module]:
        """Modules of the stem and stages 1..frozen_stages."""
        frozen = self._stem_modules() if self.frozen_stages >= 0 else []
        frozen += [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]
        return frozen

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            for param in module.parameters():
                param.requires_grad = False

    def _modules_kept_in_eval(self) -> List[nn.Module]:
        """BatchNorms that must run in eval mode while the module trains."""
        roots = [self] if self.norm_eval else self._frozen_modules()
        return [m for root in roots for m in root.modules() if isinstance(m, BatchNorm2d)]

    def _apply_norm_modes(self) -> None:
        # Jittor's Module.eval() would also stop the gradients of the affine parameters, which must
        # keep learning under norm_eval: only switch the mode flag.
        for m in self._modules_kept_in_eval():
            m.is_train = False

    def train(self, mode: bool = True) -> 'CLIPResNet':
        """Train mode, keeping frozen (and, with ``norm_eval``, all) BatchNorms in eval mode."""
        if not mode:
            return self.eval()
        super().train()
        self._apply_norm_modes()
        return self

    def stem(self, x: jt.Var) -> jt.Var:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.act3(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def execute(self, x: jt.Var) -> Tuple[jt.Var, ...]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f'CLIPResNet expects (N, 3, H, W) images, got shape {tuple(x.shape)}')
        if self.is_training():
            # A Jittor parent's train() sets every descendant's flag without calling our train().
            self._apply_norm_modes()
        x = self.stem(x)
        outs = []
        for i in range(self.num_built_stages):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
