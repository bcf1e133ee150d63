"""DETR as a whole: pure Jittor (``JittorDETR``) and mixed (``ConfigurableDETR``: mmdet's DETR with
the Jittor positional encoding, encoder, decoder and head, or with the Jittor transformer only;
mmdet's plain ``DETR`` with the Jittor head) against mmdet's ``DETR``, identical
weights, a tiny configuration (ResNet-18 of width 8 to stride 16, ChannelMapper to 16 channels,
1 encoder and 2 decoder layers, 2 heads, 5 queries) and two images of different sizes (padding
masks). mmdet's state dict loads strictly into both.

Every Hungarian matching is first shown to be decided by float32 (float64 second-best margin,
tests/detr_checks.py); then the losses of every decoder layer agree within 1e-4 relative and every
parameter gradient that float32 decides (ReLU margins, tests/detector_checks.py) within 1e-3; the
predictions (after asserting in float64 that the class argmax and score order are decided): labels
exactly, scores 1e-4, boxes 1e-3 px.
"""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment import margins

from detector_checks import assert_same_losses_and_gradients
from detr_checks import assert_matchings_decided, assert_predictions_decided

EMBED, QUERIES, MAX_PER_IMG = 16, 5, 4
ATTN = dict(embed_dims=EMBED, num_heads=2, dropout=0.0)
FFN_CFG = dict(embed_dims=EMBED, feedforward_channels=24, num_fcs=2, ffn_drop=0.,
               act_cfg=dict(type='ReLU', inplace=True))
COSTS = [dict(type='ClassificationCost', weight=1.),
         dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
         dict(type='IoUCost', iou_mode='giou', weight=2.0)]
MODEL = dict(
    type='DETR',
    num_queries=QUERIES,
    backbone=dict(type='ResNet', depth=18, base_channels=8, num_stages=3, out_indices=(2, ),
                  strides=(1, 2, 2), dilations=(1, 1, 1),
                  norm_cfg=dict(type='BN'), norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(type='ChannelMapper', in_channels=[32], kernel_size=1, out_channels=EMBED,
              act_cfg=None, norm_cfg=None, num_outs=1),
    encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=ATTN, ffn_cfg=FFN_CFG)),
    decoder=dict(num_layers=2, return_intermediate=True,
                 layer_cfg=dict(self_attn_cfg=ATTN, cross_attn_cfg=ATTN, ffn_cfg=FFN_CFG)),
    positional_encoding=dict(num_feats=EMBED // 2, normalize=True),
    bbox_head=dict(type='DETRHead', num_classes=3, embed_dims=EMBED,
                   loss_cls=dict(type='CrossEntropyLoss', bg_cls_weight=0.1, use_sigmoid=False,
                                 loss_weight=1.0, class_weight=1.0),
                   loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                   loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=COSTS)),
    test_cfg=dict(max_per_img=MAX_PER_IMG))
PURE = dict(type='JittorDETR', backbone=dict(type='JittorResNet'),
            neck=dict(type='JittorChannelMapper'), bbox_head=dict(type='JittorDETRHead'))
MIXED = dict(type='ConfigurableDETR', encoder=dict(type='JittorDetrTransformerEncoder'),
             decoder=dict(type='JittorDetrTransformerDecoder'),
             positional_encoding=dict(type='JittorSinePositionalEncoding'),
             bbox_head=dict(type='JittorDETRHead'))
# mmdet's plain DETR holding the Jittor head; mmdet's DETR with the Jittor transformer, mmdet's head
HEAD_ONLY = dict(bbox_head=dict(type='JittorDETRHead'))
TRANSFORMER_ONLY = dict(MIXED, bbox_head=dict(type='DETRHead'))


def merged(base, override):
    cfg = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def twins(override):
    torch.manual_seed(0)
    reference = MODELS.build(copy.deepcopy(MODEL))
    reference.init_weights()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # spread the head and queries so that matchings and scores are decided
        reference.query_embedding.weight.copy_(torch.randn(QUERIES, EMBED, generator=gen))
        for name, p in reference.bbox_head.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model = MODELS.build(merged(MODEL, override))
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # DETR's first decoder self-attention sees zero queries: its values are all the bias, so the
    # output does not depend on in_proj_weight, whose gradient is 0 by construction (computed:
    # rounding noise on both sides). Not trained, in both models.
    for detector in (reference, model):
        detector.decoder.layers[0].self_attn.attn.in_proj_weight.requires_grad_(False)
    return reference, model


