"""ShuffleNetV2 backbone in Jittor, NanoDet's (``nanodet/model/backbone/shufflenetv2.py``) with
torchvision's parameter names.

`ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design
<https://arxiv.org/abs/1807.11164>`_. The layers and their order are torchvision's
``shufflenet_v2_x*`` (which NanoDet's copies): a 3x3/2 stem conv + BN + activation (``conv1.0``,
``conv1.1``), a 3x3/2 max pool, three stages (``stage2``, ``stage3``, ``stage4``) of
:class:`ShuffleV2Block` and, with ``with_last_conv``, a 1x1 conv + BN + activation (``conv5``).
So a torchvision ImageNet checkpoint loads strictly once ``fc.*`` is dropped (and ``conv5.*`` too
when ``with_last_conv=False``).

Differences from NanoDet's class, all stated:

* ``conv5`` is a top-level module (torchvision's key ``conv5.*``); NanoDet appends it to
  ``stage4`` (key ``stage4.conv5.*``). The computation is the same: stage 4's output is taken after
  it.
* ``pretrain`` would download torchvision weights: here it must stay False; load a local
  torchvision file with ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` instead (mmengine
  loads it non-strictly and reports ``fc.*`` as unexpected).
* ``kernal_size`` (sic, NanoDet's name) is stored but unused in NanoDet (every depthwise conv is
  3x3); only 3 is accepted here, so a config asking for another size does not silently get 3x3.
* ``frozen_stages``, ``norm_eval`` and ``norm_cfg`` are mmdet-style additions (NanoDet trains
  everything with BatchNorm; the defaults keep that).
"""
from typing import List, Sequence, Tuple, Union

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.backbones.resnet import freeze_modules, train_keeping_frozen
from jt_mm_plugins.models.layers.activation import build_activation_layer
from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

nn = jt.nn

# Output channels of the stem, stage2..stage4 and conv5 per model size (torchvision's, NanoDet's).
STAGE_OUT_CHANNELS = {
    '0.5x': (24, 48, 96, 192, 1024),
    '1.0x': (24, 116, 232, 464, 1024),
    '1.5x': (24, 176, 352, 704, 1024),
    '2.0x': (24, 244, 488, 976, 2048),
}
STAGE_REPEATS = (4, 8, 4)


def channel_shuffle(x: jt.Var, groups: int) -> jt.Var:
    """Interleave the channels of ``groups`` equal groups: ``(N, g * c, H, W)`` viewed as
    ``(N, g, c, H, W)``, transposed to ``(N, c, g, H, W)`` and flattened back."""
    n, channels, h, w = x.shape
    return x.reshape(n, groups, channels // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(
        n, channels, h, w)


class _LayerFactory:
    """Builds the conv / norm / activation layers of one ShuffleNetV2 (its ``norm_cfg`` and
    activation), so every Sequential has torchvision's layer indices."""

    def __init__(self, norm_cfg: dict, act_cfg: Union[dict, None]) -> None:
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg

    def conv(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
             depthwise: bool = False) -> Conv2d:
        return Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=kernel_size // 2, groups=in_channels if depthwise else 1, bias=False)

    def norm(self, channels: int) -> nn.Module:
        return build_norm_layer(self.norm_cfg, channels)[1]

    def act(self) -> nn.Module:
        # An Identity keeps the Sequential's indices (torchvision's keys) without an activation.
        return nn.Identity() if self.act_cfg is None else build_activation_layer(dict(self.act_cfg))


