"""``GFocalV2Head`` (GFL + DGQP) against a plain-torch reference with identical weights.

mmdet has no GFocalV2 head. The reference is written here from the formula of
../shared/specs/seed-systems.md §2.1: per level, P = softmax over each side's ``reg_max + 1`` bins,
the ``reg_topk`` largest probabilities of each side and their mean -> 1x1 conv -> ReLU -> 1x1 conv
-> sigmoid = I, joint score J = sigmoid(cls logits) * I (:class:`TorchDGQP`). The GFL part
(towers, ``gfl_cls``, ``gfl_reg``, scales) is mmdet's ``GFLHead``, whose alignment with
``JittorGFLHead`` is tests/test_gfl_head.py; same set-up as there (2 stacked convs, 3 classes,
reg_max 7, strides 8/16/32, random weights), DGQP with ``reg_topk=4``, ``reg_channels=8``,
``add_mean=True`` and random weights.

Losses: GFocalV2's are GFL's with the joint score taken as a probability (QFL's BCE on J, box
weights max_c J). mmdet's ``GFLHead.loss_by_feat`` applies a sigmoid to its input in exactly those
two places, so fed with ``logit(J)`` it computes GFocalV2's losses (BCE-with-logits(logit(J), t) =
BCE(J, t)); a direct plain-torch QFL on J checks the classification loss independently.

Near-ties (float32 must not decide anything a float64 run puts within its error): test_gfl_head's
margins (tower ReLUs, ATSS, GIoU kinks, score_thr / nms_pre / NMS); here also DGQP's ReLU inputs,
the top-k order (the selected VALUES do not depend on how ties are ordered, but their gradients
go to the selected bins, and each slot of the top-k has its own conv weights: every gap between
consecutive sorted probabilities among the first ``reg_topk + 1`` is asserted on float64) and the
``clamp(min=1)`` of the box-loss normaliser. Tolerances as test_gfl_head: outputs 1e-4 absolute,
losses 1e-5 + 1e-4 relative, gradients 1e-3 relative, boxes 1e-4, scores 1e-5.
"""
import copy

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge import BridgedDenseHead, build_jittor_module, state_dict_to_jittor
from jt_mm_plugins.models.dense_heads import GFocalV2Head
from jt_mm_plugins.models.dense_heads.gfocal_v2_head import dgqp_statistics
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from test_gfl_head import (FEAT_SEED, FEAT_SIZES, GRAD_RTOL, HEAD_CFG, IMG_METAS, LOSS_ATOL,
                           LOSS_RTOL, MARGIN, NUM_CLASSES, OUT_ATOL, REG_MAX, RELU_MARGIN_FACTOR,
                           SEED, TOPK, assert_giou_margins, assert_predict_margins,
                           assert_relu_margins, assert_same_detections, bridged_head,
                           compare_losses_and_gradients, det_data_samples, empty_gts, jt_gts,
                           make_feats, randomise_, rel_err, torch_gts)
from test_gfl_parts import assert_atss_margins

pytest.importorskip('mmdet.models.dense_heads')
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

REG_TOPK, REG_CHANNELS = 4, 8
V2_CFG = dict(copy.deepcopy(HEAD_CFG), reg_topk=REG_TOPK, reg_channels=REG_CHANNELS,
              add_mean=True,
              loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, activated=True, beta=2.0,
                            loss_weight=1.0))
# the original's spelling: use_sigmoid=False -> num_classes + 1 channels
QUIRK_CFG = dict(copy.deepcopy(V2_CFG),
                 loss_cls=dict(type='QualityFocalLoss', use_sigmoid=False, beta=2.0,
                               loss_weight=1.0))


class TorchDGQP(torch.nn.Module):
    """DGQP from the spec's formula, in plain torch."""

    def __init__(self, reg_max: int, reg_topk: int, reg_channels: int, add_mean: bool) -> None:
        super().__init__()
        self.reg_max, self.reg_topk, self.add_mean = reg_max, reg_topk, add_mean
        stats = 4 * (reg_topk + int(add_mean))
        self.reg_conf = torch.nn.Sequential(
            torch.nn.Conv2d(stats, reg_channels, 1), torch.nn.ReLU(),
            torch.nn.Conv2d(reg_channels, 1, 1), torch.nn.Sigmoid())

    def statistics(self, bbox_pred: torch.Tensor) -> torch.Tensor:
        n, _, h, w = bbox_pred.shape
        prob = torch.softmax(bbox_pred.reshape(n, 4, self.reg_max + 1, h, w), dim=2)
        stat = prob.topk(self.reg_topk, dim=2).values
        if self.add_mean:
            stat = torch.cat([stat, stat.mean(dim=2, keepdim=True)], dim=2)
        return stat.reshape(n, -1, h, w)

    def forward(self, bbox_pred: torch.Tensor) -> torch.Tensor:
        return self.reg_conf(self.statistics(bbox_pred))


