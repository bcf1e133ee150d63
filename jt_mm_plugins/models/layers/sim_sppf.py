"""``SimSPPF`` (YOLOv6, ``yolov6/layers/common.py``) in Jittor: simplified SPPF with ReLU convs.

``cv1`` (1x1, ``in -> in // 2``), three chained ``kernel_size`` max-pools (stride 1, ``m``), the
input and the three pooled maps concatenated, ``cv2`` (1x1, ``4 * (in // 2) -> out``)."""
from typing import Optional

from jt_mm_plugins.models.layers.sim_conv import SimConv
from jt_mm_plugins.runtime import jt


class SameMaxPool2d(jt.nn.Module):
    """Stride-1 max-pool keeping the size (padding ``kernel_size // 2`` with -inf), as
    ``torch.nn.MaxPool2d(kernel_size, 1, kernel_size // 2)``, on maps of any size.

    Jittor's ``nn.Pool`` refuses maps not larger than the kernel (YOLOv6's 5x5 pools meet 2x2 C5
    maps on small images); such maps are first extended with -inf rows / columns (never a maximum:
    each window holds its own centre), pooled, and cropped back.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.pool = jt.nn.Pool(kernel_size, stride=1, padding=kernel_size // 2, op='maximum')

    def execute(self, x: jt.Var) -> jt.Var:
        h, w = x.shape[2:]
        k = self.kernel_size
        if h > k and w > k:
            return self.pool(x)
        extra_h, extra_w = max(k + 1 - h, 0), max(k + 1 - w, 0)
        padded = jt.nn.pad(x, (0, extra_w, 0, extra_h), mode='constant', value=float('-inf'))
        return self.pool(padded)[:, :, :h, :w]


def same_max_pool(kernel_size: int) -> SameMaxPool2d:
    """:class:`SameMaxPool2d` of ``kernel_size``."""
    return SameMaxPool2d(kernel_size)


def pyramid_pool(x: jt.Var, pool: jt.nn.Module) -> jt.Var:
    """``concat([x, m(x), m(m(x)), m(m(m(x)))])`` along the channels (SPPF's pyramid)."""
    y1 = pool(x)
    y2 = pool(y1)
    return jt.concat([x, y1, y2, pool(y2)], dim=1)


class SimSPPF(jt.nn.Module):
    """Simplified SPPF (names ``cv1``, ``cv2``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Max-pool kernel. Defaults to 5.
        norm_cfg (dict, optional): Norm of the convs (``None``: YOLOv6's BatchNorm).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = SimConv(in_channels, hidden, 1, 1, norm_cfg=norm_cfg)
        self.cv2 = SimConv(hidden * 4, out_channels, 1, 1, norm_cfg=norm_cfg)
        self.m = same_max_pool(kernel_size)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.cv2(pyramid_pool(self.cv1(x), self.m))
