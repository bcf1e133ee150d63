"""The plain-torch RepGDNeck (Gold-YOLO's gather-and-distribute neck) written from the spec
(../shared/specs/seed-systems.md 3.3) with yolov6detect's RepVGGBlock / RepBlock / SimConv / Conv
and mmcv's ConvModule as its building blocks (Gold-YOLO imports exactly these), and
``TorchGoldYOLO``: a PyTorch Gold-YOLO of yolov6detect's ``EfficientRep`` and ``Detect``, this neck,
and its losses from yolov6detect's ``ComputeLoss``. References for tests/test_repgd_neck.py,
tests/test_gold_yolo_detector.py, the ``repgd_neck`` pair of pairs.py and tools/benchmark.py's
``gold_yolo_n_demo`` twin; not used by the models. The tiny case those tests and the pair share
(``TINY``, :func:`reference_neck`, :func:`make_inputs`, the ReLU6 margin check) is at the end.

The reference keeps the original's quirks: the attention's ``scale`` is never applied, and the
injection pools without h_sigmoid when the local map is shorter than the global one. Drop path is
not built (compare in eval mode or with rate 0).
"""
import copy

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import nn

from .yolov6_reference import (randomise_calibrated_, yolov6_compute_loss, yolov6_module,
                               yolov6_trained_bn_)

BN = dict(type='BN', requires_grad=True)


# --------------------------------------------------------------------------------------------------
def pool(x, like):
    return F.adaptive_avg_pool2d(x, like.shape[2:])


def resize(x, like):
    return F.interpolate(x, size=like.shape[2:], mode='bilinear', align_corners=False)


class Fusion3(nn.Module):
    def __init__(self, cv1_in, out):
        super().__init__()
        common = yolov6_module('layers.common')
        self.cv1 = common.SimConv(cv1_in, out, 1, 1)
        self.cv_fuse = common.SimConv(3 * out, out, 1, 1)

    def forward(self, xs):
        return self.cv_fuse(torch.cat([pool(xs[0], xs[1]), self.cv1(xs[1]),
                                       resize(xs[2], xs[1])], 1))


