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

from .compare import randomise_convs_, randomize_norm_statistics

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
                        reg_max: int = 16, iou_type: str = 'giou', warmup_epoch: int = 0):
    """yolov6detect's ``ComputeLoss`` built on the CPU (its ``__init__`` moves its modules to
    CUDA, which is made a no-op while it runs): DFL when ``reg_max`` > 0 (``use_dfl=False`` with
    ``reg_max=0``, YOLOv6-N's setting, otherwise); ATSS for epochs below ``warmup_epoch``, TAL
    from then on."""
    losses = yolov6_module('models.losses.loss')
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        return losses.ComputeLoss(fpn_strides=list(fpn_strides), num_classes=num_classes,
                                  ori_img_size=ori_img_size, warmup_epoch=warmup_epoch,
                                  use_dfl=reg_max > 0, reg_max=reg_max, iou_type=iou_type)
    finally:
        torch.nn.Module.cuda = cuda


# --- EffiDeHead against Detect ---------------------------------------------------------------
def reference_detect(channels, num_classes: int, feats, seed: int = 0, use_dfl: bool = True,
                     reg_max: int = 16) -> torch.nn.Module:
    """yolov6detect's ``Detect`` with levels of ``channels``, YOLOv6's BN settings and bias
    initialisation, then random calibrated weights (on the levels ``feats``) with the prediction
    convs x0.3 (trained-looking predictions, not the zero-weight init) and the fixed projection
    kept (``reg_max`` 0 without DFL)."""
    eh = yolov6_module('models.effidehead')
    reg_max = reg_max if use_dfl else 0
    layout = [0] * 6 + [channels[0], 0, channels[1], 0, channels[2]]
    detect = eh.Detect(num_classes, 3, use_dfl=use_dfl, reg_max=reg_max,
                       head_layers=eh.build_effidehead_layer(layout, 1, num_classes, reg_max, 3))
    detect.initialize_biases()
    yolov6_trained_bn_(detect)
    randomise_calibrated_(DetectOutputs(detect), feats, seed)
    with torch.no_grad():
        for conv in list(detect.cls_preds) + list(detect.reg_preds):
            conv.weight.mul_(0.3)
        detect.proj_conv.weight.copy_(detect.proj.view(1, -1, 1, 1))
    return detect


def _decoded_in_strides(out: torch.Tensor, sizes, strides=(8, 16, 32)) -> torch.Tensor:
    """Detect's eval output with ``cx, cy, w, h`` divided by each anchor's stride (a power of 2:
    exact), so that 1e-4 absolute means the same on every level (in pixels boxes of ~500 px have
    a float32 ulp of 6e-5)."""
    per_anchor = torch.cat([torch.full((h * w, 1), float(s), dtype=out.dtype)
                            for (h, w), s in zip(sizes, strides)])
    return torch.cat([out[..., :4] / per_anchor, out[..., 4:]], -1)


class DetectOutputs(torch.nn.Module):
    """``Detect`` taking the levels as one list: in training its (class probabilities, distance
    distributions) (N, L, .), in eval its decoded output with the boxes in stride units."""

    def __init__(self, detect: torch.nn.Module):
        super().__init__()
        self.m = detect  # the same prefix as EffiDeHeadOutputs: parameters pair by name

    def forward(self, levels):
        out = self.m(list(levels))
        if self.training:
            return out[1], out[2]
        return _decoded_in_strides(out, [tuple(x.shape[2:]) for x in levels])


class EffiDeHeadOutputs(torch.nn.Module):
    """A bridged ``EffiDeHead`` giving what :class:`DetectOutputs` gives: in training the
    flattened maps (sigmoid of the logits), in eval ``predict_raw`` (YOLOv6's decoded output)."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.m = head

    def forward(self, levels):
        if not self.training:
            out = self.m.run_jittor(self.m.jittor_module.predict_raw, list(levels))
            return _decoded_in_strides(out, [tuple(x.shape[2:]) for x in levels])
        cls, reg = self.m(list(levels))
        flat = lambda maps: torch.cat([m.flatten(2).permute(0, 2, 1) for m in maps], 1)  # noqa
        return flat(cls).sigmoid(), flat(reg)
