"""UniDetector's 2nd-stage RoI head in pure-Jittor mode against its PyTorch twin
(``jt_mm_plugins/alignment/unidetector_reference.py``: mmdet's ``MetaStandardRoIHead`` with mmdet's
``SingleRoIExtractor``, open_clip's ``layer4`` and the partitioned CLIP head in torch), the case of
``pairs.unidetector_roi_head_case('small')`` (two images of datasets 1 and 0), one state dict
loaded strictly into both: the twin's losses and gradients (input features, every parameter) equal
the Jittor head's (losses 1e-5 relative, gradients 1e-3 relative), so that tools/benchmark.py's
``unidetector_roi_head`` entry times the same computation on both sides. Every ReLU, assignment and
sampling decision of the twin is asserted decided in float32 by a float64 run (margins.py); the
federated draw takes every class (``fed_loss_num_cat`` above the label spaces).
"""
import pytest
import torch

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.alignment import margins
from jt_mm_plugins.alignment.pairs import get_pair

pytest.importorskip('mmcv.ops')
pytest.importorskip('open_clip')


def losses_and_grads(probe, feats):
    probe.model.zero_grad()
    x = feats.clone().requires_grad_(True)
    losses = {k: v for k, v in probe(x).items() if 'loss' in k}
    sum(losses.values()).backward()
    grads = {n: p.grad.detach().clone() for n, p in probe.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, x.grad.detach().clone(), grads


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_pytorch_twin_matches_the_jittor_roi_head():
    pure, twin, (feats, ) = get_pair('unidetector_roi_head').build('small', 0)
    assert type(twin.model.bbox_head).__name__ == 'TorchBBoxHeadCLIPPartitioned'
    assert type(twin.model.bbox_roi_extractor).__name__ == 'SingleRoIExtractor'

    def run(module, dtype):
        module(feats.clone().to(dtype).requires_grad_(True))['loss_cls'].backward()
    margins.assert_float32_decides(twin.model, lambda m, dtype: run(type(twin)(m, twin._loss_fn),
                                                                    dtype))

    want_losses, want_x, want_grads = losses_and_grads(twin, feats)
    got_losses, got_x, got_grads = losses_and_grads(pure, feats)
    assert sorted(got_losses) == sorted(want_losses) == ['loss_bbox', 'loss_cls']
    assert float(want_losses['loss_bbox']) > 0
    for k in want_losses:
        assert rel(got_losses[k], want_losses[k]) < 1e-5, k
    assert rel(got_x, want_x) < 1e-3
    assert sorted(got_grads) == sorted(want_grads)
    assert any(n.startswith('shared_head.layer4.') for n in want_grads)
    assert 'bbox_head.attnpool.k_proj.bias' not in want_grads  # frozen: zero grad by construction
    for n in want_grads:
        assert rel(got_grads[n], want_grads[n]) < 1e-3, n
