"""The PyTorch reference of the Gold-YOLO tests: ``yolov6detect==0.4.1`` (the YOLOv6 repository as a
package; installed by scripts/setup.sh from requirements-test.txt, ``--no-deps``).

Its package ``__init__`` imports a hub downloader (``requests``, ``huggingface_hub``, OpenCV):
:func:`yolov6` imports only the requested submodules, under an empty ``yolov6`` package object, so
nothing of that runs and nothing touches the network. A missing package fails the test (it is part
of the set-up), naming the command that installs it.
"""
import importlib
import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from jt_mm_plugins.alignment.compare import randomize_norm_statistics

from alignment_checks import randomise_convs_

INSTALL = '.venv/bin/pip install --no-deps yolov6detect==0.4.1 (or scripts/setup.sh)'


def yolov6(submodule: str) -> types.ModuleType:
    """``yolov6.<submodule>`` imported without running ``yolov6/__init__.py``."""
    if 'yolov6' not in sys.modules:
        spec = importlib.util.find_spec('yolov6')
        if spec is None or not spec.submodule_search_locations:
            pytest.fail(f'the Gold-YOLO reference yolov6detect is not installed: {INSTALL}')
        package = types.ModuleType('yolov6')
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules['yolov6'] = package
    return importlib.import_module(f'yolov6.{submodule}')


def yolov6_trained_bn_(model: torch.nn.Module) -> torch.nn.Module:
    """What YOLOv6's model builder does to every ``nn.BatchNorm2d`` (``initialize_weights``):
    eps 1e-3, momentum 0.03."""
    for m in model.modules():
        if type(m) is torch.nn.BatchNorm2d:
            m.eps, m.momentum = 1e-3, 0.03
    return model


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


def _single_pool_pyramid(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``[x, m(x), m(m(x)), m(m(m(x)))]`` of a stride-1 ``kernel_size`` max-pool ``m``, computed as
    single pools of kernels k, 2k - 1, 3k - 2 (the same values exactly: a max of maxes)."""
    pools = [F.max_pool2d(x, k, 1, k // 2) for k in
             (j * (kernel_size - 1) + 1 for j in (1, 2, 3))]
    return torch.cat([x] + pools, 1)


def unchain_sppf_pools_(model: torch.nn.Module) -> torch.nn.Module:
    """Run yolov6's SimSPPF / SimCSPSPPF with their chained max-pools as the equal single pools.

    A max-pool of a max-pooled map has exact ties by construction (neighbouring maxima of one
    input element), which ``margins.py`` rightly reports as undecided although whichever tied
    element takes the gradient passes it to the same input element. The single pools give the
    same forward values and gradients and leave only the input's own decisions to check."""
    common = yolov6('layers.common')

    def sppf_forward(self, x):
        return self.cv2(_single_pool_pyramid(self.cv1(x), self.m.kernel_size))

    def csp_sppf_forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y3 = self.cv6(self.cv5(_single_pool_pyramid(x1, self.m.kernel_size)))
        return self.cv7(torch.cat((self.cv2(x), y3), dim=1))

    for m in model.modules():
        if type(m) is common.SimSPPF:
            m.forward = types.MethodType(sppf_forward, m)
        elif type(m) is common.SimCSPSPPF:
            m.forward = types.MethodType(csp_sppf_forward, m)
    return model
