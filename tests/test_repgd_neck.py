"""RepGDNeck (Jittor, bridged) against the plain-torch RepGDNeck written from the spec
(../shared/specs/seed-systems.md 3.3; jt_mm_plugins/alignment/repgd_reference.py), with
yolov6detect's RepVGGBlock / RepBlock / SimConv / Conv and mmcv's ConvModule as its building
blocks (Gold-YOLO imports exactly these).

The reference keeps the original's quirks: the attention's ``scale`` is never applied, and the
injection pools without h_sigmoid when the local map is shorter than the global one (that path is
checked on its own; the neck never takes it). Identical weights (the reference state dict loads
strictly): random convs and norm affines, running statistics calibrated on the test inputs.
Tiny widths (a channel list with Gold-YOLO's constraints), C2..C5 of 32/16/8/4 px (2x2 attention
tokens), batch 2. Tolerances (``compare_modules``): outputs 1e-4 abs, gradients 1e-3 relative in
float32 where float32 decides every ReLU / max-pool decision; float64 twin against float64
reference on everything (1e-6 / 1e-5) after the float64 margin check. ReLU6 (``hardtanh``, which
margins.py does not hook) is checked here: every ReLU6 input of the float64 reference lies at least
``RELU6_MARGIN`` of its scale from 0 and 6.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
import jt_mm_plugins  # noqa: F401  (registers RepGDNeck in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import compare_modules
from jt_mm_plugins.alignment.repgd_reference import (  # noqa: F401  (AFFINE_SCALE: test_gold_yolo)
    AFFINE_SCALE, BN, TINY, TRAIN_ZERO_GRAD_BIASES, ZERO_GRAD_BIASES, Inject, TorchRepGDNeck,
    assert_relu6_margins, make_inputs, pool, reference_neck, relu6_margins)
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.models.layers.drop_path import DropPath
from jt_mm_plugins.models.layers.gd_injection import InjectionMultiSum_Auto_pool
from jt_mm_plugins.models.necks.repgd_neck import GOLD_YOLO_N, GOLD_YOLO_S, RepGDNeck
from mmdet.registry import MODELS

from alignment_checks import assert_aligned, bridged_twins, stop_gradients

@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_matches_plain_torch_repgd_neck(training):
    # training: drop path off on both sides (random); eval: the Jittor one has DropPath(0.1)
    reference, cfg = reference_neck(drop_path_rate=0.0 if training else 0.1)
    model, model64 = bridged_twins(dict(type='RepGDNeck', **cfg), reference.state_dict())
    stop_gradients((reference, model, model64),
                   ZERO_GRAD_BIASES + (TRAIN_ZERO_GRAD_BIASES if training else ()))
    inputs = make_inputs()
    assert_relu6_margins(reference, inputs, training)
    rows = compare_modules(model, reference, [inputs], training=training, candidate64=model64)
    assert_aligned(rows)
    assert [r.name.split(' ', 1)[1] for r in rows if r.kind == 'output'] == [
        '(2, 8, 16, 16)', '(2, 16, 8, 8)', '(2, 32, 4, 4)']


def test_relu6_margin_hook_sees_both_forms():
    """``nn.ReLU6`` (``F.hardtanh`` in this torch) and ``F.relu6`` are both recorded."""
    seen = relu6_margins(None, lambda: (nn.ReLU6()(torch.ones(1)), F.relu6(torch.ones(1))))
    assert len(seen) == 2


def test_injection_pool_path_skips_h_sigmoid():
    """The quirk: a local map shorter than the global one takes the pooled path, no h_sigmoid."""
    reference = Inject(8)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if p.ndim == 1 else 0.0))
    reference.eval()
    module = InjectionMultiSum_Auto_pool(8, 8)
    for name, var in module.named_parameters():
        var.assign(torch_to_jittor(reference.state_dict()[name]).cast(var.dtype))
    module.eval()
    x_l = torch.randn(2, 8, 3, 3, generator=gen)
    x_g = torch.randn(2, 8, 6, 6, generator=gen)
    with torch.no_grad():
        expected = reference(x_l, x_g)
        with_sigmoid = reference.local_embedding(x_l) * pool(
            F.relu6(reference.global_act(x_g) + 3) / 6, x_l) + pool(
            reference.global_embedding(x_g), x_l)
    out = module(jt.array(x_l.numpy()), jt.array(x_g.numpy())).numpy()
    assert np.abs(out - expected.numpy()).max() <= 1e-5
    assert np.abs(out - with_sigmoid.numpy()).max() > 1e-2  # the quirk is real


def test_drop_path_drops_whole_samples():
    layer = DropPath(0.5)
    x = jt.ones((64, 3, 2, 2))
    layer.train()
    out = layer(x).numpy()
    per_sample = out.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))  # a sample is kept or dropped whole
    assert 8 < (per_sample[:, 0] == 0).sum() < 56
    layer.eval()
    assert np.all(layer(x).numpy() == 1)
    with pytest.raises(ValueError, match='drop_prob'):
        DropPath(1.0)


@pytest.mark.parametrize('settings,sizes', [(GOLD_YOLO_S, (64, 128, 256)),
                                            (GOLD_YOLO_N, (32, 64, 128))], ids=['S', 'N'])
def test_gold_yolo_settings_build_like_the_reference(settings, sizes):
    neck = RepGDNeck(**settings)
    assert neck.channels_list[5:] == [c // (2 if sizes[0] == 64 else 4) for c in
                                      [256, 128, 128, 256, 256, 512]]
    assert neck.num_repeats[5:] == [4, 4, 4, 4]
    e = dict(settings['extra_cfg'], norm_cfg=BN)
    reference = TorchRepGDNeck(neck.channels_list, neck.num_repeats, e)
    own = {n: tuple(v.shape) for n, v in neck.named_parameters()}
    assert own == {n: tuple(v.shape) if v.ndim else (1, ) for n, v in
                   reference.state_dict().items()}
    assert neck.Rep_p3.conv1.out_channels == sizes[0] and neck.Rep_n5.conv1.out_channels == \
        sizes[2]
    blocks = neck.high_IFM.transformer_blocks
    assert isinstance(blocks[1].drop_path, DropPath) and abs(blocks[1].drop_path.drop_prob -
                                                             0.1) < 1e-7
    assert not isinstance(blocks[0].drop_path, DropPath)


def test_bad_config_and_input_are_named():
    cfg = copy.deepcopy(TINY)
    cfg['extra_cfg'].pop('key_dim')
    with pytest.raises(ValueError, match='key_dim'):
        RepGDNeck(**cfg)
    with pytest.raises(ValueError, match='11 entries'):
        RepGDNeck([8] * 10, TINY['num_repeats'], TINY['extra_cfg'])
    model = MODELS.build(dict(type='RepGDNeck', **TINY))
    with pytest.raises(ValueError, match='C3 must be'):
        inputs = make_inputs(channels=(8, 9, 16, 32))
        model(inputs)