def conv_bn(a, b, groups=1, ks=1, bn_weight=1.0):
    layer = nn.Sequential()
    layer.add_module('c', nn.Conv2d(a, b, ks, 1, ks // 2, groups=groups, bias=False))
    layer.add_module('bn', nn.BatchNorm2d(b))
    nn.init.constant_(layer.bn.weight, bn_weight)
    return layer


class Attn(nn.Module):
    def __init__(self, dim, key_dim, heads, ratio):
        super().__init__()
        self.heads, self.kd, self.d = heads, key_dim, int(ratio * key_dim)
        self.scale = key_dim ** -0.5  # never applied (the original's quirk)
        self.to_q = conv_bn(dim, heads * key_dim)
        self.to_k = conv_bn(dim, heads * key_dim)
        self.to_v = conv_bn(dim, heads * self.d)
        self.proj = nn.Sequential(nn.ReLU6(), conv_bn(heads * self.d, dim, bn_weight=0.0))

    def forward(self, x):
        b, _, h, w = x.shape
        q = self.to_q(x).view(b, self.heads, self.kd, h * w).transpose(2, 3)
        k = self.to_k(x).view(b, self.heads, self.kd, h * w)
        v = self.to_v(x).view(b, self.heads, self.d, h * w).transpose(2, 3)
        out = (q @ k).softmax(-1) @ v
        return self.proj(out.transpose(2, 3).reshape(b, -1, h, w))


class Block(nn.Module):
    def __init__(self, dim, key_dim, heads, mlp_ratio, attn_ratio):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = Attn(dim, key_dim, heads, attn_ratio)
        self.mlp = nn.Module()
        self.mlp.fc1 = conv_bn(dim, hidden)
        self.mlp.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.mlp.act = nn.ReLU6()
        self.mlp.fc2 = conv_bn(hidden, dim)

    def forward(self, x):  # drop path: compared with rate 0 in training, identity in eval
        x = x + self.attn(x)
        m = self.mlp
        return x + m.fc2(m.act(m.dwconv(m.fc1(x))))


class Inject(nn.Module):
    def __init__(self, channels):
        super().__init__()
        for name in ('local_embedding', 'global_embedding', 'global_act'):
            setattr(self, name, ConvModule(channels, channels, 1, norm_cfg=BN, act_cfg=None))

    def forward(self, x_l, x_g):
        act, feat = self.global_act(x_g), self.global_embedding(x_g)
        if x_l.shape[2] < x_g.shape[2]:  # the original's quirk: pooled, no h_sigmoid
            act, feat = pool(act, x_l), pool(feat, x_l)
        else:
            act, feat = resize(F.relu6(act + 3) / 6, x_l), resize(feat, x_l)
        return self.local_embedding(x_l) * act + feat


class TorchRepGDNeck(nn.Module):
    def __init__(self, channels_list, num_repeats, extra_cfg):
        super().__init__()
        common = yolov6_module('layers.common')
        c, n, e = channels_list, num_repeats, extra_cfg
        self.t = e['trans_channels']
        self.low_IFM = nn.Sequential(
            common.Conv(e['fusion_in'], e['embed_dim_p'], 1, 1),
            *[common.RepVGGBlock(e['embed_dim_p'], e['embed_dim_p'])
              for _ in range(e['fuse_block_num'])],
            common.Conv(e['embed_dim_p'], self.t[0] + self.t[1], 1, 1))
        self.reduce_layer_c5 = common.SimConv(c[4], c[5], 1, 1)
        self.LAF_p4 = Fusion3(c[3], c[5])
        self.Inject_p4 = Inject(c[5])
        self.Rep_p4 = common.RepBlock(c[5], c[5], n[5])
        self.reduce_layer_p4 = common.SimConv(c[5], c[6], 1, 1)
        self.LAF_p3 = Fusion3(c[5], c[6])
        self.Inject_p3 = Inject(c[6])
        self.Rep_p3 = common.RepBlock(c[6], c[6], n[6])
        self.stride = e['c2t_stride']
        self.high_IFM = nn.Module()
        self.high_IFM.transformer_blocks = nn.ModuleList([
            Block(e['embed_dim_n'], e['key_dim'], e['num_heads'], e['mlp_ratios'],
                  e['attn_ratios']) for _ in range(e['depths'])])
        self.conv_1x1_n = nn.Conv2d(e['embed_dim_n'], self.t[2] + self.t[3], 1)
        self.Inject_n4 = Inject(c[8])
        self.Rep_n4 = common.RepBlock(c[6] + c[7], c[8], n[7])
        self.Inject_n5 = Inject(c[10])
        self.Rep_n5 = common.RepBlock(c[5] + c[9], c[10], n[8])
        # YOLOv6's initialize_weights reaches the nn.BatchNorm2d of the YOLOv6 blocks only (the
        # injection / transformer norms are SyncBN in Gold-YOLO: eps 1e-5, momentum 0.1)
        for name in ('low_IFM', 'reduce_layer_c5', 'LAF_p4', 'Rep_p4', 'reduce_layer_p4',
                     'LAF_p3', 'Rep_p3', 'Rep_n4', 'Rep_n5'):
            yolov6_trained_bn_(getattr(self, name))

    def forward(self, xs):
        c2, c3, c4, c5 = xs
        low = self.low_IFM(torch.cat([pool(c2, c4), pool(c3, c4), c4, resize(c5, c4)], 1))
        low_g = low.split(self.t[0:2], 1)
        c5_half = self.reduce_layer_c5(c5)
        p4 = self.Rep_p4(self.Inject_p4(self.LAF_p4([c3, c4, c5_half]), low_g[0]))
        p4_half = self.reduce_layer_p4(p4)
        p3 = self.Rep_p3(self.Inject_p3(self.LAF_p3([c2, c3, p4_half]), low_g[1]))
        size = [(s - 1) // self.stride + 1 for s in c5.shape[2:]]
        high = torch.cat([F.adaptive_avg_pool2d(x, size) for x in (p3, p4, c5)], 1)
        for block in self.high_IFM.transformer_blocks:
            high = block(high)
        high_g = self.conv_1x1_n(high).split(self.t[2:4], 1)
        n4 = self.Rep_n4(self.Inject_n4(torch.cat([pool(p3, p4_half), p4_half], 1), high_g[0]))
        n5 = self.Rep_n5(self.Inject_n5(torch.cat([pool(n4, c5_half), c5_half], 1), high_g[1]))
        return p3, n4, n5


class TorchGoldYOLO(nn.Module):
    """A PyTorch Gold-YOLO built from a ``GoldYOLO`` config's ``backbone`` / ``neck`` /
    ``bbox_head`` dicts: yolov6detect's ``EfficientRep`` and ``Detect`` (with YOLOv6's BN settings
    and bias initialisation), :class:`TorchRepGDNeck`; the Jittor detector's parameter names, so
    one state dict loads strictly into both. ``loss`` takes an mmdet batch (pixel xyxy boxes)."""

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict):
        super().__init__()
        from jt_mm_plugins.models.backbones.efficient_rep import yolov6_channels, yolov6_repeats
        er, eh = yolov6_module('models.efficientrep'), yolov6_module('models.effidehead')
        self.backbone = er.EfficientRep(
            3, yolov6_channels(backbone['channels_list'], backbone.get('width_multiple')),
            yolov6_repeats(backbone['num_repeats'], backbone.get('depth_multiple')),
            fuse_P2=backbone.get('fuse_P2', False), cspsppf=backbone.get('cspsppf', False))
        channels = yolov6_channels(neck['channels_list'], neck.get('width_multiple'))
        self.neck = TorchRepGDNeck(channels,
                                   yolov6_repeats(neck['num_repeats'], neck.get('depth_multiple')),
                                   neck['extra_cfg'])
        self.num_classes = bbox_head['num_classes']
        self.reg_max = bbox_head.get('reg_max', 16)
        self.iou_type = bbox_head.get('iou_type', 'giou')
        self.strides = list(bbox_head.get('strides', (8, 16, 32)))
        self.bbox_head = eh.Detect(self.num_classes, 3, head_layers=eh.build_effidehead_layer(
            channels, 1, self.num_classes, self.reg_max, 3),
            use_dfl=bbox_head.get('use_dfl', True), reg_max=self.reg_max)
        self.bbox_head.initialize_biases()
        yolov6_trained_bn_(self.backbone)
        yolov6_trained_bn_(self.bbox_head)

    @classmethod
    def from_config(cls, model: dict) -> 'TorchGoldYOLO':
        """From a ``GoldYOLO`` model config."""
        return cls(model['backbone'], model['neck'], model['bbox_head'])

    def forward(self, x):
        return self.bbox_head(list(self.neck(self.backbone(x))))

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        """yolov6detect's ``ComputeLoss`` on the batch. ``ComputeLoss`` returns its weighted parts
        detached: ``loss_cls`` carries the total's graph (total minus the other two parts' values,
        which equals the weighted class loss up to float rounding)."""
        size = max(inputs.shape[-2:])
        rows = []
        for i, sample in enumerate(data_samples):
            boxes = sample.gt_instances.bboxes.to(inputs.dtype)
            labels = sample.gt_instances.labels.to(inputs.dtype)[:, None]
            rows.append(torch.cat([torch.full_like(labels, i), labels,
                                   (boxes[:, :2] + boxes[:, 2:]) / 2 / size,
                                   (boxes[:, 2:] - boxes[:, :2]) / size], 1))
        compute = yolov6_compute_loss(self.num_classes, size, self.strides, self.reg_max,
                                      self.iou_type)
        total, parts = compute(self(inputs), torch.cat(rows), 0, 1)
        return dict(loss_iou=parts[0], loss_dfl=parts[1],
                    loss_cls=total - (parts[0] + parts[1]))


# --- A tiny RepGDNeck case (tests/test_repgd_neck.py, test_gold_yolo_detector.py and the
# repgd_neck pair of pairs.py): a channel list with Gold-YOLO's constraints, C2..C5 of
# 32 / 16 / 8 / 4 px (2x2 attention tokens)
TINY = dict(channels_list=[8, 8, 16, 16, 32, 16, 8, 8, 16, 16, 32],
            num_repeats=[1, 1, 1, 1, 1, 2, 2, 2, 2],
            extra_cfg=dict(norm_cfg=BN, depths=2, fusion_in=72, fuse_block_num=2,
                           embed_dim_p=16, embed_dim_n=56, key_dim=4, num_heads=2, mlp_ratios=1,
                           attn_ratios=2, c2t_stride=2, drop_path_rate=0.1,
                           trans_channels=[16, 8, 16, 32], pool_mode='torch'))
SIDES = (32, 16, 8, 4)
# ReLU6 inputs of the float64 reference at least this far (relative to their scale) from 0 and 6:
# 10x the largest relative float32 deviation measured on this neck's outputs (2.4e-6).
RELU6_MARGIN = 2.4e-5
# Random norm affines x0.4: a RepVGG block sums three normalised branches, so with affines ~1 the
# activations triple through the neck's 20 blocks to ~60, where float32 rounding alone (2e-6
# relative measured) exceeds the 1e-4 absolute output tolerance. Scaled, they stay ~1-5.
AFFINE_SCALE = 0.4
# Exactly-zero gradients by construction, computed as rounding noise and not comparable: k's
# bias adds the same q.b to every key of a query, which the softmax over keys removes.
ZERO_GRAD_BIASES = ('attn.to_k.bn.bias', )
# Training only: a per-channel constant added to high_IFM's residual stream (the last norm of each
# attention and MLP branch) or by conv_1x1_n reaches every later use through 1x1 convs followed by
# batch-statistics norms (the next block's q / k / v / fc1, the injections' global embeddings),
# which remove it.
TRAIN_ZERO_GRAD_BIASES = ('attn.proj.1.bn.bias', 'mlp.fc2.bn.bias', 'conv_1x1_n.bias')


def make_inputs(seed=0, batch=2, channels=TINY['channels_list'][1:5]):
    """C2..C5 of ``SIDES`` px, non-negative."""
    rng = np.random.RandomState(seed)
    return [torch.from_numpy(np.abs(rng.randn(batch, ch, s, s)).astype(np.float32))
            for ch, s in zip(channels, SIDES)]  # backbone outputs are ReLU outputs: >= 0


def reference_neck(seed=0, **kwargs):
    """:class:`TorchRepGDNeck` of the ``TINY`` settings (``kwargs`` update its ``extra_cfg``)
    with random calibrated weights (norm affines x ``AFFINE_SCALE``); returns it and the
    settings."""
    cfg = copy.deepcopy(TINY)
    cfg['extra_cfg'].update(kwargs)
    model = TorchRepGDNeck(**cfg)
    return randomise_calibrated_(model, make_inputs(seed + 1), seed, AFFINE_SCALE), cfg


def relu6_margins(model, run):
    """Relative distances of every ReLU6 input (``nn.ReLU6`` calls ``F.hardtanh``; the
    injection calls ``F.relu6``) from 0 and 6 while ``run()`` runs."""
    seen = []
    hardtanh, relu6 = F.hardtanh, F.relu6

    def record(x):
        v = x.detach()
        seen.append(float(torch.minimum(v.abs(), (v - 6).abs()).min()) /
                    max(float(v.abs().max()), 1e-12))

    def hooked_hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
        assert (min_val, max_val) == (0.0, 6.0)
        record(x)
        return hardtanh(x, min_val, max_val)

    def hooked_relu6(x, inplace=False):
        record(x)
        return relu6(x)

    F.hardtanh, F.relu6 = hooked_hardtanh, hooked_relu6
    try:
        run()
    finally:
        F.hardtanh, F.relu6 = hardtanh, relu6
    return seen


def assert_relu6_margins(reference, inputs, training, margin=RELU6_MARGIN):
    """Every ReLU6 input of a float64 copy of ``reference`` (in training or eval mode) at least
    ``margin`` x its tensor's scale from 0 and 6 (margins.py does not hook ReLU6)."""
    model = copy.deepcopy(reference).double().train(training)
    with torch.no_grad():
        seen = relu6_margins(model, lambda: model([x.double() for x in inputs]))
    # per transformer block: the attention's projection and the MLP; 4 injections
    expected = 2 * len(reference.high_IFM.transformer_blocks) + 4
    if len(seen) != expected or min(seen) < margin:
        raise AssertionError(f'RepGDNeck reference: {len(seen)} ReLU6 calls (expected '
                             f'{expected}), an input within {min(seen):.2g} x scale of a kink '
                             f'(margin {margin})')