class ShuffleV2Block(nn.Module):
    """The ShuffleNetV2 unit (torchvision's ``InvertedResidual``).

    Stride 1: the channels are split in two halves; ``branch2`` (1x1 conv, BN, act, 3x3 depthwise
    conv, BN, 1x1 conv, BN, act) transforms the second one. Stride > 1: ``branch1`` (3x3 depthwise
    conv with the stride, BN, 1x1 conv, BN, act) and ``branch2`` both take the whole input. The two
    results are concatenated and their channels shuffled (2 groups).

    Args:
        inp (int): Input channels.
        oup (int): Output channels (even).
        stride (int): 1, 2 or 3.
        layers (_LayerFactory): Norm and activation of the network.
    """

    def __init__(self, inp: int, oup: int, stride: int, layers: _LayerFactory) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise InputError(f'ShuffleV2Block: stride must be 1, 2 or 3, got {stride}')
        branch_features = oup // 2
        if stride == 1 and inp != 2 * branch_features:
            raise InputError(f'ShuffleV2Block: with stride 1 the input channels ({inp}) must equal '
                             f'the output channels ({oup}, even)')
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                layers.conv(inp, inp, 3, stride, depthwise=True), layers.norm(inp),
                layers.conv(inp, branch_features), layers.norm(branch_features), layers.act())
        self.branch2 = nn.Sequential(
            layers.conv(inp if stride > 1 else branch_features, branch_features),
            layers.norm(branch_features), layers.act(),
            layers.conv(branch_features, branch_features, 3, stride, depthwise=True),
            layers.norm(branch_features),
            layers.conv(branch_features, branch_features), layers.norm(branch_features),
            layers.act())

    def execute(self, x: jt.Var) -> jt.Var:
        if self.stride == 1:
            half = x.shape[1] // 2
            out = jt.concat([x[:, :half], self.branch2(x[:, half:])], dim=1)
        else:
            out = jt.concat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


