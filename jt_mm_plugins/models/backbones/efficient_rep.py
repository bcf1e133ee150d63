"""``EfficientRep``, the YOLOv6 / Gold-YOLO backbone (``yolov6/models/efficientrep.py``), in
Jittor with YOLOv6's parameter names, so a YOLOv6 / Gold-YOLO backbone state dict loads strictly.

Structure (``channels_list`` c0..c4, ``num_repeats`` n0..n4; n0 unused, as in YOLOv6):
``stem`` (RepVGG 3 -> c0, stride 2); ``ERBlock_k`` for k = 2..5: RepVGG (stride 2) then a
:class:`RepBlock` of n_{k-1} blocks; ``ERBlock_5`` ends with :class:`SimCSPSPPF` (``cspsppf``)
or :class:`SimSPPF` (kernel 5). Returns (C3, C4, C5), or (C2, C3, C4, C5) with ``fuse_P2``
(Gold-YOLO). Gold-YOLO-S: ``channels_list`` [64, 128, 256, 512, 1024] x width 0.5 and
``num_repeats`` [1, 6, 12, 18, 6] x depth 0.33 give [32, 64, 128, 256, 512] and [1, 2, 4, 6, 2].

Differences from YOLOv6's class, all stated:

* ``width_multiple`` / ``depth_multiple`` (optional) apply YOLOv6's ``build_network`` scaling
  (:func:`yolov6_channels`, :func:`yolov6_repeats`) here; left ``None``, the lists are used as
  given, as YOLOv6's class does.
* Only the RepVGG block (``training_mode='repvgg'``, Gold-YOLO-N/S); ``block`` is not an argument.
* The BatchNorms default to what YOLOv6's model builder sets (eps 1e-3, momentum 0.03);
  ``norm_cfg`` overrides.
* ``deploy=True`` builds fused RepVGG blocks (a deploy checkpoint loads into it);
  :meth:`EfficientRep.switch_to_deploy` fuses a trained one in place.
"""
import math
from typing import Optional, Sequence, Tuple

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.rep_block import RepBlock
from jt_mm_plugins.models.layers.repvgg_block import RepVGGBlock, switch_to_deploy
from jt_mm_plugins.models.layers.sim_csp_sppf import SimCSPSPPF
from jt_mm_plugins.models.layers.sim_sppf import SimSPPF
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


def yolov6_channels(channels: Sequence[int], width_multiple: Optional[float]) -> list:
    """YOLOv6's ``make_divisible(c * width_multiple, 8)`` (rounded up to a multiple of 8) for each
    channel count; ``None`` keeps them."""
    if width_multiple is None:
        return list(channels)
    return [math.ceil(c * width_multiple / 8) * 8 for c in channels]


def yolov6_repeats(repeats: Sequence[int], depth_multiple: Optional[float]) -> list:
    """YOLOv6's ``max(round(n * depth_multiple), 1)`` for each n > 1 (n <= 1 kept); ``None``
    keeps them."""
    if depth_multiple is None:
        return list(repeats)
    return [max(round(n * depth_multiple), 1) if n > 1 else n for n in repeats]


@register_jittor_module()
class EfficientRep(jt.nn.Module):
    """EfficientRep backbone (YOLOv6 / Gold-YOLO).

    Args:
        in_channels (int): Image channels. Defaults to 3.
        channels_list (Sequence[int]): At least 5 channel counts (stem, ERBlock_2..5); more are
            ignored (YOLOv6 passes the neck's too).
        num_repeats (Sequence[int]): At least 5 repeat counts (index 0 unused).
        fuse_P2 (bool): Also return ERBlock_2's output. Defaults to False.
        cspsppf (bool): SimCSPSPPF instead of SimSPPF. Defaults to False.
        width_multiple (float, optional): Scale ``channels_list`` as YOLOv6's builder.
        depth_multiple (float, optional): Scale ``num_repeats`` as YOLOv6's builder.
        deploy (bool): Build fused RepVGG blocks. Defaults to False.
        norm_cfg (dict, optional): Norm of every block (``None``: YOLOv6's BatchNorm).
    """

    def __init__(self, in_channels: int = 3, channels_list: Optional[Sequence[int]] = None,
                 num_repeats: Optional[Sequence[int]] = None, fuse_P2: bool = False,
                 cspsppf: bool = False, width_multiple: Optional[float] = None,
                 depth_multiple: Optional[float] = None, deploy: bool = False,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if channels_list is None or num_repeats is None or len(channels_list) < 5 \
                or len(num_repeats) < 5:
            raise InputError(f'EfficientRep: channels_list and num_repeats need at least 5 '
                             f'entries each, got {channels_list!r} and {num_repeats!r}')
        channels = yolov6_channels(channels_list, width_multiple)
        repeats = yolov6_repeats(num_repeats, depth_multiple)
        self.in_channels = in_channels
        self.channels_list = channels
        self.num_repeats = repeats
        self.fuse_P2 = fuse_P2
        self.cspsppf = cspsppf
        self.deploy = deploy

        def block(c_in, c_out, stride=1):
            return RepVGGBlock(c_in, c_out, 3, stride, deploy=deploy, norm_cfg=norm_cfg)

        self.stem = block(in_channels, channels[0], stride=2)
        for k in range(2, 6):
            c_in, c_out = channels[k - 2], channels[k - 1]
            layers = [block(c_in, c_out, stride=2),
                      RepBlock(c_out, c_out, repeats[k - 1], deploy=deploy, norm_cfg=norm_cfg)]
            if k == 5:
                merge = SimCSPSPPF if cspsppf else SimSPPF
                layers.append(merge(c_out, c_out, kernel_size=5, norm_cfg=norm_cfg))
            setattr(self, f'ERBlock_{k}', jt.nn.Sequential(*layers))

    def switch_to_deploy(self) -> 'EfficientRep':
        """Fuse every RepVGG block into one 3x3 conv (in place; eval-mode function kept)."""
        switch_to_deploy(self)
        self.deploy = True
        return self

    def execute(self, x: jt.Var) -> Tuple[jt.Var, ...]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f'EfficientRep expects (N, {self.in_channels}, H, W) images, got '
                             f'{tuple(x.shape)}')
        outputs = []
        x = self.ERBlock_2(self.stem(x))
        if self.fuse_P2:
            outputs.append(x)
        for k in (3, 4, 5):
            x = getattr(self, f'ERBlock_{k}')(x)
            outputs.append(x)
        return tuple(outputs)
