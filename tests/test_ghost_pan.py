"""GhostPAN (Jittor, bridged into mmdet's MODELS) against a plain-torch GhostPAN written here from
the spec (../shared/specs/seed-systems.md section 4.2; NanoDet's parameter names).

The torch reference gets random weights and random BatchNorm affines and running statistics; its
state dict loads strictly into the bridged GhostPAN (so the names are NanoDet's on both sides),
and both run on the same inputs. Tolerances (float32): every output 1e-4 max abs; the gradient of
every input and every parameter 1e-3 relative (max|a - b| / max|b|), in eval and train mode; the
running statistics after a training forward 1e-5. Robust by construction (``compare_modules``,
jt_mm_plugins/alignment/margins.py): a float32 gradient is compared only where float32 decides
every (Leaky)ReLU after its module's first call, and a float64 Jittor GhostPAN is compared with the
float64 reference on every output and gradient (1e-6 / 1e-5) after asserting that no float64
decision lies within 1e-9 of its scale from its boundary.
"""

import numpy as np
import pytest
import torch

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401  (registers GhostPAN in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import compare_modules, randomize_norm_statistics
from jt_mm_plugins.alignment.nanodet_reference import RefGhostPAN
from jt_mm_plugins.models.layers import DepthwiseConvModule, GhostModule
from jt_mm_plugins.models.necks.ghost_pan import GhostPAN
from mmdet.registry import MODELS

from alignment_checks import (assert_aligned, assert_buffers_close, bridged_twins, randomise_convs_,
                              stop_gradients)

STATS_ATOL = 1e-5
BATCH = 2
# Train mode: the Ghost bottleneck's shortcut is dw conv -> BN (shortcut.1) -> 1x1 conv -> BN with
# nothing in between, so shortcut.1's bias adds a per-channel constant that the batch-statistics
# BN removes: its gradient is exactly 0 (4e-14 in float64), computed as rounding noise (1e-5,
# relative differences ~1 between any two runs). Not trained in the train-mode comparison
# (requires_grad=False on every model), so not compared.
ZERO_GRAD_BIASES = ('shortcut.1.bias', )


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def make_pair(seed=0, **kwargs):
    """(torch reference, bridged GhostPAN, float64 bridged GhostPAN), identical random weights
    and BatchNorm statistics."""
    reference = RefGhostPAN(**kwargs)
    randomise_convs_(reference, torch.Generator().manual_seed(seed))
    randomize_norm_statistics(reference, seed)
    return (reference, ) + bridged_twins(dict(type='GhostPAN', **kwargs), reference.state_dict())


def make_inputs(in_channels, sizes, seed=0):
    rng = np.random.RandomState(seed)
    return [torch.from_numpy(rng.randn(BATCH, c, s, s).astype(np.float32))
            for c, s in zip(in_channels, sizes)]


# NanoDet-Plus-m's neck (use_depthwise, kernel 5, one extra level, bilinear, LeakyReLU) at a tiny
# width; then every other option of the signature.
CASES = {
    'nanodet-plus': dict(in_channels=[8, 12, 16], out_channels=16, use_depthwise=True,
                         kernel_size=5, num_extra_level=1),
    'options': dict(in_channels=[6, 10], out_channels=12, use_depthwise=False, kernel_size=3,
                    expand=2, num_blocks=2, use_res=True, num_extra_level=1,
                    upsample_cfg=dict(scale_factor=2, mode='nearest'), activation='ReLU'),
    'odd-ghost-width': dict(in_channels=[8, 8, 8], out_channels=10, use_depthwise=True,
                            kernel_size=3, expand=0.5),
}
SIZES = [16, 8, 4]


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('case', sorted(CASES))
def test_outputs_and_gradients_match_reference(case, training):
    kwargs = CASES[case]
    reference, model, model64 = make_pair(**kwargs)
    if training:
        stop_gradients((reference, model, model64), ZERO_GRAD_BIASES)
    inputs = make_inputs(kwargs['in_channels'], SIZES)
    rows = compare_modules(model, reference, [inputs], training=training, candidate64=model64)
    assert_aligned(rows)
    levels = len(kwargs['in_channels']) + kwargs.get('num_extra_level', 0)
    assert [r.name.split(' ', 1)[1] for r in rows if r.kind == 'output'] == [
        str((BATCH, kwargs['out_channels'], SIZES[0] >> i, SIZES[0] >> i)) for i in range(levels)]
    if training:
        assert_buffers_close(model, reference, STATS_ATOL)


def test_names_are_nanodets():
    model = MODELS.build(dict(type='GhostPAN', **CASES['nanodet-plus']))
    keys = set(model.state_dict())
    for key in ('reduce_layers.0.conv.weight', 'reduce_layers.2.bn.running_var',
                'top_down_blocks.1.blocks.0.ghost1.primary_conv.0.weight',
                'top_down_blocks.0.blocks.0.ghost2.cheap_operation.1.bias',
                'bottom_up_blocks.0.blocks.0.shortcut.2.weight',
                'downsamples.1.depthwise.weight', 'downsamples.0.pwnorm.running_mean',
                'extra_lvl_in_conv.0.dwnorm.weight', 'extra_lvl_out_conv.0.pointwise.weight'):
        assert key in keys, key
    assert model.num_extra_level == 1 and model.in_channels == [8, 12, 16]


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=[], out_channels=8), 'in_channels'),
    (dict(in_channels=[8], out_channels=0), 'out_channels'),
    (dict(in_channels=[8], out_channels=8, kernel_size=4), 'kernel_size'),
    (dict(in_channels=[8], out_channels=8, num_blocks=0), 'num_blocks'),
    (dict(in_channels=[8], out_channels=8, num_extra_level=-1), 'num_extra_level'),
    (dict(in_channels=[8], out_channels=8, num_extra_level=2), 'second'),
    (dict(in_channels=[8], out_channels=8, upsample_cfg=dict(scale_factor=2, mode='bicubic')),
     'bicubic'),
    (dict(in_channels=[8], out_channels=8, upsample_cfg=dict(mode='nearest')), 'scale_factor'),
    (dict(in_channels=[8], out_channels=8, activation='Mish'), 'Mish'),
])
def test_invalid_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GhostPAN(**kwargs)
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='GhostPAN', **kwargs))