class TorchGFocalV2(torch.nn.Module):
    """Reference head: mmdet's ``GFLHead`` (``gfl``) and :class:`TorchDGQP` (``dgqp``)."""

    def __init__(self, gfl: torch.nn.Module, dgqp: TorchDGQP) -> None:
        super().__init__()
        self.gfl, self.dgqp = gfl, dgqp

    def forward(self, feats):
        cls_logits, bbox_preds = self.gfl(feats)
        return [c.sigmoid() * self.dgqp(r) for c, r in zip(cls_logits, bbox_preds)], bbox_preds

    def loss(self, feats, gts, metas=IMG_METAS):
        """GFocalV2's losses (see the module docstring) and the box-loss normaliser before its
        clamp."""
        joint, bbox_preds = self(feats)
        sums = []
        single = self.gfl.loss_by_feat_single

        def recording(*args, **kwargs):
            out = single(*args, **kwargs)
            sums.append(float(out[3]))
            return out

        self.gfl.loss_by_feat_single = recording
        try:
            losses = self.gfl.loss_by_feat([torch.logit(j) for j in joint], bbox_preds, gts, metas)
        finally:
            del self.gfl.loss_by_feat_single
        return losses, joint, sum(sums)

    def jittor_state_dict(self):
        state = dict(self.gfl.state_dict())
        state.update({f'reg_conf.{k}': v for k, v in self.dgqp.reg_conf.state_dict().items()})
        return state


def build_reference(cfg=V2_CFG, seed: int = SEED) -> TorchGFocalV2:
    gfl_cfg = {k: v for k, v in copy.deepcopy(cfg).items()
               if k not in ('reg_topk', 'reg_channels', 'add_mean')}
    extra = cfg['loss_cls'].get('use_sigmoid', True) is False
    # mmdet's sigmoid QFL with one more class reproduces the extra channel (its target is always 0)
    gfl_cfg.update(num_classes=cfg['num_classes'] + int(extra),
                   loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
                                 loss_weight=1.0))
    gfl = MODELS.build(ConfigDict(type='GFLHead', **gfl_cfg))
    randomise_(gfl, seed)
    dgqp = TorchDGQP(REG_MAX, cfg['reg_topk'], cfg['reg_channels'], cfg['add_mean'])
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in dgqp.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return TorchGFocalV2(gfl, dgqp)


def build_pair(cfg=V2_CFG, seed: int = SEED):
    ref = build_reference(cfg, seed)
    head = GFocalV2Head(**copy.deepcopy(cfg))
    state_dict_to_jittor(head, ref.jittor_state_dict(), strict=True)
    return ref, head


def reg_branch(gfl: torch.nn.Module, x: torch.Tensor, scale) -> torch.Tensor:
    """``GFLHead.forward_single``'s ``bbox_pred`` in the input's dtype."""
    for conv in gfl.reg_convs:
        x = conv(x)
    return scale(gfl.gfl_reg(x))


def assert_dgqp_margins(ref: TorchGFocalV2, feats) -> None:
    """DGQP's decisions on float64 keep RELU_MARGIN_FACTOR times the float32 error: the ReLU
    inputs from 0, and each of the first reg_topk + 1 sorted probabilities from the next."""
    runs = {}
    for dtype in (torch.float32, torch.float64):
        model = copy.deepcopy(ref).to(dtype)
        with torch.no_grad():
            # mmdet's forward casts bbox_pred to float32: the float64 run redoes the reg branch
            bbox_preds = [reg_branch(model.gfl, torch.tensor(f, dtype=dtype), scale)
                          for f, scale in zip(feats, model.gfl.scales)]
            pre, probs = [], []
            for r in bbox_preds:
                stat = model.dgqp.statistics(r)
                pre.append(model.dgqp.reg_conf[0](stat).reshape(-1))
                n, _, h, w = r.shape
                prob = torch.softmax(r.reshape(n, 4, REG_MAX + 1, h, w), dim=2)
                probs.append(prob.sort(dim=2, descending=True).values[:, :, :REG_TOPK + 1]
                             .permute(0, 1, 3, 4, 2).reshape(-1, REG_TOPK + 1))
        runs[dtype] = (torch.cat(pre).double().numpy(), torch.cat(probs).double().numpy())
    (pre32, p32), (pre64, p64) = runs[torch.float32], runs[torch.float64]
    relu_err, prob_err = np.abs(pre32 - pre64).max(), np.abs(p32 - p64).max()
    assert np.abs(pre64).min() >= RELU_MARGIN_FACTOR * relu_err, (
        f'a DGQP ReLU input lies {np.abs(pre64).min():.2e} from 0; float32 error {relu_err:.2e}')
    gap = (p64[:, :-1] - p64[:, 1:]).min()
    assert gap >= RELU_MARGIN_FACTOR * prob_err, (
        f'two of the top-{REG_TOPK + 1} probabilities are {gap:.2e} apart; float32 error '
        f'{prob_err:.2e}')


