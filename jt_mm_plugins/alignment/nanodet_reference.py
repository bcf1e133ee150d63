"""PyTorch references of NanoDet-Plus's parts (not used by the models): torchvision's ShuffleNetV2
as a feature trunk (``TorchvisionTrunk``), and plain-torch GhostPAN parts written from the spec
(../shared/specs/seed-systems.md sections 4.2-4.3; NanoDet's parameter names). Used by
tests/test_shufflenet_v2.py, tests/test_ghost_pan.py, tests/test_nanodet_plus_head.py and the
``shufflenet_v2`` / ``ghost_pan`` pairs of :mod:`.pairs` (tools/align.py, tools/benchmark.py).
"""
import math

import torch
import torchvision
from torch import nn


def torch_act(activation):
    """NanoDet's activation names: LeakyReLU has slope 0.1."""
    if activation is None:
        return nn.Identity()
    return {'LeakyReLU': lambda: nn.LeakyReLU(0.1), 'ReLU': nn.ReLU}[activation]()


class RefConvModule(nn.Module):
    """conv (bias without a norm) -> BN -> act."""

    def __init__(self, cin, cout, k, stride=1, with_norm=True, activation='LeakyReLU'):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=not with_norm)
        self.bn = nn.BatchNorm2d(cout) if with_norm else None
        self.act = torch_act(activation)

    def forward(self, x):
        x = self.conv(x)
        return self.act(x if self.bn is None else self.bn(x))


class RefDepthwiseConvModule(nn.Module):
    """dw k x k conv -> BN -> act -> 1x1 conv -> BN -> act."""

    def __init__(self, c, k, stride, activation):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)
        self.dwnorm = nn.BatchNorm2d(c)
        self.pointwise = nn.Conv2d(c, c, 1, bias=False)
        self.pwnorm = nn.BatchNorm2d(c)
        self.act = torch_act(activation)

    def forward(self, x):
        x = self.act(self.dwnorm(self.depthwise(x)))
        return self.act(self.pwnorm(self.pointwise(x)))


class RefGhostModule(nn.Module):
    """1x1 conv to ceil(oup / 2) (BN, act), a cheap 3x3 depthwise conv of that (BN, act),
    concatenated (first oup channels)."""

    def __init__(self, inp, oup, activation):
        super().__init__()
        primary = math.ceil(oup / 2)
        self.oup = oup
        self.primary_conv = nn.Sequential(nn.Conv2d(inp, primary, 1, bias=False),
                                          nn.BatchNorm2d(primary), torch_act(activation))
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(primary, primary, 3, 1, 1, groups=primary, bias=False),
            nn.BatchNorm2d(primary), torch_act(activation))

    def forward(self, x):
        x1 = self.primary_conv(x)
        return torch.cat([x1, self.cheap_operation(x1)], 1)[:, :self.oup]


class RefGhostBottleneck(nn.Module):
    """ghost1 (act) -> ghost2 (no act) + shortcut (dw k x k + BN + 1x1 + BN when in != out)."""

    def __init__(self, cin, mid, cout, k, activation):
        super().__init__()
        self.ghost1 = RefGhostModule(cin, mid, activation)
        self.ghost2 = RefGhostModule(mid, cout, None)
        self.shortcut = None if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cin, k, 1, (k - 1) // 2, groups=cin, bias=False), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.ghost2(self.ghost1(x)) + (x if self.shortcut is None else self.shortcut(x))


class RefGhostBlocks(nn.Module):
    def __init__(self, cin, cout, expand, k, num_blocks, use_res, activation):
        super().__init__()
        self.blocks = nn.Sequential(*[
            RefGhostBottleneck(cin if i == 0 else cout, int(cout * expand), cout, k, activation)
            for i in range(num_blocks)])
        self.reduce_conv = RefConvModule(cin, cout, 1, with_norm=False, activation=activation) \
            if use_res else None

    def forward(self, x):
        out = self.blocks(x)
        return out if self.reduce_conv is None else out + self.reduce_conv(x)


