"""PyTorch references of NanoDet-Plus's parts (not used by the models): torchvision's ShuffleNetV2
as a feature trunk (``TorchvisionTrunk``), and plain-torch GhostPAN, head, aux head and AGM losses
written from the spec (../shared/specs/seed-systems.md sections 4.2-4.4; NanoDet's parameter
names), assembled into the inference graph (``RefNanoDetPlusInference``) and the training twin
(``RefNanoDetPlus``). Used by tests/test_shufflenet_v2.py, tests/test_ghost_pan.py,
tests/test_nanodet_plus_head.py, the ``shufflenet_v2`` / ``ghost_pan`` / ``nanodet_plus`` pairs of
:mod:`.pairs` (tools/align.py, tools/benchmark.py) and tools/benchmark.py's ``nanodet_plus_demo``
twin.
"""
import math

import torch
import torchvision
from mmdet.models.task_modules.assigners import DynamicSoftLabelAssigner
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


class RefConvGN(nn.Module):
    """3x3 conv (no bias) -> GroupNorm -> LeakyReLU (the aux head's tower module)."""

    def __init__(self, cin, cout, num_groups=32, activation='LeakyReLU'):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.gn = nn.GroupNorm(num_groups, cout)
        self.act = torch_act(activation)

    def forward(self, x):
        return self.act(self.gn(self.conv(x)))


class RefScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return x * self.scale


class RefAuxHead(nn.Module):
    """NanoDet-Plus's SimpleConvHead: separate cls / reg towers of 3x3 conv + GN + LeakyReLU,
    3x3 gfl_cls, 3x3 gfl_reg, a Scale per level."""

    def __init__(self, num_classes, input_channel, feat_channels=256, stacked_convs=4,
                 strides=(8, 16, 32), reg_max=16, num_groups=32, activation='LeakyReLU'):
        super().__init__()

        def tower():
            return nn.ModuleList([
                RefConvGN(input_channel if i == 0 else feat_channels, feat_channels, num_groups,
                          activation) for i in range(stacked_convs)])

        self.cls_convs, self.reg_convs = tower(), tower()
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList([RefScale() for _ in strides])

    def forward(self, feats):
        cls_scores, bbox_preds = [], []
        for x, scale in zip(feats, self.scales):
            c, r = x, x
            for m in self.cls_convs:
                c = m(c)
            for m in self.reg_convs:
                r = m(r)
            cls_scores.append(self.gfl_cls(c))
            bbox_preds.append(scale(self.gfl_reg(r)))
        return cls_scores, bbox_preds


class Float64SafeDSLA(DynamicSoftLabelAssigner):
    """mmdet's ``DynamicSoftLabelAssigner`` that also runs on float64 inputs (mmdet stores the
    matched IoUs in a float32 tensor; they are handed over as float32, a no-op in float32), so the
    reference can run in float64 where float32 rounding could flip an assignment."""

    def dynamic_k_matching(self, cost, pairwise_ious, num_gt, valid_mask):
        ious, inds = super().dynamic_k_matching(cost, pairwise_ious, num_gt, valid_mask)
        return ious.float(), inds


def nanodet_plus_losses(project, cls_list, reg_list, aux_cls_list, aux_reg_list, gts, strides,
                        assigner=None):
    """NanoDet-Plus's loss with AGM, from the spec (section 4.4), on per-level outputs of the head
    and the aux head. ``gts``: per image ``(boxes xyxy, labels)`` tensors; ``assigner``: mmdet's
    ``DynamicSoftLabelAssigner`` (float64-safe) with its centre prior off by default (radius 1000: the prior
    underflows to exactly 0, NanoDet-Plus's cost), topk 13, IoU weight 3."""
    from mmdet.models.losses import DistributionFocalLoss, GIoULoss, QualityFocalLoss
    from mmengine.structures import InstanceData
    num_imgs, num_classes = cls_list[0].shape[:2]
    reg_max = project.numel() - 1
    priors = []
    for (h, w), s in zip([c.shape[-2:] for c in cls_list], strides):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        xy = torch.stack([xs.flatten(), ys.flatten()], -1) * s
        priors.append(torch.cat([xy, torch.full_like(xy, s)], -1))
    priors = torch.cat(priors).to(cls_list[0].dtype)

    def flat(levels):
        return torch.cat([p.flatten(2) for p in levels], 2).permute(0, 2, 1)

    def decode(reg):
        probs = torch.softmax(reg.reshape(num_imgs, -1, 4, reg_max + 1), -1)
        dist = (probs * project.to(reg.dtype)).sum(-1) * priors[None, :, 2:3]
        return torch.cat([priors[None, :, :2] - dist[..., :2], priors[None, :, :2] + dist[..., 2:]],
                         -1)

    heads = {'': (flat(cls_list), flat(reg_list)), 'aux_': (flat(aux_cls_list), flat(aux_reg_list))}
    boxes = {k: decode(reg) for k, (_, reg) in heads.items()}
    if assigner is None:
        assigner = Float64SafeDSLA(soft_center_radius=1000.0, topk=13, iou_weight=3.0)
    n = priors.shape[0]
    labels = torch.full((num_imgs, n), num_classes, dtype=torch.long)
    scores = torch.zeros(num_imgs, n, dtype=priors.dtype)
    bbox_t = torch.zeros(num_imgs, n, 4, dtype=priors.dtype)
    for i, (gt_b, gt_l) in enumerate(gts):
        if len(gt_b) == 0:
            continue
        gt_b, gt_l = gt_b.to(priors.dtype), gt_l.long()
        result = assigner.assign(
            InstanceData(priors=priors, bboxes=boxes['aux_'][i].detach(),
                         scores=heads['aux_'][0][i].detach()),
            InstanceData(bboxes=gt_b, labels=gt_l))
        pos = result.gt_inds > 0
        labels[i, pos] = gt_l[result.gt_inds[pos] - 1]
        scores[i, pos] = result.max_overlaps[pos].to(priors.dtype)
        bbox_t[i, pos] = gt_b[result.gt_inds[pos] - 1]
    labels, scores, bbox_t = labels.flatten(), scores.flatten(), bbox_t.reshape(-1, 4)
    pos = torch.nonzero(labels < num_classes).squeeze(1)
    all_priors = priors.repeat(num_imgs, 1)
    centers, prior_strides = all_priors[pos, :2], all_priors[pos, 2:3]
    dist_t = torch.cat([centers - bbox_t[pos, :2], bbox_t[pos, 2:] - centers], 1) / prior_strides
    dist_t = dist_t.clamp(0, reg_max - 0.1)
    qfl, giou = QualityFocalLoss(beta=2.0), GIoULoss(loss_weight=2.0)
    dfl = DistributionFocalLoss(loss_weight=0.25)
    losses = {}
    for prefix, (cls, reg) in heads.items():
        cls, reg = cls.reshape(-1, num_classes), reg.reshape(-1, 4 * (reg_max + 1))
        box = boxes[prefix].reshape(-1, 4)
        weight = cls.detach().sigmoid().max(1)[0][pos]
        avg = max(weight.sum().item(), 1.0)
        losses[prefix + 'loss_cls'] = qfl(cls, (labels, scores), avg_factor=max(len(pos), 1.0))
        losses[prefix + 'loss_bbox'] = giou(box[pos], bbox_t[pos], weight=weight, avg_factor=avg)
        losses[prefix + 'loss_dfl'] = dfl(reg[pos].reshape(-1, reg_max + 1), dist_t.reshape(-1),
                                          weight=weight[:, None].expand(-1, 4).reshape(-1),
                                          avg_factor=4.0 * avg)
    return losses


