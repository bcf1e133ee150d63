"""``SimCSPSPPF`` (YOLOv6 3.0, ``yolov6/layers/common.py``) in Jittor: a CSP split around SPPF,
every conv a :class:`SimConv` (ReLU).

With ``c = int(out_channels * e)``: ``x1 = cv4(cv3(cv1(x)))`` (1x1, 3x3, 1x1) goes through the
max-pool pyramid, ``cv5`` (1x1, ``4c -> c``) and ``cv6`` (3x3); ``cv2`` (1x1) is the shortcut
branch; ``cv7`` (1x1, ``2c -> out``) merges ``[cv2(x), cv6(...)]``."""
from typing import Optional

from jt_mm_plugins.models.layers.sim_conv import SimConv
from jt_mm_plugins.models.layers.sim_sppf import pyramid_pool, same_max_pool
from jt_mm_plugins.runtime import jt


class SimCSPSPPF(jt.nn.Module):
    """CSP SimSPPF (names ``cv1`` ... ``cv7``, ``m``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Max-pool kernel. Defaults to 5.
        e (float): Hidden channels ``int(out_channels * e)``. Defaults to 0.5.
        norm_cfg (dict, optional): Norm of the convs (``None``: YOLOv6's BatchNorm).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, e: float = 0.5,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        c = int(out_channels * e)
        self.cv1 = SimConv(in_channels, c, 1, 1, norm_cfg=norm_cfg)
        self.cv2 = SimConv(in_channels, c, 1, 1, norm_cfg=norm_cfg)
        self.cv3 = SimConv(c, c, 3, 1, norm_cfg=norm_cfg)
        self.cv4 = SimConv(c, c, 1, 1, norm_cfg=norm_cfg)
        self.m = same_max_pool(kernel_size)
        self.cv5 = SimConv(4 * c, c, 1, 1, norm_cfg=norm_cfg)
        self.cv6 = SimConv(c, c, 3, 1, norm_cfg=norm_cfg)
        self.cv7 = SimConv(2 * c, out_channels, 1, 1, norm_cfg=norm_cfg)

    def execute(self, x: jt.Var) -> jt.Var:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y3 = self.cv6(self.cv5(pyramid_pool(x1, self.m)))
        return self.cv7(jt.concat([self.cv2(x), y3], dim=1))
