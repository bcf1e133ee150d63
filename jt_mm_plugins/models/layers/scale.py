"""Jittor twin of mmcv's ``Scale`` (mmcv/cnn/bricks/scale.py): a learnable scalar factor."""
import torch  # noqa: F401  (the mirror registry is torch-side)
from mmcv.cnn import Scale as MMCVScale

from jt_mm_plugins.bridge.mirrors import register_torch_mirror
from jt_mm_plugins.runtime import jt


@register_torch_mirror(MMCVScale)
class Scale(jt.nn.Module):
    """Multiply the input by a learnable scalar, as mmcv's ``Scale``.

    Jittor has no 0-d Vars: ``scale`` has shape (1,) where mmcv's parameter is 0-d. Bridged, it is
    0-d on the torch side (``_torch_0d_vars``), so mmdet checkpoints load strictly; a bare Jittor
    module loads an entry of shape () with :func:`state_dict_to_jittor`, which matches sizes.

    Args:
        scale (float): Initial value. Defaults to 1.0.
    """

    _torch_0d_vars = ('scale', )

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = jt.array([float(scale)]).float32()

    def execute(self, x: jt.Var) -> jt.Var:
        return x * self.scale
