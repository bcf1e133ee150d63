"""Test helpers of the Gold-YOLO tests around their PyTorch reference, ``yolov6detect==0.4.1``
(imported by :mod:`jt_mm_plugins.alignment.yolov6_reference` without its hub ``__init__``;
installed by scripts/setup.sh from requirements-test.txt). A missing package fails the test (it is
part of the set-up), naming the command that installs it.
"""
import types

import pytest
import torch

from jt_mm_plugins.alignment.compare import randomize_norm_statistics
from jt_mm_plugins.alignment.yolov6_reference import (unchain_sppf_pools_,  # noqa: F401
                                                      yolov6_module, yolov6_trained_bn_)

from alignment_checks import randomise_convs_


def yolov6(submodule: str) -> types.ModuleType:
    """``yolov6.<submodule>``; the test fails naming the install command when it is missing."""
    try:
        return yolov6_module(submodule)
    except ImportError as error:
        pytest.fail(str(error))


def randomise_calibrated_(model: torch.nn.Module, x, seed: int = 0,
                          affine_scale: float = 1.0) -> torch.nn.Module:
    """Random conv weights and norm affines (times ``affine_scale``); running statistics those of
    the batch ``x`` (one training forward with momentum 1), then randomly off (means +-0.1 std,
    variances x0.8-1.2), so eval-mode activations stay bounded through deep stacks as in a trained
    network."""
    gen = torch.Generator().manual_seed(seed)
    randomise_convs_(model, gen)
    randomize_norm_statistics(model, seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    with torch.no_grad():
        for m in norms:
            m.weight.mul_(affine_scale)
            m.bias.mul_(affine_scale)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            std = m.running_var.sqrt()
            m.running_mean.add_((torch.rand(m.num_features, generator=gen) - 0.5) * 0.2 * std)
            m.running_var.mul_(torch.rand(m.num_features, generator=gen) * 0.4 + 0.8)
            m.num_batches_tracked.fill_(3)
    return model