def check_losses_and_gradients(gts, cfg=V2_CFG, expect_positives: bool = True):
    ref, head = build_pair(cfg)
    feats = make_feats(FEAT_SEED)
    assert_relu_margins(ref.gfl, feats)
    assert_dgqp_margins(ref, feats)
    priors = np.concatenate([a.numpy() for a in ref.gfl.prior_generator.grid_priors(
        [(s, s) for s in FEAT_SIZES], device='cpu')])
    for g in gts:
        if len(g.bboxes):
            assert_atss_margins(priors, [s * s for s in FEAT_SIZES], g.bboxes.numpy(), TOPK)
    assert (assert_giou_margins(ref.gfl, feats, gts) > 0) == expect_positives

    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    losses, joint, weight_sum = ref.loss(xs, gts)
    assert abs(weight_sum - 1.0) >= MARGIN  # the normaliser's clamp(min=1)
    sum(sum(v) for v in losses.values()).backward()

    jxs = [jt.array(f) for f in feats]
    got = head.loss(jxs, jt_gts(gts), IMG_METAS)
    ref_params = {('reg_conf.' + n if n.startswith(('0.', '2.')) else n): p
                  for n, p in list(ref.gfl.named_parameters()) +
                  list(ref.dgqp.reg_conf.named_parameters())}
    errs, worst = compare_losses_and_gradients(got, losses, head, jxs, xs, ref_params)
    assert errs[worst] <= GRAD_RTOL, errs
    assert all(errs[f'reg_conf.{i}.weight'] <= GRAD_RTOL for i in (0, 2))
    return losses, joint


def plain_qfl(joint, labels, scores, beta=2.0):
    """QFL on probabilities in plain torch (spec §2.2): BCE(p, 0) p^beta for negatives, at the
    positive class BCE(p, q) |q - p|^beta; summed."""
    p = joint.double()
    neg = -torch.log(1 - p) * p.pow(beta)
    loss = neg.clone()
    for i, (c, q) in enumerate(zip(labels, scores)):
        if c < p.shape[1]:
            loss[i, c] = -(q * torch.log(p[i, c]) + (1 - q) * torch.log(1 - p[i, c])) * \
                (q - p[i, c]).abs().pow(beta)
    return float(loss.sum())


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


def test_dgqp_branch_matches_the_formula():
    """DGQP alone on random distribution logits: statistics, quality and the gradients of a
    weighted sum of the quality w.r.t. the logits and DGQP's weights."""
    ref = build_reference()
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((2, 4 * (REG_MAX + 1), 5, 3)) * 2).astype(np.float32)
    coef = rng.standard_normal((2, 1, 5, 3)).astype(np.float32)
    # on float64, the top-k order and the ReLU inputs keep 1e-5 (float32's error is ~1e-7)
    with torch.no_grad():
        t = torch.tensor(logits, dtype=torch.float64)
        prob = torch.softmax(t.reshape(2, 4, REG_MAX + 1, 5, 3), dim=2)
        top = prob.sort(dim=2, descending=True).values[:, :, :REG_TOPK + 1]
        assert (top[:, :, :-1] - top[:, :, 1:]).min() >= 1e-5
        pre = copy.deepcopy(ref.dgqp.reg_conf[0]).double()(ref.dgqp.statistics(t))
        assert pre.abs().min() >= 1e-5
    x = torch.tensor(logits, requires_grad=True)
    stat = ref.dgqp.statistics(x)
    quality = ref.dgqp(x)
    (quality * torch.tensor(coef)).sum().backward()

    _, head = build_pair()
    jx = jt.array(logits)
    jstat = dgqp_statistics(jx, REG_MAX, REG_TOPK, True)
    jquality = head.reg_conf(jstat)
    assert tuple(jstat.shape) == (2, 4 * (REG_TOPK + 1), 5, 3)
    assert np.abs(jstat.numpy() - stat.detach().numpy()).max() <= OUT_ATOL
    assert np.abs(jquality.numpy() - quality.detach().numpy()).max() <= OUT_ATOL
    # the mean channel is the mean of the side's top-k
    s = jstat.numpy().reshape(2, 4, REG_TOPK + 1, 5, 3)
    assert np.allclose(s[:, :, -1], s[:, :, :-1].mean(axis=2), atol=1e-7)
    params = [head.reg_conf[0].weight, head.reg_conf[0].bias, head.reg_conf[2].weight,
              head.reg_conf[2].bias]
    grads = jt.grad((jquality * jt.array(coef)).sum(), [jx] + params)
    refs = [x] + [ref.dgqp.reg_conf[0].weight, ref.dgqp.reg_conf[0].bias,
                  ref.dgqp.reg_conf[2].weight, ref.dgqp.reg_conf[2].bias]
    for g, r in zip(grads, refs):
        assert rel_err(g.numpy(), r.grad.numpy().reshape(g.shape)) <= GRAD_RTOL