def batch():
    """Two images padded to 64x64: 64x64 with two boxes, 40x26 with one."""
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    samples = []
    for shape, boxes, labels in (((64, 64), [[4., 6, 30, 40], [20, 10, 60, 50]], [0, 2]),
                                 ((40, 26), [[2., 3, 20, 30]], [1])):
        sample = DetDataSample(metainfo=dict(img_shape=shape, batch_input_shape=(64, 64),
                                             ori_shape=shape, scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes),
                                           labels=torch.tensor(labels))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def samples_as(data, dtype):
    samples = copy.deepcopy(data['data_samples'])
    for sample in samples:  # mmdet's BBoxL1Cost (cdist) needs the predictions' dtype
        sample.gt_instances.bboxes = sample.gt_instances.bboxes.to(dtype)
    return samples


def train_step(data):
    def run(model, dtype):
        model.train()
        losses = model.loss(data['inputs'].to(dtype), samples_as(data, dtype))
        model.parse_losses(losses)[0].backward()
    return run


def head_outputs(detector, data, dtype):
    detector = copy.deepcopy(detector).to(dtype).train()
    with torch.no_grad():
        feats = detector.extract_feat(data['inputs'].to(dtype))
        hidden = detector.forward_transformer(feats, samples_as(data, dtype))
        return detector.bbox_head(**hidden)


@pytest.mark.parametrize('override', [PURE, MIXED, HEAD_ONLY, TRANSFORMER_ONLY],
                         ids=['pure', 'mixed', 'head_only', 'transformer_only'])
def test_losses_gradients_and_predictions_match_mmdet(override):
    reference, model = twins(override)
    data = batch()
    assert_matchings_decided(reference.bbox_head.assigner, head_outputs(reference, data,
                                                                        torch.float32),
                             head_outputs(reference, data, torch.float64), data['data_samples'])
    report = margins.all_decisions_report(reference, train_step(data))
    assert_same_losses_and_gradients(reference, model, data, loss_rtol=1e-4, grad_rtol=1e-3,
                                     report=report)
    for detector in (reference, model):
        detector.eval()
    with torch.no_grad():
        reference64 = copy.deepcopy(reference).double()
        hidden = reference64.forward_transformer(reference64.extract_feat(data['inputs'].double()),
                                                 copy.deepcopy(data['data_samples']))
        assert_predictions_decided(reference64.bbox_head(hidden['hidden_states'][-1:])[0][-1],
                                   MAX_PER_IMG)
        expected = reference.predict(data['inputs'], copy.deepcopy(data['data_samples']))
        got = model.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    for e, g in zip(expected, got):
        e, g = e.pred_instances, g.pred_instances
        assert len(g) == len(e) == MAX_PER_IMG
        assert torch.equal(g.labels, e.labels)
        torch.testing.assert_close(g.scores, e.scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(g.bboxes, e.bboxes, atol=1e-3, rtol=0)


def test_tensor_mode_and_errors():
    reference, model = twins(PURE)
    data = batch()
    reference.eval(), model.eval()
    with torch.no_grad():
        expected = reference(data['inputs'], copy.deepcopy(data['data_samples']), mode='tensor')
        got = model(data['inputs'], copy.deepcopy(data['data_samples']), mode='tensor')
    for e, g in zip(expected, got):
        assert g.shape == e.shape == (2, 2, QUERIES) + e.shape[3:]
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match='needs batch_data_samples'):
        model(data['inputs'], None, mode='tensor')
    with pytest.raises(ValueError, match='2 times of num_feats'):
        MODELS.build(merged(merged(MODEL, PURE), dict(positional_encoding=dict(num_feats=4))))
    bad = copy.deepcopy(reference.state_dict())
    bad['query_embedding.weight'] = bad['query_embedding.weight'][:3]
    with pytest.raises(RuntimeError, match='query_embedding.weight'):
        model.load_state_dict(bad, strict=True)
