"""UniDetector's CLIPResLayer and CLIP attention pool (Jittor) against open_clip's ModifiedResNet
``layer4`` and ``attnpool`` with identical weights (random, tiny: width 8, so layer4 maps 128 to 256
channels, 8x8 RoI features to 4x4; 4 heads).

Tolerances: outputs max abs 1e-4; gradients (inputs and every parameter) max|a-b| / max|b| 1e-3,
after asserting on a float64 run of the reference that every ReLU decision lies farther from zero
than 10x the float32 error bound there (jt_mm_plugins/alignment/margins.py). BatchNorms run in
eval mode in both (CLIPResLayer keeps them so while training, as the original).

Mixed mode: mmdet's own ``StandardRoIHead`` with ``shared_head=dict(type='CLIPResLayer')`` (bridged)
and a bridged Jittor bbox head (jt_mm_plugins/bridge/bbox_head.py) against the same RoI head with
open_clip's layer4 and mmdet's ``BBoxHead``: losses and gradients.
"""
import copy

import numpy as np
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment import margins
from jt_mm_plugins.alignment.pairs import EvalNormCLIPLayer4
from jt_mm_plugins.models.layers.attention_pool import CLIPAttentionPool2d
from jt_mm_plugins.models.roi_heads.clip_res_layer import CLIPResLayer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

modified_resnet = pytest.importorskip('open_clip.modified_resnet')
pytest.importorskip('mmcv.ops')
import test_roi_head as base  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

LAYERS, WIDTH, HEADS, OUT_DIM = [1, 1, 1, 2], 8, 4, 64
IN_CH, OUT_CH, ROI = WIDTH * 16, WIDTH * 32, 8
OUT_ATOL, GRAD_RTOL = 1e-4, 1e-3


def open_clip_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # attnpool's spacial_dim = image_size // 32 = ROI // 2 (layer4 halves the RoI features)
    net = modified_resnet.ModifiedResNet(LAYERS, OUT_DIM, HEADS, image_size=ROI * 16, width=WIDTH)
    with torch.no_grad():  # BN statistics away from the (0, 1) init, so eval mode matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


class Layer4Pool(torch.nn.Module):
    """open_clip's layer4 then attnpool (the reference of CLIPResLayer + CLIPAttentionPool2d)."""

    def __init__(self, net):
        super().__init__()
        self.layer4, self.attnpool = net.layer4, net.attnpool

    def forward(self, x):
        return self.attnpool(self.layer4(x))


def load_into_jittor(module: jt.nn.Module, state: dict, prefix: str) -> None:
    own = dict(module.named_parameters())
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    assert sorted(own) == sorted(picked), sorted(set(own) ^ set(picked))
    for name, var in own.items():
        var.assign(jt.array(picked[name].detach().numpy()))


def relative_error(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def test_res_layer_and_attention_pool_match_open_clip():
    net = open_clip_net()
    ref = Layer4Pool(net)
    x_np = np.random.RandomState(0).randn(3, IN_CH, ROI, ROI).astype(np.float32)
    w_np = np.random.RandomState(1).randn(3, OUT_DIM).astype(np.float32)

    def run(module, dtype):
        x = torch.from_numpy(x_np).to(dtype).requires_grad_(True)
        (module(x) * torch.from_numpy(w_np).to(dtype)).sum().backward()
    margins.assert_float32_decides(ref, run)

    ref.zero_grad()
    x_t = torch.from_numpy(x_np).requires_grad_(True)
    mid_t = net.layer4(x_t)
    out_t = net.attnpool(mid_t)
    (out_t * torch.from_numpy(w_np)).sum().backward()

    layer, pool = CLIPResLayer(LAYERS, width=WIDTH), CLIPAttentionPool2d(ROI // 2, OUT_CH, HEADS,
                                                                          OUT_DIM)
    state = net.state_dict()
    load_into_jittor(layer, {k: v for k, v in state.items() if k.startswith('layer4.')}, '')
    load_into_jittor(pool, state, 'attnpool.')
    layer.train()
    pool.train()
    assert not any(m.is_training() for m in layer.modules() if isinstance(m, jt.nn.BatchNorm))
    x_j = jt.array(x_np)
    mid_j = layer(x_j)
    out_j = pool(mid_j)
    assert float(np.abs(mid_j.numpy() - mid_t.detach().numpy()).max()) < OUT_ATOL
    assert float(np.abs(out_j.numpy() - out_t.detach().numpy()).max()) < OUT_ATOL

    params = {**{k: v for k, v in layer.named_parameters()
                 if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))},
              **{'attnpool.' + k: v for k, v in pool.named_parameters()}}
    grads = jt.grad((out_j * jt.array(w_np)).sum(), [x_j, *params.values()])
    assert relative_error(grads[0].numpy(), x_t.grad.numpy()) < GRAD_RTOL
    ref_params = dict(ref.named_parameters())
    assert sorted(ref_params) == sorted(params)
    worst = 0.0
    for name, g in zip(params, grads[1:]):
        if name == 'attnpool.k_proj.bias':
            # mathematically zero: adding q.b to every token's logit leaves the softmax unchanged;
            # both sides give rounding noise
            scale = np.abs(ref_params['attnpool.k_proj.weight'].grad.numpy()).max()
            assert np.abs(g.numpy()).max() < 1e-5 * scale
            continue
        err = relative_error(g.numpy(), ref_params[name].grad.numpy())
        worst = max(worst, err)
        assert err < GRAD_RTOL, (name, err)
    # BN statistics are never updated by a training forward
    np.testing.assert_array_equal(layer.layer4[0].bn1.running_mean.numpy(),
                                  state['layer4.0.bn1.running_mean'].numpy())
    print(f'\n[clip-layers] outputs {np.abs(out_j.numpy() - out_t.detach().numpy()).max():.1e}, '
          f'worst parameter gradient {worst:.1e}')


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(InputError, match='num_heads 3 does not divide'):
        CLIPAttentionPool2d(4, 16, 3)
    with pytest.raises(InputError, match=r'expects \(N, 16, 4, 4\)'):
        CLIPAttentionPool2d(4, 16, 4)(jt.zeros((1, 16, 5, 5)))
    with pytest.raises(InputError, match=r'CLIPResLayer expects \(N, 128, H, W\)'):
        CLIPResLayer(LAYERS, width=WIDTH)(jt.zeros((1, 64, 8, 8)))
    with pytest.raises(InputError, match='pretrained'):
        CLIPResLayer(LAYERS, pretrained='RN50.pt')


