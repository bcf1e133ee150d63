"""UniDetector's 2nd-stage RoI head in pure-Jittor mode (``JittorStandardRoIHead`` with the
``CLIPResLayer`` shared head and ``BBoxHeadCLIPPartitioned``) against mixed mode (mmdet's
``MetaStandardRoIHead`` with the same Jittor parts), identical weights, tiny sizes (CLIP width 2:
32 -> 64 channels, 16-d embeddings), two images of two datasets (``dataset_id`` 1 and 0) in one
batch.

What differs between the modes is the RoI head's plumbing (assignment, sampling, RoI order, the
shared head's place, how each image's metainfo reaches the loss); the RoI extractor is the
Jittor one in both (``JittorSingleRoIExtractor`` against mmcv's RoIAlign is tested in
tests/test_roi_head.py), so the features are the same computation and no float32 decision
(ReLU boundary) can differ between the modes. Decisions still taken on each side: the assigners'
IoU thresholds (every proposal's float64 IoU with the gts is asserted 0.05 away from 0.5), the
sampler (every candidate is kept: fewer than ``num``), the federated draw (``fed_loss_num_cat``
above every label space: all classes, no draw). The case is
``jt_mm_plugins.alignment.pairs.unidetector_roi_head_case('small')`` (also the
``unidetector_roi_head_modes`` pair of tools/align.py and tools/benchmark.py).
Tolerances: losses 1e-5 relative, gradients (input features and every parameter) 1e-3 relative.
"""
import pytest
import torch
from mmdet.registry import MODELS

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment.pairs import unidetector_roi_head_case
from jt_mm_plugins.bridge import BridgedRoIHead

pytest.importorskip('mmcv.ops')


def losses_and_grads(head, feats, samples, proposals):
    head.train()
    head.zero_grad()
    x = feats.clone().requires_grad_(True)
    losses = head.loss((x, ), [p.clone() for p in proposals], samples)
    sum(losses.values()).backward()
    grads = {n: p.grad.detach().clone() for n, p in head.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, x.grad.detach().clone(), grads


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_pure_and_mixed_2nd_stage_roi_heads_agree(tmp_path):
    roi_head_cfg, feats, samples, proposals = unidetector_roi_head_case('small', str(tmp_path))
    mixed = MODELS.build(roi_head_cfg('MetaStandardRoIHead'))
    pure = MODELS.build(roi_head_cfg('JittorStandardRoIHead'))
    assert isinstance(pure, BridgedRoIHead) and pure.with_shared_head
    assert type(pure.jittor_module.shared_head).__name__ == 'CLIPResLayer'
    pure.load_state_dict(mixed.state_dict(), strict=True)  # same names, both ways
    mixed.load_state_dict(pure.state_dict(), strict=True)

    seen = []
    for head in (mixed, pure):  # each image's dataset_id reaches the partitioned loss
        jt_head = head.bbox_head.jittor_module if head is mixed else head.jittor_module.bbox_head
        original = jt_head.dataset_ids
        jt_head.dataset_ids = lambda results, f=original: seen.append(f(results)) or seen[-1]
    want_losses, want_x_grad, want_grads = losses_and_grads(mixed, feats, samples, proposals)
    got_losses, got_x_grad, got_grads = losses_and_grads(pure, feats, samples, proposals)
    assert seen == [[1, 0], [1, 0]]

    assert sorted(got_losses) == sorted(want_losses) == ['loss_bbox', 'loss_cls']
    for key, want in want_losses.items():
        assert float(want) > 0, key
        assert rel(got_losses[key], want) < 1e-5, key
    assert rel(got_x_grad, want_x_grad) < 1e-3
    assert sorted(got_grads) == sorted(want_grads)
    assert any(n.startswith('shared_head.layer4.') for n in got_grads)
    for name, want in want_grads.items():
        assert rel(got_grads[name], want) < 1e-3, name

    # a batch without dataset_id is refused by name in pure mode as in mixed mode
    del samples[1].dataset_id
    with pytest.raises(KeyError, match="image 1 has no 'dataset_id'"):
        pure.loss((feats, ), [p.clone() for p in proposals], samples)
