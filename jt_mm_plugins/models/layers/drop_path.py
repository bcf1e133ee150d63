"""``DropPath`` (stochastic depth, per sample), as timm's / Gold-YOLO's ``gold_yolo/layers.py``:
in training each sample's branch is kept with probability ``1 - drop_prob`` and scaled by
``1 / (1 - drop_prob)``, else zeroed; identity in eval mode or with ``drop_prob`` 0."""
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


class DropPath(jt.nn.Module):
    """Drop a residual branch per sample.

    Args:
        drop_prob (float): Probability of dropping, in [0, 1). Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= float(drop_prob) < 1.0:
            raise InputError(f'DropPath: drop_prob must be in [0, 1), got {drop_prob!r}')
        self.drop_prob = float(drop_prob)

    def execute(self, x: jt.Var) -> jt.Var:
        if self.drop_prob == 0.0 or not self.is_training():
            return x
        keep = 1.0 - self.drop_prob
        mask = jt.floor(keep + jt.rand((x.shape[0], ) + (1, ) * (x.ndim - 1), dtype=x.dtype))
        return x / keep * mask
