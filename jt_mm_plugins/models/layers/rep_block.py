"""``RepBlock`` (YOLOv6, ``yolov6/layers/common.py``) in Jittor: a stage of ``n`` RepVGG blocks,
``conv1`` (``in_channels -> out_channels``) then ``block`` (``n - 1`` blocks, ``None`` when
``n == 1``). YOLOv6's ``BottleRep`` variant (M/L models) is not built here."""
from typing import Optional

from jt_mm_plugins.models.layers.repvgg_block import RepVGGBlock
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


class RepBlock(jt.nn.Module):
    """``n`` stacked :class:`RepVGGBlock` (names ``conv1``, ``block.<i>``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        n (int): Number of blocks, >= 1. Defaults to 1.
        deploy (bool): Build fused blocks. Defaults to False.
        norm_cfg (dict, optional): The blocks' norm (see :class:`RepVGGBlock`).
    """

    def __init__(self, in_channels: int, out_channels: int, n: int = 1, deploy: bool = False,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise InputError(f'RepBlock: n must be an int >= 1, got {n!r}')
        self.conv1 = RepVGGBlock(in_channels, out_channels, deploy=deploy, norm_cfg=norm_cfg)
        self.block = jt.nn.Sequential(*[
            RepVGGBlock(out_channels, out_channels, deploy=deploy, norm_cfg=norm_cfg)
            for _ in range(n - 1)]) if n > 1 else None

    def execute(self, x: jt.Var) -> jt.Var:
        x = self.conv1(x)
        return x if self.block is None else self.block(x)