class RefNanoDetPlus(RefNanoDetPlusInference):
    """NanoDet-Plus's training graph in PyTorch, built from a ``NanoDetPlus`` config's dicts:
    the inference graph plus the aux FPN (the neck's config) and the aux head
    (:class:`RefAuxHead`), under the Jittor detector's names (``aux_neck``, ``aux_head``).
    ``loss`` takes an mmdet batch; before ``detach_epoch`` (epoch 0 here) the aux branch is not
    detached."""

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict, aux_head: dict):
        super().__init__(backbone, neck, bbox_head)
        self.aux_neck = RefGhostPAN(**neck)
        self.aux_head = RefAuxHead(**aux_head)
        self.strides = bbox_head['strides']

    @classmethod
    def from_config(cls, model: dict) -> 'RefNanoDetPlus':
        """From a ``NanoDetPlus`` model config (the options the references build; a config that
        sets another, e.g. a separate ``aux_neck``, is refused naming it)."""
        def pick(part, keys, norm='BN', **extra):
            cfg = dict(model[part])
            unknown = set(cfg) - set(keys) - {'type', 'norm_cfg', 'conv_type', 'loss_cls',
                                              'loss_bbox', 'loss_dfl'}
            if unknown:
                raise ValueError(f'RefNanoDetPlus: {part} options {sorted(unknown)} not built')
            # the references build one norm per part (BN; the aux head GN): refuse another
            norm_type = cfg.get('norm_cfg', dict(type=norm)).get('type')
            if norm_type != norm:
                raise ValueError(f'RefNanoDetPlus: {part} norm_cfg type {norm_type!r} not built '
                                 f'(only {norm!r})')
            return dict({k: cfg[k] for k in keys if k in cfg}, **extra)

        if model.get('aux_neck') is not None:
            raise ValueError('RefNanoDetPlus: a separate aux_neck is not built')
        activation = ('activation', )
        aux_norm = model['aux_head'].get('norm_cfg', dict(type='GN', num_groups=32))
        return cls(
            pick('backbone', ('model_size', 'out_stages', 'with_last_conv') + activation),
            pick('neck', ('in_channels', 'out_channels', 'use_depthwise', 'kernel_size', 'expand',
                          'num_blocks', 'use_res', 'num_extra_level', 'upsample_cfg') + activation),
            pick('bbox_head', ('num_classes', 'in_channels', 'feat_channels', 'stacked_convs',
                               'kernel_size', 'strides', 'reg_max') + activation),
            pick('aux_head', ('num_classes', 'input_channel', 'feat_channels', 'stacked_convs',
                              'strides', 'reg_max') + activation, norm='GN',
                 num_groups=aux_norm.get('num_groups', 32)))

    def loss(self, inputs, data_samples) -> dict:
        from jt_mm_plugins.models.detectors.nanodet_plus import aux_head_inputs
        feats = self.backbone(inputs)
        fpn_feats = self.neck(feats)
        cls, reg = self.bbox_head(fpn_feats)
        aux_cls, aux_reg = self.aux_head(
            aux_head_inputs(self.aux_neck, feats, fpn_feats, False, torch.cat))
        gts = [(s.gt_instances.bboxes, s.gt_instances.labels) for s in data_samples]
        return nanodet_plus_losses(self.bbox_head.distribution_project.project, cls, reg,
                                   aux_cls, aux_reg, gts, self.strides)