def test_structure_and_outputs_match_the_reference():
    ref, head = build_pair()
    assert set(dict(head.named_parameters())) == set(ref.jittor_state_dict())
    assert {'reg_conf.0.weight', 'reg_conf.2.bias'} <= set(dict(head.named_parameters()))
    assert tuple(head.reg_conf[0].weight.shape) == (REG_CHANNELS, 4 * (REG_TOPK + 1), 1, 1)
    assert head.cls_out_channels == NUM_CLASSES
    feats = make_feats(FEAT_SEED)
    assert_relu_margins(ref.gfl, feats)
    assert_dgqp_margins(ref, feats)
    with torch.no_grad():
        joint, bbox_preds = ref([torch.tensor(f) for f in feats])
    got_joint, got_bbox = head([jt.array(f) for f in feats])
    for r, g in zip(joint + bbox_preds, got_joint + got_bbox):
        assert tuple(g.shape) == tuple(r.shape)
        assert np.abs(g.numpy() - r.numpy()).max() <= OUT_ATOL
    # a probability, not a logit
    assert all(0 < g.numpy().min() and g.numpy().max() < 1 for g in got_joint)


def test_default_init_is_the_originals():
    head = GFocalV2Head(num_classes=NUM_CLASSES, in_channels=8, feat_channels=8, stacked_convs=1,
                        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                        anchor_generator=HEAD_CFG['anchor_generator'])
    assert (head.reg_topk, head.reg_channels, head.add_mean, head.reg_max) == (4, 64, True, 16)
    for conv in (head.reg_conf[0], head.reg_conf[2]):
        w = conv.weight.numpy()
        assert 0.003 < w.std() < 0.03 and np.all(conv.bias.numpy() == 0)
    assert np.allclose(head.gfl_cls.bias.numpy(), -np.log(99), atol=1e-6)


def test_losses_and_gradients_match_the_reference():
    losses, joint = check_losses_and_gradients(torch_gts(empty_second=False))
    assert sum(float(v) for v in losses['loss_bbox']) > 0


def test_losses_and_gradients_with_an_image_without_gt():
    losses, _ = check_losses_and_gradients(torch_gts(empty_second=True))
    assert sum(float(v) for v in losses['loss_bbox']) > 0


def test_no_gt_at_all_gives_finite_losses():
    losses, _ = check_losses_and_gradients(empty_gts(), expect_positives=False)
    values = {k: [float(v.detach()) for v in vs] for k, vs in losses.items()}
    assert all(v == 0 for v in values['loss_bbox'] + values['loss_dfl'])
    assert all(np.isfinite(v) and v > 0 for v in values['loss_cls'])


def test_classification_loss_is_qfl_on_the_joint_probability():
    """Without gt every target is 0: loss_cls per level = sum BCE(J, 0) J^2 over the level's
    priors of both images (label weight 1) / the sum over images of max(positives, 1) (mmdet's
    sampling results' ``avg_factor``: 2 here), computed in plain torch."""
    ref, head = build_pair()
    feats = make_feats(FEAT_SEED)
    got = head.loss([jt.array(f) for f in feats], jt_gts(empty_gts()), IMG_METAS)
    joint, _ = head([jt.array(f) for f in feats])
    for lvl, j in enumerate(joint):
        flat = torch.tensor(j.numpy()).permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
        expected = plain_qfl(flat, [NUM_CLASSES] * len(flat), [0.0] * len(flat)) / len(IMG_METAS)
        assert abs(float(got['loss_cls'][lvl].item()) - expected) <= LOSS_ATOL + LOSS_RTOL * \
            expected