@register_jittor_module()
class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 (NanoDet's backbone) in Jittor, with torchvision's parameter names.

    Args:
        model_size (str): ``'0.5x'``, ``'1.0x'``, ``'1.5x'`` or ``'2.0x'``. Defaults to ``'1.5x'``
            (NanoDet's default; NanoDet-Plus-m uses ``'1.0x'``).
        out_stages (Sequence[int]): Stages whose outputs are returned, a non-empty subset of
            (2, 3, 4), returned in stage order. Defaults to (2, 3, 4).
        with_last_conv (bool): Add torchvision's 1x1 ``conv5`` after stage 4 (stage 4's output
            is then conv5's). Defaults to False.
        kernal_size (int): NanoDet's (unused) argument; only 3. Defaults to 3.
        activation (str | dict | None): A NanoDet activation name (``'ReLU'``, ``'LeakyReLU'``
            with slope 0.1, ... see :func:`act_cfg_from_name`), an mmcv ``act_cfg`` dict, or None.
            Defaults to ``'ReLU'``.
        pretrain (bool): Must be False (no downloads); see the module docstring.
            Defaults to False.
        frozen_stages (int): -1 freezes nothing; k >= 0 freezes the stem (``conv1``) and the first
            k stages (``stage2`` .. ``stage{k+1}``; ``conv5`` with stage 4): no gradients, norm
            layers in eval mode. At most 3. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to False.
        norm_cfg (dict): Norm layers (:func:`build_norm_layer`). Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 model_size: str = '1.5x',
                 out_stages: Sequence[int] = (2, 3, 4),
                 with_last_conv: bool = False,
                 kernal_size: int = 3,
                 activation: Union[str, dict, None] = 'ReLU',
                 pretrain: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self._check_args(model_size, out_stages, kernal_size, pretrain, frozen_stages)
        self.model_size = model_size
        self.out_stages = tuple(out_stages)
        self.with_last_conv = with_last_conv
        self.kernal_size = kernal_size
        self.activation = activation
        self.pretrain = pretrain
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.norm_cfg = norm_cfg
        self.stage_repeats = list(STAGE_REPEATS)
        self._stage_out_channels = list(STAGE_OUT_CHANNELS[model_size])
        layers = _LayerFactory(norm_cfg, act_cfg_from_name(activation, 'ShuffleNetV2'))

        stem_channels = self._stage_out_channels[0]
        self.conv1 = nn.Sequential(layers.conv(3, stem_channels, 3, 2), layers.norm(stem_channels),
                                   layers.act())
        self.maxpool = nn.Pool(kernel_size=3, stride=2, padding=1, op='maximum')
        in_channels = stem_channels
        for i, (repeats, out_channels) in enumerate(
                zip(self.stage_repeats, self._stage_out_channels[1:4]), start=2):
            blocks = [ShuffleV2Block(in_channels, out_channels, 2, layers)]
            blocks += [ShuffleV2Block(out_channels, out_channels, 1, layers)
                       for _ in range(repeats - 1)]
            setattr(self, f'stage{i}', nn.Sequential(*blocks))
            in_channels = out_channels
        if with_last_conv:
            last = self._stage_out_channels[-1]
            self.conv5 = nn.Sequential(layers.conv(in_channels, last), layers.norm(last),
                                       layers.act())
        self._init_weights()
        self._freeze_stages()

    @staticmethod
    def _check_args(model_size, out_stages, kernal_size, pretrain, frozen_stages) -> None:
        if model_size not in STAGE_OUT_CHANNELS:
            raise InputError(f'ShuffleNetV2: model_size must be one of '
                             f'{sorted(STAGE_OUT_CHANNELS)}, got {model_size!r}')
        if (not isinstance(out_stages, (list, tuple)) or not out_stages
                or not set(out_stages) <= {2, 3, 4} or len(set(out_stages)) != len(out_stages)):
            raise InputError(f'ShuffleNetV2: out_stages must be a non-empty subset of (2, 3, 4), '
                             f'got {out_stages!r}')
        if kernal_size != 3:
            raise InputError(f'ShuffleNetV2: kernal_size={kernal_size!r} is not supported: the '
                             'original ignores this argument and builds 3x3 depthwise convs; '
                             'use 3')
        if pretrain:
            raise InputError('ShuffleNetV2: pretrain=True would download torchvision weights; '
                             'use init_cfg=dict(type="Pretrained", checkpoint=PATH) with a local '
                             'torchvision shufflenet_v2 file (or load_from) instead')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= 3:
            raise InputError(f'ShuffleNetV2: frozen_stages must be an int in [-1, 3], got '
                             f'{frozen_stages!r}')

    def _init_weights(self) -> None:
        """NanoDet's initialisation: conv weights N(0, 1 / (input channels per group)), BN weight 1,
        bias 1e-4, running mean 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.assign(jt.init.gauss(tuple(m.weight.shape), 'float32', 0.0,
                                              1.0 / m.weight.shape[1]))
            elif isinstance(m, BatchNorm2d) and m.affine:
                m.weight.assign(jt.ones(m.weight.shape, dtype='float32'))
                m.bias.assign(jt.full(m.bias.shape, 1e-4, dtype='float32'))

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.conv1] + [getattr(self, f'stage{i}')
                                  for i in range(2, self.frozen_stages + 2)]
        if self.frozen_stages == 3 and self.with_last_conv:
            modules.append(self.conv5)
        return modules

    def _freeze_stages(self) -> None:
        freeze_modules(self._frozen_modules())

    def train(self, mode: bool = True) -> 'ShuffleNetV2':
        """Training mode, keeping frozen stages (and all BatchNorms if ``norm_eval``) in eval."""
        if not mode:
            return self.eval()
        return train_keeping_frozen(self, self._frozen_modules(), self.norm_eval)

    def execute(self, x: jt.Var) -> Tuple[jt.Var, ...]:
        """Return the feature maps of the stages in ``out_stages``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f'ShuffleNetV2 expects (N, 3, H, W) images, got {tuple(x.shape)}')
        x = self.maxpool(self.conv1(x))
        outs = []
        for i in (2, 3, 4):
            x = getattr(self, f'stage{i}')(x)
            if i == 4 and self.with_last_conv:
                x = self.conv5(x)
            if i in self.out_stages:
                outs.append(x)
        return tuple(outs)
