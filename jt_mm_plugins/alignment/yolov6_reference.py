"""The PyTorch reference of the Gold-YOLO components: ``yolov6detect==0.4.1`` (the YOLOv6 repository
as a package, test-only: requirements-test.txt, installed ``--no-deps`` by scripts/setup.sh).

Its package ``__init__`` imports a hub downloader (``requests``, ``huggingface_hub``, OpenCV):
:func:`yolov6_module` imports only the requested submodule under an empty ``yolov6`` package object,
so nothing of that runs and nothing touches the network.
"""
import importlib
import importlib.util
import sys
import types

import torch
import torch.nn.functional as F

INSTALL = '.venv/bin/pip install --no-deps yolov6detect==0.4.1 (or scripts/setup.sh)'


def yolov6_module(submodule: str) -> types.ModuleType:
    """``yolov6.<submodule>`` imported without running ``yolov6/__init__.py``; ImportError naming
    the install command when yolov6detect is missing."""
    if 'yolov6' not in sys.modules:
        spec = importlib.util.find_spec('yolov6')
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f'the Gold-YOLO reference yolov6detect is not installed: {INSTALL}')
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
    common = yolov6_module('layers.common')

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


def yolov6_compute_loss(num_classes: int, ori_img_size: int, fpn_strides=(8, 16, 32),
                        reg_max: int = 16, iou_type: str = 'giou'):
    """yolov6detect's ``ComputeLoss`` (TAL from the first epoch, DFL) built on the CPU: its
    ``__init__`` moves its modules to CUDA, which is made a no-op while it runs."""
    losses = yolov6_module('models.losses.loss')
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        return losses.ComputeLoss(fpn_strides=list(fpn_strides), num_classes=num_classes,
                                  ori_img_size=ori_img_size, warmup_epoch=0, use_dfl=reg_max > 0,
                                  reg_max=reg_max, iou_type=iou_type)
    finally:
        torch.nn.Module.cuda = cuda
