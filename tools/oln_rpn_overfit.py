"""Does OLN's RPN box branch learn? Overfit the 1st-stage config's ``OlnRPNHead`` (Jittor)
alone on one 256x256 image with fixed random features (three gt boxes, anchors of scale 4 at
strides 4-64, as tools/unidetector_pipeline.py's stage 1) with SGD (lr 0.02, momentum 0.9, weight
decay 1e-4), and print every 10 iterations (and at the last) the IoU of the decoded boxes of the
anchors overlapping a gt by >= 0.5.

``--reference`` also trains mmdet's ``RPNHead`` with OLN's forward (ReLU, then L2 normalisation over
channels) and the same box settings (``TBLRBBoxCoder(normalizer=1)``, ``reg_decoded_bbox``,
``IoULoss(linear=True)`` weight 10) from the same initial weights and features; both then
optimise the box (and zero-weight classification) loss only, so their trajectories are comparable.
``--schedule pipeline`` uses the pipeline's stage-1 schedule for 184 iterations (40 iterations of
linear warm-up from 0.001, x0.1 from iteration 138).

    OMP_NUM_THREADS=1 python tools/oln_rpn_overfit.py --iters 200 [--reference]
"""
import argparse
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'unidetector',
                  'oln_faster_rcnn_r50_fpn_1ststage_mixed.py')
SIZE, CHANNELS, STRIDES = 256, 16, (4, 8, 16, 32, 64)
GT = np.array([[20, 30, 60, 70], [100, 100, 200, 180], [150, 20, 180, 60]], np.float32)
META = dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
            scale_factor=(1., 1.))


def head_cfg():
    from mmengine.config import Config
    model = Config.fromfile(CONFIG).model
    cfg = dict(model.rpn_head, in_channels=CHANNELS, feat_channels=CHANNELS,
               train_cfg=model.train_cfg.rpn,
               anchor_generator=dict(type='AnchorGenerator', scales=[4], ratios=[1.0],
                                     strides=list(STRIDES)))
    cfg.pop('type')
    return cfg