def test_wrong_inputs_are_named():
    model = MODELS.build(dict(type='GhostPAN', in_channels=[4, 6], out_channels=8))
    with pytest.raises(ValueError, match='1 input levels, expected 2'):
        model([torch.zeros(1, 4, 8, 8)])
    with pytest.raises(ValueError, match=r'input level 1 must be \(N, 6, H, W\)'):
        model([torch.zeros(1, 4, 8, 8), torch.zeros(1, 5, 4, 4)])
    with pytest.raises(ValueError, match='cannot concatenate'):
        model([torch.zeros(1, 4, 8, 8), torch.zeros(1, 6, 3, 3)])


def test_layer_refusals():
    with pytest.raises(ValueError, match='order'):
        DepthwiseConvModule(4, 4, 3, order=('depthwise', 'act', 'pointwise'))
    with pytest.raises(ValueError, match='ratio'):
        GhostModule(4, 4, ratio=1)
    with pytest.raises(NotImplementedError, match='se_ratio'):
        from jt_mm_plugins.models.layers import GhostBottleneck
        GhostBottleneck(4, 4, 4, se_ratio=0.25)
    module = GhostModule(4, 5)  # ceil(5 / 2) = 3 primary + 3 cheap channels, cut to 5
    assert module(jt.randn(1, 4, 3, 3)).shape == [1, 5, 3, 3]


def test_depthwise_conv_module_without_norm_and_other_order():
    """No norm (conv biases, 'auto'), another order of the six steps: against torch functionals."""
    order = ('depthwise', 'act', 'pointwise', 'act', 'dwnorm', 'pwnorm')
    module = DepthwiseConvModule(4, 6, 3, stride=2, padding=1, norm_cfg=None,
                                 activation='LeakyReLU', order=order)
    assert module.with_bias and not hasattr(module, 'dwnorm')
    rng = np.random.RandomState(0)
    for conv in (module.depthwise, module.pointwise):  # init gives zero biases
        conv.bias.assign(jt.array(rng.rand(*conv.bias.shape).astype(np.float32) - 0.5))
    x = rng.randn(2, 4, 9, 9).astype(np.float32)
    got = module(jt.array(x)).numpy()
    t = {n: torch.from_numpy(v.numpy()) for n, v in module.named_parameters()}
    y = torch.nn.functional.conv2d(torch.from_numpy(x), t['depthwise.weight'], t['depthwise.bias'],
                                   stride=2, padding=1, groups=4)
    y = torch.nn.functional.leaky_relu(y, 0.1)
    y = torch.nn.functional.leaky_relu(
        torch.nn.functional.conv2d(y, t['pointwise.weight'], t['pointwise.bias']), 0.1)
    assert got.shape == (2, 6, 5, 5) and float(np.abs(got - y.numpy()).max()) <= 1e-5