def test_originals_extra_channel():
    """``use_sigmoid=False`` (the original's config): num_classes + 1 channels, losses and
    gradients as the reference with the extra class (only ever target 0), predictions without
    it (those of a head with the first num_classes channels)."""
    losses, joint = check_losses_and_gradients(torch_gts(empty_second=True), cfg=QUIRK_CFG)
    assert joint[0].shape[1] == NUM_CLASSES + 1
    ref, quirk = build_pair(QUIRK_CFG)
    plain = GFocalV2Head(**copy.deepcopy(V2_CFG))
    state = {k: v[:NUM_CLASSES] if k.startswith('gfl_cls.') else v
             for k, v in ref.jittor_state_dict().items()}
    state_dict_to_jittor(plain, state, strict=True)
    feats = [jt.array(f) for f in make_feats(FEAT_SEED)]
    for a, b in zip(quirk.predict(feats, IMG_METAS), plain.predict(feats, IMG_METAS)):
        assert a['bboxes'].shape[0] > 0
        assert int(a['labels'].numpy().max()) < NUM_CLASSES
        for key in ('bboxes', 'scores', 'labels'):
            assert np.array_equal(a[key].numpy(), b[key].numpy()), key


def test_predict_matches_the_reference():
    ref, head = build_pair()
    feats = make_feats(FEAT_SEED)
    with torch.no_grad():
        joint, bbox_preds = ref([torch.tensor(f) for f in feats])
        logits = [torch.logit(j.double()) for j in joint]
    assert assert_predict_margins(ref.gfl, logits, bbox_preds, HEAD_CFG['test_cfg']) > 0
    for rescale in (False, True):
        with torch.no_grad():
            expected = ref.gfl.predict_by_feat([lg.float() for lg in logits], bbox_preds,
                                               batch_img_metas=IMG_METAS, rescale=rescale)
        assert_same_detections(
            expected, head.predict([jt.array(f) for f in feats], IMG_METAS, rescale=rescale))


def test_registered_for_mixed_and_pure_configs():
    """``GFocalV2Head`` builds a bridged dense head in mmdet's registry (mixed configs) and the
    Jittor head inside Jittor parents (pure configs); the bridged one trains from mmdet's
    ``loss(x, data_samples)`` with the pure head's losses."""
    ref, head = build_pair()
    assert type(build_jittor_module(dict(type='GFocalV2Head', **copy.deepcopy(V2_CFG)))) is \
        GFocalV2Head
    bridged = bridged_head(dict(type='GFocalV2Head', **copy.deepcopy(V2_CFG)),
                           ref.jittor_state_dict())
    assert isinstance(bridged, BridgedDenseHead)
    feats = make_feats(FEAT_SEED)
    samples = det_data_samples(torch_gts(empty_second=True))
    xs = [torch.tensor(f, requires_grad=True) for f in feats]
    got = bridged.loss(xs, samples)
    pure = head.loss([jt.array(f) for f in feats], jt_gts(torch_gts(empty_second=True)),
                     IMG_METAS)
    for name in pure:
        assert np.allclose([float(v) for v in got[name]], [float(v.item()) for v in pure[name]],
                           atol=1e-6), name
    sum(sum(v) for v in got.values()).backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in xs)


def test_refusals():
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        MODELS.build(ConfigDict(type='GFocalV2Head', foo=1, **copy.deepcopy(V2_CFG)))
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        GFocalV2Head(foo=1, **copy.deepcopy(V2_CFG))
    with pytest.raises(InputError, match='activated=True'):
        GFocalV2Head(**dict(copy.deepcopy(V2_CFG), loss_cls=dict(
            type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0)))
    with pytest.raises(InputError, match='QualityFocalLoss'):
        GFocalV2Head(**dict(copy.deepcopy(V2_CFG), loss_cls=dict(
            type='FocalLoss', use_sigmoid=True)))
    with pytest.raises(InputError, match='reg_topk'):
        GFocalV2Head(**dict(copy.deepcopy(V2_CFG), reg_topk=REG_MAX + 2))
    with pytest.raises(InputError, match='reg_channels'):
        GFocalV2Head(**dict(copy.deepcopy(V2_CFG), reg_channels=0))
    with pytest.raises(InputError, match='add_mean'):
        GFocalV2Head(**dict(copy.deepcopy(V2_CFG), add_mean='yes'))