def aligned_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
    overlap = wh[:, 0] * wh[:, 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return overlap / (area(a) + area(b) - overlap)


def monitored(anchors: np.ndarray):
    """Anchors overlapping a gt by >= 0.5 and their gt."""
    ious = np.stack([aligned_iou(anchors, np.repeat(g[None], len(anchors), 0)) for g in GT], 1)
    keep = ious.max(1) >= 0.5
    return keep, GT[ious.argmax(1)[keep]]


def report(name: str, it: int, loss: float, anchors: np.ndarray, deltas: np.ndarray, decode):
    keep, gts = monitored(anchors)
    boxes = decode(anchors[keep], deltas[keep])
    iou = aligned_iou(boxes, gts)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    print(f'{name} it {it:4d} loss_rpn_bbox {loss:.4f} IoU of {keep.sum()} anchors: mean '
          f'{iou.mean():.3f} max {iou.max():.3f}; zero/negative size {(side <= 0).mean():.2f}; '
          f'mean |delta| {np.abs(deltas).mean():.4f}', flush=True)


def lr_at(it: int, lr: float, schedule: str) -> float:
    if schedule == 'constant':
        return lr
    return lr * ((0.001 + 0.999 * it / 40) if it < 40 else (0.1 if it >= 138 else 1.0))


def run_jittor(args, feats, box_only: bool) -> dict:
    import jt_mm_plugins  # noqa: F401
    from jt_mm_plugins.models.dense_heads.oln_rpn_head import OlnRPNHead
    from jt_mm_plugins.runtime import jt
    jt.set_global_seed(args.seed)
    head = OlnRPNHead(**head_cfg())
    head.init_weights()
    init = {k: v.numpy().copy() for k, v in head.state_dict().items()}
    x = [jt.array(f) for f in feats]
    gt = dict(bboxes=jt.array(GT), labels=jt.array(np.zeros(len(GT), np.int32)))
    anchors = np.concatenate([a.numpy() for a in head.get_anchors(
        [f.shape[-2:] for f in feats], [META])[0][0]])
    decode = lambda a, d: head.bbox_coder.decode(jt.array(a), jt.array(d)).numpy()  # noqa: E731
    opt = jt.optim.SGD(head.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    for it in range(args.iters + 1):
        losses = head.loss(x, [gt], [META])
        loss_bbox = sum(losses['loss_rpn_bbox'])
        total = loss_bbox + sum(losses['loss_rpn_cls'])
        if not box_only:
            total = total + losses['loss_rpn_obj']
        if it % 10 == 0 or it == args.iters:
            reg = head(x)[1]
            deltas = np.concatenate([r[0].numpy().transpose(1, 2, 0).reshape(-1, 4) for r in reg])
            report('jittor', it, float(loss_bbox.numpy()), anchors, deltas, decode)
        if it < args.iters:
            opt.lr = lr_at(it, args.lr, args.schedule)
            opt.step(total)
    return init


def reference_head(cfg: dict, init: dict):
    """mmdet's ``RPNHead`` with OLN's forward (ReLU, then L2 normalisation over channels; no
    objectness output) and OLN's box settings, built from an ``OlnRPNHead`` config ``cfg`` (without
    ``type``) and loaded strictly with ``init`` (the Jittor head's state dict as numpy, whose
    ``rpn_obj`` is left out)."""
    import torch
    import torch.nn.functional as F
    from mmengine.config import Config
    from mmdet.models.dense_heads import RPNHead
    from mmdet.utils import register_all_modules
    register_all_modules()

    class L2NormRPNHead(RPNHead):
        def forward_single(self, x):
            x = F.normalize(F.relu(self.rpn_conv(x)), dim=1)
            return self.rpn_cls(x), self.rpn_reg(x)

    cfg = {k: v for k, v in cfg.items() if k not in ('objectness_type', 'loss_objectness')}
    cfg['train_cfg'] = Config({k: v for k, v in cfg['train_cfg'].items()
                               if not k.startswith('objectness')})
    # the original's spelling of the config's IoULoss(mode='linear')
    cfg['loss_bbox'] = dict(type='IoULoss', linear=True, loss_weight=10.0)
    head = L2NormRPNHead(**cfg)
    head.load_state_dict({k: torch.from_numpy(init[k]) for k in head.state_dict()}, strict=True)
    return head


def run_reference(args, feats, init: dict) -> None:
    import torch
    from mmengine.structures import InstanceData
    head = reference_head(head_cfg(), init)
    x = [torch.from_numpy(f) for f in feats]
    gt = InstanceData(bboxes=torch.from_numpy(GT), labels=torch.zeros(len(GT), dtype=torch.long))
    anchors = torch.cat(head.prior_generator.grid_priors([f.shape[-2:] for f in feats],
                                                         device='cpu')).numpy()
    decode = lambda a, d: head.bbox_coder.decode(  # noqa: E731
        torch.from_numpy(a), torch.from_numpy(d)).numpy()
    opt = torch.optim.SGD(head.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    for it in range(args.iters + 1):
        cls, reg = head(x)
        losses = head.loss_by_feat(cls, reg, [gt], [META])
        loss_bbox = sum(losses['loss_rpn_bbox'])
        if it % 10 == 0 or it == args.iters:
            deltas = torch.cat([r[0].permute(1, 2, 0).reshape(-1, 4) for r in reg]).detach()
            report('mmdet ', it, loss_bbox.item(), anchors, deltas.numpy(), decode)
        if it < args.iters:
            for group in opt.param_groups:
                group['lr'] = lr_at(it, args.lr, args.schedule)
            opt.zero_grad()
            (loss_bbox + sum(losses['loss_rpn_cls'])).backward()
            opt.step()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--lr', type=float, default=0.02)
    parser.add_argument('--schedule', choices=('constant', 'pipeline'), default='constant')
    parser.add_argument('--reference', action='store_true',
                        help="also train mmdet's RPNHead (box loss only, both)")
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.schedule == 'pipeline':
        args.iters = 184
    rs = np.random.RandomState(args.seed)
    feats = [rs.randn(1, CHANNELS, SIZE // s, SIZE // s).astype(np.float32) for s in STRIDES]
    init = run_jittor(args, feats, box_only=args.reference)
    if args.reference:
        run_reference(args, feats, init)


if __name__ == '__main__':
    main()
