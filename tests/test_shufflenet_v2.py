"""ShuffleNetV2 (Jittor, bridged into mmdet's MODELS) against torchvision's ``shufflenet_v2_x*``.

The reference is torchvision's model itself (its ``conv1``, ``maxpool``, ``stage2..4``, ``conv5``;
``fc`` dropped, as NanoDet does), returning the requested stages; for ``activation='LeakyReLU'``
its ReLUs are swapped for NanoDet's ``LeakyReLU(0.1)``. Random conv weights, random BatchNorm
affines and running statistics; the torchvision state dict loads strictly into the bridged model.

Tolerances (float32, inputs 2x3x64x64, 0.5x): outputs of every out stage 1e-4 max abs; the input
gradient and every parameter gradient 1e-3 relative (max|a - b| / max|b|); running statistics after
a training forward 1e-5. Robust by construction (jt_mm_plugins/alignment/margins.py through
``compare_modules``): a float32 gradient is compared only where float32 decides every ReLU /
LeakyReLU / max-pool decision after its module's first call; a float64 copy of the Jittor model is
compared with a float64 torchvision model on every output and gradient (1e-6 / 1e-5) after
asserting that no float64 decision lies within 1e-9 of its scale from its boundary.
"""
import numpy as np
import pytest
import torch
import torchvision

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401  (registers ShuffleNetV2 in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import compare_modules, randomize_norm_statistics
from jt_mm_plugins.alignment.nanodet_reference import TORCHVISION, TorchvisionTrunk
from jt_mm_plugins.bridge import build_jittor_module, torch_to_jittor
from jt_mm_plugins.models.backbones.shufflenet_v2 import ShuffleNetV2
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from mmdet.registry import MODELS

from alignment_checks import (assert_aligned, assert_buffers_close, bridged_twins, randomise_convs_,
                              stop_gradients)

IMAGE_SHAPE = (2, 3, 128, 128)
SIDE = IMAGE_SHAPE[-1]
STATS_ATOL = 1e-5
BRANCH_OUTPUT_NORMS = ('branch1.3', 'branch2.6')
OUTPUT_SCALE = 0.2
# Train mode: a norm followed by a 1x1 conv and a batch-statistics norm, with nothing in between
# (branch1.1 -> branch1.2 -> branch1.3, branch2.4 -> branch2.5 -> branch2.6), adds a per-channel
# constant that the second norm removes: the gradient of its bias is exactly 0, computed as
# rounding noise (1e-4 absolute, relative differences ~1 between any two runs). Not trained in
# the train-mode comparison (requires_grad=False on every model), so not compared.
ZERO_GRAD_BIASES = ('branch1.1.bias', 'branch2.4.bias')
def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random conv weights (variance 2 / fan-in), random BatchNorm affines, and running
    statistics near those of the test batch ``make_input()`` (each a random 0.8-1.2 times /
    +-0.1 std off).

    Statistics from ``randomize_norm_statistics`` alone (means in +-0.5, variances in 0.5-2) do
    not normalise anything: in eval mode 17 blocks of them grow the activations to ~3e3, where
    float32 rounding alone exceeds the 1e-4 output tolerance (5e-7 relative measured). Those of
    another random batch do not either: at stage 4 (2x2 maps) a few values per channel give
    near-zero variances and outputs ~65 on other images (6.6e-6 relative, 4e-4 abs measured).
    A trained network's statistics match its activations; these do, randomly off.

    The affines of each branch's last norm (``branch1.3``, ``branch2.6``, before the activation
    that ends the branch) are scaled by ``OUTPUT_SCALE`` (0.2). (Leaky)ReLU is positively
    homogeneous and the next block normalises its input again, so every decision and every
    relative error stays the same, but the stage outputs are ~1 instead of ~5: float32 itself
    (torchvision float32 against float64) is 1.4e-5 relative off at stage 4 after 51 convolutions,
    1.4e-4 absolute at outputs ~7, over the 1e-4 absolute output tolerance.
    """
    gen = torch.Generator().manual_seed(seed)
    randomise_convs_(model, gen)
    randomize_norm_statistics(model, seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith(BRANCH_OUTPUT_NORMS):
                m.weight.mul_(OUTPUT_SCALE)
                m.bias.mul_(OUTPUT_SCALE)
    for m in norms:  # running statistics := those of one batch
        m.reset_running_stats()
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(make_input())
        for m in norms:
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean.add_((torch.rand(m.num_features, generator=gen) - 0.5) * 0.2 * std)
            m.running_var.mul_(torch.rand(m.num_features, generator=gen) * 0.4 + 0.8)
            m.num_batches_tracked.fill_(7)
    return model


def make_pair(seed=0, **kwargs):
    """(torchvision trunk, bridged ShuffleNetV2, float64 bridged ShuffleNetV2), identical
    weights."""
    torch_kwargs = {k: v for k, v in kwargs.items()
                    if k in ('model_size', 'out_stages', 'with_last_conv', 'activation')}
    reference = randomise_(TorchvisionTrunk(**torch_kwargs), seed)
    return (reference, ) + bridged_twins(dict(type='ShuffleNetV2', **kwargs),
                                         reference.state_dict())


def make_input(seed=0, shape=IMAGE_SHAPE):
    return torch.from_numpy(np.random.RandomState(seed).randn(*shape).astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Names: torchvision weights load
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('model_size', ['0.5x', '1.0x', '1.5x', '2.0x'])
def test_torchvision_state_dict_loads_strictly_without_fc(model_size):
    net = getattr(torchvision.models, TORCHVISION[model_size])()
    tv_sd = {k: v for k, v in net.state_dict().items() if not k.startswith('fc.')}
    model = MODELS.build(dict(type='ShuffleNetV2', model_size=model_size, with_last_conv=True))
    own = model.state_dict()
    assert list(own) == list(tv_sd)
    assert all(own[k].shape == v.shape and own[k].dtype == v.dtype for k, v in tv_sd.items())
    model.load_state_dict(tv_sd, strict=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tv_sd.items())
    # without conv5 (NanoDet's default) the same keys minus conv5.*
    bare = ShuffleNetV2(model_size=model_size)
    assert {k for k, _ in bare.named_parameters()} == {  # Jittor: buffers too
        k for k in net.state_dict() if not k.startswith(('fc.', 'conv5.'))}


def test_init_cfg_pretrained_loads_a_torchvision_checkpoint(tmp_path):
    """The way to use torchvision weights (``pretrain=True`` would download): the whole file,
    fc included, through mmengine's Pretrained init (fc reported as unexpected)."""
    net = randomise_(torchvision.models.shufflenet_v2_x0_5())
    path = tmp_path / 'shufflenetv2_x0.5.pth'
    torch.save(net.state_dict(), path)
    model = MODELS.build(dict(type='ShuffleNetV2', model_size='0.5x', with_last_conv=True,
                              init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    model.init_weights()
    for name, value in model.state_dict().items():
        assert torch.equal(value, net.state_dict()[name]), name


# --------------------------------------------------------------------------------------------------
# Outputs and gradients against torchvision
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('kwargs', [
    dict(model_size='0.5x', activation='ReLU'),
    dict(model_size='0.5x', activation='LeakyReLU', with_last_conv=True, out_stages=(3, 4)),
], ids=['relu', 'leaky-conv5'])
def test_outputs_and_gradients_match_torchvision(kwargs, training):
    reference, model, model64 = make_pair(**kwargs)
    if training:
        stop_gradients((reference, model, model64), ZERO_GRAD_BIASES)
    x = make_input()
    rows = compare_modules(model, reference, [x], training=training, candidate64=model64)
    assert_aligned(rows)
    if training:  # running statistics after one training forward each
        assert_buffers_close(model, reference, STATS_ATOL)
    widths = {'0.5x': (48, 96, 1024 if kwargs.get('with_last_conv') else 192)}[kwargs['model_size']]
    stages = kwargs.get('out_stages', (2, 3, 4))
    assert [r.name.split(' ', 1)[1] for r in rows if r.kind == 'output'] == [
        str((2, widths[s - 2], SIDE // 2**(s + 1), SIDE // 2**(s + 1))) for s in stages]


def test_pure_jittor_module_matches_torchvision():
    """The Jittor module as a Jittor parent (a detector) builds it, weights copied via numpy."""
    reference = randomise_(TorchvisionTrunk(activation='LeakyReLU')).eval()
    module = build_jittor_module(dict(type='ShuffleNetV2', model_size='0.5x',
                                      activation='LeakyReLU'))
    own = dict(module.named_parameters())
    assert set(own) == set(reference.state_dict())
    for name, var in own.items():
        var.assign(torch_to_jittor(reference.state_dict()[name]))
    module.eval()
    x = make_input(1)
    outs = module(jt.array(x.numpy()))
    with torch.no_grad():
        expected = reference(x)
    for a, b in zip(outs, expected):
        assert float(np.abs(a.numpy() - b.numpy()).max()) <= 1e-4


# --------------------------------------------------------------------------------------------------
# frozen_stages, norm_eval, arguments
# --------------------------------------------------------------------------------------------------
def test_frozen_stages_and_norm_eval():
    reference, model, _ = make_pair(model_size='0.5x', frozen_stages=1)
    frozen_prefixes = ('conv1.', 'stage2.')
    expected = {n for n, _ in model.named_parameters() if n.startswith(frozen_prefixes)}
    assert expected and {n for n, p in model.named_parameters() if not p.requires_grad} == expected
    module = model.jittor_module
    model.train()
    assert not module.conv1[1].is_training() and not module.stage2[0].branch1[1].is_training()
    assert module.stage3[0].branch1[1].is_training()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = make_input()
    model(x)[0].sum().backward()
    assert all((p.grad is None) == (n in expected) for n, p in model.named_parameters())
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(after[name], value)
        if name.startswith(frozen_prefixes):
            assert not changed, f'{name} of a frozen stage changed'
        elif 'running_' in name:
            assert changed, f'{name} of a trained stage did not update'
    # eval -> train keeps them frozen; frozen_stages=3 with conv5 freezes conv5 too
    model.eval()
    model.train()
    assert not module.stage2[1].branch2[1].is_training()
    full = ShuffleNetV2(model_size='0.5x', with_last_conv=True, frozen_stages=3)
    assert not any(p.requires_grad for p in full.parameters())

    # norm_eval: every BatchNorm in eval mode while training, parameters still trained
    model = MODELS.build(dict(type='ShuffleNetV2', model_size='0.5x', norm_eval=True))
    model.load_state_dict(reference.state_dict())
    model.train()
    bns = [m for m in model.jittor_module.modules() if isinstance(m, BatchNorm2d)]
    assert bns and not any(m.is_training() for m in bns)
    assert all(p.requires_grad for p in model.parameters())
    reference.eval()
    with torch.no_grad():
        expected = reference(x)
    for a, b in zip(model(x), expected):
        assert float((a.detach() - b).abs().max()) <= 1e-4


def test_nanodet_initialisation():
    module = ShuffleNetV2(model_size='0.5x')
    for name, var in module.named_parameters():
        value = var.numpy()
        if name.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
            assert np.all(value == (1 if name.endswith('running_var') else 0)), name
        elif value.ndim == 4:  # N(0, 1 / input channels per group)
            std = 1.0 / value.shape[1]
            assert abs(value.std() - std) < 0.25 * std or value.size < 500, name
        elif name.endswith('weight'):
            assert np.all(value == 1), name
        else:
            assert np.allclose(value, 1e-4), name


@pytest.mark.parametrize('kwargs,match', [
    (dict(model_size='3.0x'), 'model_size'),
    (dict(out_stages=(1, 2)), 'out_stages'),
    (dict(out_stages=()), 'out_stages'),
    (dict(kernal_size=5), 'kernal_size'),
    (dict(pretrain=True), 'init_cfg'),
    (dict(frozen_stages=4), 'frozen_stages'),
    (dict(activation='SELU'), 'SELU'),
])
def test_invalid_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShuffleNetV2(**kwargs)
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='ShuffleNetV2', **kwargs))


def test_wrong_input_is_named():
    model = MODELS.build(dict(type='ShuffleNetV2', model_size='0.5x'))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(torch.zeros(1, 4, 32, 32))
