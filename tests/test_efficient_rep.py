"""EfficientRep (Jittor, bridged) against yolov6detect's ``EfficientRep`` (YOLOv6 3.0, the backbone
Gold-YOLO builds on), and the RepVGG deploy form (``switch_to_deploy``).

Identical weights (the yolov6 state dict loads strictly into the bridged model): random convs,
random norm affines, running statistics calibrated on the test batch (tests/yolov6_reference.py).
Tiny widths (``channels_list`` [8, 16, 16, 24, 32], repeats [1, 2, 2, 2, 2]), ``fuse_P2`` and
``cspsppf`` as Gold-YOLO-S, inputs 2x3x64x64 (C5 is 2x2: the 5x5 max-pools see maps smaller than
their kernel). Tolerances (``compare_modules``): outputs 1e-4 max abs, gradients 1e-3 relative in
float32 where float32 decides every ReLU / max-pool decision; a float64 twin against float64
yolov6 on everything (1e-6 / 1e-5) after asserting no float64 decision within 1e-9 of its boundary.
The reference's SPPF runs its chained 5x5 max-pools as the equal single 5/9/13 pools (same values;
the chained form has structural exact ties, see ``unchain_sppf_pools_``); the Jittor side keeps
YOLOv6's chained form.
"""
import numpy as np
import pytest
import torch

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401  (registers EfficientRep in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import compare_modules
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.models.backbones.efficient_rep import (EfficientRep, yolov6_channels,
                                                           yolov6_repeats)
from jt_mm_plugins.models.layers.repvgg_block import RepVGGBlock
from jt_mm_plugins.models.layers.sim_sppf import SimSPPF
from mmdet.registry import MODELS

from alignment_checks import assert_aligned, bridged_twins
from yolov6_reference import (randomise_calibrated_, unchain_sppf_pools_, yolov6,
                              yolov6_trained_bn_)

CHANNELS = [8, 16, 16, 24, 32]
REPEATS = [1, 2, 2, 2, 2]
# Gold-YOLO-S's backbone as its config states it (before YOLOv6's width / depth scaling).
GOLD_YOLO_S = dict(channels_list=[64, 128, 256, 512, 1024], num_repeats=[1, 6, 12, 18, 6],
                   width_multiple=0.5, depth_multiple=0.33, fuse_P2=True, cspsppf=True)


def make_input(seed=0, shape=(2, 3, 64, 64)):
    return torch.from_numpy(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def reference_backbone(cspsppf=True, fuse_P2=True, channels=CHANNELS, repeats=REPEATS, seed=0):
    er = yolov6('models.efficientrep')
    model = yolov6_trained_bn_(er.EfficientRep(3, channels, repeats, fuse_P2=fuse_P2,
                                               cspsppf=cspsppf))
    return randomise_calibrated_(model, make_input(seed + 1), seed)


def jittor_copy(reference, **kwargs):
    """A Jittor EfficientRep holding ``reference``'s weights (assigned by name)."""
    module = EfficientRep(**kwargs)
    own = dict(module.named_parameters())
    state = reference.state_dict()
    assert set(own) == set(state)
    for name, var in own.items():
        var.assign(torch_to_jittor(state[name]).cast(var.dtype))
    return module


# --------------------------------------------------------------------------------------------------
# Outputs and gradients against yolov6detect
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_matches_yolov6_efficientrep(training):
    reference = reference_backbone()
    cfg = dict(type='EfficientRep', channels_list=CHANNELS, num_repeats=REPEATS, fuse_P2=True,
               cspsppf=True)
    model, model64 = bridged_twins(cfg, reference.state_dict())
    assert list(model.state_dict()) == list(reference.state_dict())
    rows = compare_modules(model, unchain_sppf_pools_(reference), [make_input()],
                           training=training, candidate64=model64)
    assert_aligned(rows)
    assert [r.name.split(' ', 1)[1] for r in rows if r.kind == 'output'] == [
        '(2, 16, 16, 16)', '(2, 16, 8, 8)', '(2, 24, 4, 4)', '(2, 32, 2, 2)']
    if training:  # running statistics after one training forward (momentum 0.03 on both sides)
        ref_buffers = dict(reference.named_buffers())
        for name, value in model.named_buffers():
            assert float((value.double() - ref_buffers[name].double()).abs().max()) <= 1e-5, name


def test_simsppf_matches_yolov6():
    """``cspsppf=False`` ends ERBlock_5 with SimSPPF; compared on its own (one module, cheap)."""
    common = yolov6('layers.common')
    reference = randomise_calibrated_(yolov6_trained_bn_(common.SimSPPF(16, 24)),
                                      make_input(1, (2, 16, 6, 6)))
    model = SimSPPF(16, 24)
    for name, var in model.named_parameters():
        var.assign(torch_to_jittor(reference.state_dict()[name]).cast(var.dtype))
    model.eval()
    reference.eval()
    x = make_input(2, (2, 16, 6, 6))
    with torch.no_grad():
        expected = reference(x).numpy()
    assert np.abs(model(jt.array(x.numpy())).numpy() - expected).max() <= 1e-4
    backbone = EfficientRep(channels_list=CHANNELS, num_repeats=REPEATS)
    assert isinstance(backbone.ERBlock_5[2], SimSPPF) and len(backbone(
        jt.array(make_input(0, (1, 3, 64, 64)).numpy()))) == 3


# --------------------------------------------------------------------------------------------------
# Deploy mode: RepVGG re-parameterisation
# --------------------------------------------------------------------------------------------------
def test_switch_to_deploy_fuses_every_block_like_yolov6():
    reference = reference_backbone().eval()
    module = jittor_copy(reference, channels_list=CHANNELS, num_repeats=REPEATS, fuse_P2=True,
                         cspsppf=True).eval()
    x = make_input(3)
    unfused = [y.numpy() for y in module(jt.array(x.numpy()))]
    blocks = [m for m in module.modules() if isinstance(m, RepVGGBlock)]
    assert len(blocks) == 1 + 4 + sum(REPEATS[1:])
    module.switch_to_deploy()
    assert module.deploy and all(b.deploy and not hasattr(b, 'rbr_dense') for b in blocks)
    names = [n for n, _ in module.named_parameters()]
    assert not any('rbr_dense' in n or 'rbr_1x1' in n or 'rbr_identity' in n for n in names)
    fused = [y.numpy() for y in module(jt.array(x.numpy()))]
    for a, b in zip(fused, unfused):  # the same function, float32 rounding apart
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max())

    # yolov6's own fusion of the same weights: equal kernels and biases, equal outputs
    for m in reference.modules():
        if hasattr(m, 'switch_to_deploy'):
            m.switch_to_deploy()
    ref_state = reference.state_dict()
    own = dict(module.named_parameters())
    assert set(own) == set(ref_state)
    for name, value in ref_state.items():
        ours = own[name].numpy()
        assert np.abs(ours - value.numpy()).max() <= 1e-5 * max(1.0, np.abs(value.numpy()).max()), \
            name
    with torch.no_grad():
        expected = [y.numpy() for y in reference(x)]
    for a, b in zip(fused, expected):
        assert np.abs(a - b).max() <= 1e-4

    # a deploy checkpoint loads strictly into a deploy-built (bridged) backbone
    deployed = MODELS.build(dict(type='EfficientRep', channels_list=CHANNELS,
                                 num_repeats=REPEATS, fuse_P2=True, cspsppf=True, deploy=True))
    deployed.load_state_dict(ref_state, strict=True)
    deployed.eval()
    with torch.no_grad():
        for a, b in zip(deployed(x), expected):
            assert float((a - torch.from_numpy(b)).abs().max()) <= 1e-4
    with pytest.raises(RuntimeError, match='rbr_dense'):  # a training checkpoint does not
        deployed.load_state_dict(reference_backbone().state_dict(), strict=True)


# --------------------------------------------------------------------------------------------------
# Gold-YOLO-S settings, arguments, errors
# --------------------------------------------------------------------------------------------------
def test_gold_yolo_s_scaling_and_names():
    assert yolov6_channels(GOLD_YOLO_S['channels_list'], 0.5) == [32, 64, 128, 256, 512]
    assert yolov6_repeats(GOLD_YOLO_S['num_repeats'], 0.33) == [1, 2, 4, 6, 2]
    assert yolov6_channels([64, 128, 256, 512, 1024], 0.25) == [16, 32, 64, 128, 256]
    assert yolov6_channels([12], 1.0) == [16]  # rounded up to a multiple of 8
    module = EfficientRep(**GOLD_YOLO_S)
    er = yolov6('models.efficientrep')
    reference = er.EfficientRep(3, [32, 64, 128, 256, 512], [1, 2, 4, 6, 2], fuse_P2=True,
                                cspsppf=True)
    own = {n: tuple(v.shape) for n, v in module.named_parameters()}
    assert own == {n: tuple(v.shape) if v.ndim else (1, ) for n, v in
                   reference.state_dict().items()}
    assert module.channels_list == [32, 64, 128, 256, 512]
    assert module.num_repeats == [1, 2, 4, 6, 2]


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(channels_list=[8, 8, 8, 8], num_repeats=REPEATS), ValueError, 'at least 5'),
    (dict(channels_list=CHANNELS, num_repeats=None), ValueError, 'num_repeats'),
])
def test_invalid_args(kwargs, error, match):
    with pytest.raises(error, match=match):
        EfficientRep(**kwargs)


def test_block_errors_and_wrong_input():
    with pytest.raises(NotImplementedError, match='se'):
        RepVGGBlock(8, 8, use_se=True)
    with pytest.raises(ValueError, match='kernel_size=3'):
        RepVGGBlock(8, 8, kernel_size=5, padding=2)
    model = MODELS.build(dict(type='EfficientRep', channels_list=CHANNELS, num_repeats=REPEATS))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(torch.zeros(1, 4, 32, 32))
