"""DETR's Jittor transformer parts against mmdet's (``DetrTransformerEncoder`` /
``DetrTransformerDecoder``, ``SinePositionalEncoding``), identical weights, tiny sizes.

The bridged Jittor modules (built from mmdet's ``MODELS``) load the mmdet modules' state dicts
strictly and run on the same inputs; the padding masks come from two images of different sizes in
one batch, as mmdet's ``DETR.pre_transformer`` makes them. ``compare_modules`` compares every output
(1e-4 max abs, float32) and the gradients of a random linear loss w.r.t. every input and parameter
(1e-3 relative); FFN ReLUs decide float32 gradients only where a float64 run puts their inputs far
from zero, and a float64 Jittor twin is compared with float64 mmdet on everything (1e-6 / 1e-5),
after asserting no float64 ReLU input lies within 1e-9 of its scale from zero.
"""
import pytest
import torch
import torch.nn.functional as F

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment.compare import compare_modules
from jt_mm_plugins.runtime import jt

from alignment_checks import assert_aligned, bridged_twins

from mmdet.models.layers import SinePositionalEncoding  # noqa: E402
from mmdet.models.layers.transformer import (DetrTransformerDecoder,  # noqa: E402
                                             DetrTransformerEncoder)
from mmdet.registry import MODELS  # noqa: E402

EMBED, HEADS, QUERIES = 16, 2, 5
ATTN = dict(embed_dims=EMBED, num_heads=HEADS, dropout=0.0)
FFN_CFG = dict(embed_dims=EMBED, feedforward_channels=24, num_fcs=2, ffn_drop=0.,
               act_cfg=dict(type='ReLU', inplace=True))
ENCODER = dict(num_layers=2, layer_cfg=dict(self_attn_cfg=ATTN, ffn_cfg=FFN_CFG))
DECODER = dict(num_layers=2, return_intermediate=True,
               layer_cfg=dict(self_attn_cfg=ATTN, cross_attn_cfg=ATTN, ffn_cfg=FFN_CFG))


def feature_mask(img_shapes, batch_shape=(64, 64), feat_shape=(4, 5)):
    """mmdet's DETR.pre_transformer masks: 1 on padding, nearest-resized to the feature map."""
    masks = torch.ones((len(img_shapes), ) + batch_shape)
    for i, (h, w) in enumerate(img_shapes):
        masks[i, :h, :w] = 0
    return F.interpolate(masks.unsqueeze(1), size=feat_shape).to(torch.bool).squeeze(1)


MASK = feature_mask([(64, 64), (40, 26)])  # the second image pads 2 of 4 rows, 3 of 5 columns


def randomised(reference: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            scale = 0.1 if name.endswith('bias') else 0.5
            p.copy_(torch.randn(p.shape, generator=gen) * scale
                    + (1.0 if 'norms' in name and name.endswith('weight') else 0.0))
    return reference


def twins(reference, jittor_type, cfg):
    randomised(reference)
    return bridged_twins(dict(type=jittor_type, **cfg), reference.state_dict())


def test_encoder_matches_mmdet_with_padding_masks():
    reference = DetrTransformerEncoder(**ENCODER)
    model, model64 = twins(reference, 'JittorDetrTransformerEncoder', ENCODER)
    gen = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 20, EMBED, generator=gen)
    pos = torch.randn(2, 20, EMBED, generator=gen)
    rows = compare_modules(model, reference, [feat, pos, MASK.view(2, -1)], training=False,
                           candidate64=model64)
    assert_aligned(rows)


def test_decoder_matches_mmdet_every_layer_with_padding_masks():
    reference = DetrTransformerDecoder(**DECODER)
    model, model64 = twins(reference, 'JittorDetrTransformerDecoder', DECODER)
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(2, QUERIES, EMBED, generator=gen)
    memory = torch.randn(2, 20, EMBED, generator=gen)
    query_pos = torch.randn(2, QUERIES, EMBED, generator=gen)
    memory_pos = torch.randn(2, 20, EMBED, generator=gen)
    inputs = [query, memory, memory, query_pos, memory_pos, MASK.view(2, -1)]
    rows = compare_modules(model, reference, inputs, training=False, candidate64=model64)
    assert_aligned(rows)
    # Every layer's output, through the shared post_norm.
    assert [r.name for r in rows if r.kind == 'output'] == [f'out[0] (2, 2, {QUERIES}, {EMBED})']


def test_state_dict_names_are_mmdets():
    for reference, jittor_type, cfg in ((DetrTransformerEncoder(**ENCODER),
                                         'JittorDetrTransformerEncoder', ENCODER),
                                        (DetrTransformerDecoder(**DECODER),
                                         'JittorDetrTransformerDecoder', DECODER)):
        model = MODELS.build(dict(type=jittor_type, **cfg))
        assert {k: v.shape for k, v in model.state_dict().items()} == \
            {k: v.shape for k, v in reference.state_dict().items()}
        assert 'layers.0.self_attn.attn.in_proj_weight' in model.state_dict()
        assert model.embed_dims == reference.embed_dims == EMBED


@pytest.mark.parametrize('normalize', [True, False])
def test_sine_positional_encoding_matches_mmdet(normalize):
    reference = SinePositionalEncoding(num_feats=EMBED // 2, normalize=normalize)
    model = MODELS.build(dict(type='JittorSinePositionalEncoding', num_feats=EMBED // 2,
                              normalize=normalize))
    expected, got = reference(MASK), model(MASK)
    assert got.shape == expected.shape == (2, EMBED, 4, 5)
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))
    feat = torch.zeros(2, EMBED, 4, 5)
    assert (model(None, input=feat) - reference(None, input=feat)).abs().max() <= 1e-4


def test_dropout_is_active_in_training_only():
    cfg = dict(num_layers=1, layer_cfg=dict(self_attn_cfg=dict(ATTN, dropout=0.5),
                                            ffn_cfg=dict(FFN_CFG, ffn_drop=0.5)))
    model = MODELS.build(dict(type='JittorDetrTransformerEncoder', **cfg))
    feat, pos = torch.randn(1, 6, EMBED), torch.randn(1, 6, EMBED)
    model.eval()
    assert torch.equal(model(feat, pos, None), model(feat, pos, None))
    model.train()
    jt.set_global_seed(0)
    assert not torch.equal(model(feat, pos, None), model(feat, pos, None))


def test_bad_inputs_are_named():
    model = MODELS.build(dict(type='JittorDetrTransformerEncoder', **ENCODER))
    feat = torch.randn(2, 20, EMBED)
    with pytest.raises(ValueError, match=r'key_padding_mask shape \(2, 19\)'):
        model(feat, feat, torch.zeros(2, 19, dtype=torch.bool))
    with pytest.raises(ValueError, match='divisible by num_heads'):
        MODELS.build(dict(type='JittorDetrTransformerEncoder', num_layers=1,
                          layer_cfg=dict(self_attn_cfg=dict(embed_dims=15, num_heads=2))))