@MODELS.register_module(force=True)
class OpenCLIPLayer4(EvalNormCLIPLayer4):
    """Test reference: open_clip's layer4 as an mmdet shared head, BN always in eval mode."""

    def __init__(self, layers, width):
        super().__init__(modified_resnet.ModifiedResNet(layers, OUT_DIM, HEADS, ROI * 16,
                                                        width).layer4)


def roi_head_cfg(shared_head: str, bbox_head: str) -> dict:
    cfg = base.roi_head_cfg()
    cfg['bbox_roi_extractor'] = dict(
        type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=ROI,
                                                  sampling_ratio=0),
        out_channels=IN_CH, featmap_strides=[16])
    cfg['shared_head'] = dict(type=shared_head, layers=LAYERS, width=WIDTH)
    cfg['bbox_head'] = dict(type=bbox_head, with_avg_pool=True, roi_feat_size=ROI // 2,
                            in_channels=OUT_CH, num_classes=base.NUM_CLASSES,
                            loss_bbox=dict(type='L1Loss', loss_weight=1.0))
    return cfg


def test_clip_res_layer_as_shared_head_of_mmdets_roi_head():
    reference = MODELS.build(ConfigDict(type='StandardRoIHead',
                                        **roi_head_cfg('OpenCLIPLayer4', 'BBoxHead')))
    base.randomise_(reference)
    reference.shared_head.load_state_dict(open_clip_net().state_dict(), strict=False)
    mixed = MODELS.build(ConfigDict(type='StandardRoIHead',
                                    **roi_head_cfg('CLIPResLayer', 'JittorBBoxHead')))
    mixed.load_state_dict(reference.state_dict(), strict=True)
    reference.train()
    mixed.train()
    assert not any(m.training for m in mixed.shared_head.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))

    # few RoIs, and a seed whose every ReLU decision has a float64 margin (seeds 3..8 had not)
    case = base.make_case(seed=9, num_props=(4, 3), num_gts=(1, 1))
    case['feats'] = [np.random.RandomState(9).randn(2, IN_CH, 4, 4).astype(np.float32)]
    base.assert_float32_decides(reference, case)
    ref_losses, ref_feat_grads, ref_param_grads = base.mmdet_loss(reference, case)
    got_losses, got_feat_grads, got_param_grads = base.mmdet_loss(mixed, case)
    assert float(ref_losses['loss_bbox']) > 0
    base.compare_losses(got_losses, ref_losses)
    base.compare_grads(got_feat_grads, ref_feat_grads, 'features')
    names = sorted(ref_param_grads)
    assert names == sorted(got_param_grads)
    assert any(n.startswith('shared_head.layer4.') for n in names)
    base.compare_grads([got_param_grads[k] for k in names], [ref_param_grads[k] for k in names],
                       'params')
    # the shared head's running statistics did not move
    torch.testing.assert_close(mixed.shared_head.layer4[0].bn1.running_mean,
                               reference.shared_head.layer4[0].bn1.running_mean)
