"""OLN's RPN box branch (``OlnRPNHead``: L2-normalised features, ``TBLRBBoxCoder(normalizer=1)``,
``reg_decoded_bbox``, linear ``IoULoss`` weight 10: the 1st-stage config's settings)
against mmdet's ``RPNHead`` with OLN's forward and the same settings (``reference_head`` of
tools/oln_rpn_overfit.py), from the same weights: the per-level box losses within 1e-5 absolute +
1e-4 relative, the gradients of the box (and zero-weight classification) loss w.r.t. the features
and the weights within 1e-3 relative (``max|a - b| / max|b|``).

Set-up: one 64x64 image, 4 -> 8 channels, anchors of scale 4 at strides 8 and 16 (80 anchors, fewer
than the sampler's 256: every candidate is taken, no random choice), weights N(0, 0.1) with the
regression bias at 0.35, so every decoded box is a proper box (about 0.7 of its anchor) and IoU
decisions are smooth. Robust by construction (jt_mm_plugins/alignment/margins.py): the float64 run
of the reference decides every ReLU and MaxIoUAssigner threshold by 10x the float32 error bound, and
its decoded boxes of the anchors that can be positive (IoU >= min_pos_iou with a gt) have sides and
intersections with that gt of at least 1 px (far from the IoU loss's clamps at 0 and at eps).
"""
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment import margins
from jt_mm_plugins.models.dense_heads.oln_rpn_head import OlnRPNHead
from jt_mm_plugins.runtime import jt

pytest.importorskip('mmdet.models.dense_heads')
from mmengine.structures import InstanceData  # noqa: E402
from tiny_demo import REPO, load_tool  # noqa: E402

SIZE = 64
META = dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
            scale_factor=(1., 1.))
GT = np.array([[5., 6., 36., 40.], [3., 9., 59., 61.]], np.float32)  # a positive per level
STRIDES = (8, 16)


def head_cfg() -> dict:
    model = Config.fromfile(os.path.join(REPO, 'configs', 'unidetector',
                                         'oln_faster_rcnn_r50_fpn_1ststage_mixed.py')).model
    cfg = dict(model.rpn_head, in_channels=4, feat_channels=8,
               train_cfg=dict(model.train_cfg.rpn, allowed_border=-1),
               anchor_generator=dict(type='AnchorGenerator', scales=[4], ratios=[1.0],
                                     strides=list(STRIDES)))
    cfg.pop('type')
    return cfg


def weights(head: OlnRPNHead) -> dict:
    rng = np.random.default_rng(0)
    state = {k: (rng.standard_normal(v.shape) * 0.1).astype(np.float32)
             for k, v in head.state_dict().items()}
    state['rpn_reg.bias'][:] = 0.35
    return state


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) -
                 np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    overlap = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return overlap / (area(a)[:, None] + area(b)[None] - overlap)


def mm_losses_and_grads(head, feats, dtype=torch.float32):
    xs = [torch.tensor(f, dtype=dtype, requires_grad=True) for f in feats]
    gt = InstanceData(bboxes=torch.from_numpy(GT), labels=torch.zeros(len(GT), dtype=torch.long))
    cls, reg = head(xs)
    losses = head.loss_by_feat(cls, reg, [gt], [META])
    (sum(losses['loss_rpn_bbox']) + sum(losses['loss_rpn_cls'])).backward()
    return [float(v.detach()) for v in losses['loss_rpn_bbox']], xs, reg


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def test_oln_box_loss_and_gradients_match_mmdet_rpn_head_with_olns_settings():
    cfg = head_cfg()
    jt_head = OlnRPNHead(**cfg)
    state = weights(jt_head)
    jt_head.load_parameters(state)
    mm_head = load_tool('oln_rpn_overfit').reference_head(cfg, state)
    rng = np.random.default_rng(1)
    feats = [rng.standard_normal((1, 4, SIZE // s, SIZE // s)).astype(np.float32) for s in STRIDES]

    margins.assert_float32_decides(mm_head, lambda head, dtype: mm_losses_and_grads(head, feats,
                                                                                     dtype))
    # the IoU loss's clamps: every box that can be a positive is proper and overlaps its gt
    _, _, reg64 = mm_losses_and_grads(mm_head.double(), feats, torch.float64)
    mm_head.float().zero_grad(set_to_none=True)
    anchors = torch.cat(mm_head.prior_generator.grid_priors(
        [f.shape[-2:] for f in feats], dtype=torch.float64, device='cpu')).numpy()
    deltas = torch.cat([r[0].permute(1, 2, 0).reshape(-1, 4) for r in reg64]).detach()
    boxes = mm_head.bbox_coder.decode(torch.from_numpy(anchors), deltas).numpy()
    anchor_iou = iou_matrix(anchors, GT.astype(np.float64))
    candidates, gt_index = np.nonzero(anchor_iou >= cfg['train_cfg']['assigner']['min_pos_iou'])
    assert len(candidates) >= 4
    pred, gts = boxes[candidates], GT[gt_index]
    inter = np.minimum(pred[:, 2:], gts[:, 2:]) - np.maximum(pred[:, :2], gts[:, :2])
    assert min((pred[:, 2:] - pred[:, :2]).min(), inter.min()) >= 1.0

    ref_losses, xs, _ = mm_losses_and_grads(mm_head, feats)
    assert min(ref_losses) > 0  # positives on both levels
    jxs = [jt.array(f) for f in feats]
    gt = dict(bboxes=jt.array(GT), labels=jt.array(np.zeros(len(GT), np.int32)))
    losses = jt_head.loss(jxs, [gt], [META])
    got = [float(v.item()) for v in losses['loss_rpn_bbox']]
    assert np.allclose(got, ref_losses, atol=1e-5, rtol=1e-4), (got, ref_losses)

    mm_params = dict(mm_head.named_parameters())
    params = {k: v for k, v in jt_head.named_parameters() if k in mm_params}
    assert sorted(params) == sorted(mm_params)
    grads = jt.grad(sum(losses['loss_rpn_bbox']) + sum(losses['loss_rpn_cls']),
                    jxs + list(params.values()))
    errs = {f'feat{i}': rel_err(g.numpy(), x.grad.numpy())
            for i, (g, x) in enumerate(zip(grads, xs))}
    errs.update({name: rel_err(g.numpy(), mm_params[name].grad.numpy())
                 for g, name in zip(grads[len(xs):], params)})
    assert np.abs(mm_params['rpn_reg.weight'].grad.numpy()).max() > 1e-4  # the box loss moves it
    print(f'\nloss_rpn_bbox {ref_losses} (jittor {got}); gradient rel errs {errs}')
    assert max(errs.values()) <= 1e-3, errs