class RefGhostPAN(nn.Module):
    """Reduce (1x1 ConvModule per level), top-down (upsample, concatenate with the finer level,
    GhostBlocks), bottom-up (stride-2 conv, concatenate with the coarser top-down map,
    GhostBlocks), extra levels (stride-2 conv of the reduced coarsest input + stride-2 conv of the
    last output)."""

    def __init__(self, in_channels, out_channels, use_depthwise=False, kernel_size=5, expand=1,
                 num_blocks=1, use_res=False, num_extra_level=0,
                 upsample_cfg=dict(scale_factor=2, mode='bilinear'), activation='LeakyReLU'):
        super().__init__()
        c, k, n = out_channels, kernel_size, len(in_channels)

        def down():
            return RefDepthwiseConvModule(c, k, 2, activation) if use_depthwise else \
                RefConvModule(c, c, k, 2, activation=activation)

        def blocks():
            return RefGhostBlocks(2 * c, c, expand, k, num_blocks, use_res, activation)

        self.upsample = nn.Upsample(**upsample_cfg)
        self.reduce_layers = nn.ModuleList(
            [RefConvModule(cin, c, 1, activation=activation) for cin in in_channels])
        self.top_down_blocks = nn.ModuleList([blocks() for _ in range(n - 1)])
        self.downsamples = nn.ModuleList([down() for _ in range(n - 1)])
        self.bottom_up_blocks = nn.ModuleList([blocks() for _ in range(n - 1)])
        self.extra_lvl_in_conv = nn.ModuleList([down() for _ in range(num_extra_level)])
        self.extra_lvl_out_conv = nn.ModuleList([down() for _ in range(num_extra_level)])

    def forward(self, inputs):
        reduced = [layer(x) for layer, x in zip(self.reduce_layers, inputs)]
        n = len(reduced)
        top_down = [reduced[-1]]  # coarsest first while building
        for step in range(n - 1):
            finer = reduced[n - 2 - step]
            top_down.append(self.top_down_blocks[step](
                torch.cat([self.upsample(top_down[-1]), finer], 1)))
        top_down = top_down[::-1]  # finest first
        outs = [top_down[0]]
        for i in range(n - 1):
            outs.append(self.bottom_up_blocks[i](
                torch.cat([self.downsamples[i](outs[-1]), top_down[i + 1]], 1)))
        for extra_in, extra_out in zip(self.extra_lvl_in_conv, self.extra_lvl_out_conv):
            outs.append(extra_in(reduced[-1]) + extra_out(outs[-1]))
        return tuple(outs)



class RefNanoDetPlusHead(nn.Module):
    """NanoDet-Plus's head forward from the spec (section 4.3): per level ``stacked_convs``
    depthwise modules (k x k, BN, act; the input width must equal ``feat_channels``), then a 1x1
    conv to ``num_classes + 4 * (reg_max + 1)``, returned split into per-level class logits and
    box distributions; ``distribution_project.project`` holds the bins (a buffer)."""

    def __init__(self, num_classes, in_channels, feat_channels=96, stacked_convs=2, kernel_size=5,
                 strides=(8, 16, 32), reg_max=7, activation='LeakyReLU'):
        super().__init__()
        assert in_channels == feat_channels, 'the reference keeps the width through the towers'
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList([
            nn.ModuleList([RefDepthwiseConvModule(feat_channels, kernel_size, 1, activation)
                           for _ in range(stacked_convs)])
            for _ in strides])
        self.gfl_cls = nn.ModuleList(
            [nn.Conv2d(feat_channels, num_classes + 4 * (reg_max + 1), 1) for _ in strides])
        self.distribution_project = nn.Module()
        self.distribution_project.register_buffer('project',
                                                  torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, feats):
        outs = []
        for x, tower, conv in zip(feats, self.cls_convs, self.gfl_cls):
            for m in tower:
                x = m(x)
            outs.append(conv(x))
        return ([o[:, :self.num_classes] for o in outs], [o[:, self.num_classes:] for o in outs])

TORCHVISION = {'0.5x': 'shufflenet_v2_x0_5', '1.0x': 'shufflenet_v2_x1_0',
               '1.5x': 'shufflenet_v2_x1_5', '2.0x': 'shufflenet_v2_x2_0'}


class TorchvisionTrunk(torch.nn.Module):
    """torchvision's ShuffleNetV2 without ``fc``, returning the feature maps of ``out_stages``
    (stage 4 after ``conv5`` when there is one). Its parameter names are torchvision's."""

    def __init__(self, model_size='0.5x', out_stages=(2, 3, 4), with_last_conv=False,
                 activation='ReLU'):
        super().__init__()
        net = getattr(torchvision.models, TORCHVISION[model_size])()
        if activation == 'LeakyReLU':  # NanoDet's act_layers('LeakyReLU')
            for module in net.modules():
                for name, child in module.named_children():
                    if isinstance(child, torch.nn.ReLU):
                        setattr(module, name, torch.nn.LeakyReLU(0.1))
        self.conv1, self.maxpool = net.conv1, net.maxpool
        self.stage2, self.stage3, self.stage4 = net.stage2, net.stage3, net.stage4
        if with_last_conv:
            self.conv5 = net.conv5
        self.out_stages = out_stages

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        outs = []
        for i in (2, 3, 4):
            x = getattr(self, f'stage{i}')(x)
            if i == 4 and hasattr(self, 'conv5'):
                x = self.conv5(x)
            if i in self.out_stages:
                outs.append(x)
        return tuple(outs)


class RefNanoDetPlusInference(nn.Module):
    """NanoDet-Plus's inference graph in PyTorch: torchvision's ShuffleNetV2 trunk, the spec's
    GhostPAN and head, under mmdet's part names (``backbone``, ``neck``, ``bbox_head``)."""

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict):
        super().__init__()
        self.backbone = TorchvisionTrunk(**backbone)
        self.neck = RefGhostPAN(**neck)
        self.bbox_head = RefNanoDetPlusHead(**bbox_head)

    def forward(self, x):
        return self.bbox_head(self.neck(self.backbone(x)))
