"""mmcv's dropout configs (``dict(type='Dropout', drop_prob=0.1)``, the ``dropout_layer`` of
transformer blocks) in Jittor."""
from typing import Optional

from jt_mm_plugins.registry import JITTOR_MODELS, config_args, instantiate, resolve_type
from jt_mm_plugins.runtime import jt


class Dropout(jt.nn.Module):
    """Zero each element with probability ``p`` in training mode and scale the rest by
    ``1 / (1 - p)``; the identity in evaluation mode (``torch.nn.Dropout``; mmcv's ``Dropout`` takes
    ``drop_prob``). Follows the module's ``train()`` / ``eval()`` state."""

    def __init__(self, p: float = 0.5, inplace: bool = False, drop_prob: Optional[float] = None):
        super().__init__()
        p = p if drop_prob is None else drop_prob
        if not 0 <= p <= 1:
            raise ValueError(f'Dropout: probability must be in [0, 1], got {p}')
        self.p = p

    def execute(self, x: jt.Var) -> jt.Var:
        if self.p == 0 or not self.is_training():
            return x
        if self.p == 1:
            return x * 0
        keep = (jt.random(x.shape) > self.p).cast(x.dtype)
        return x * keep / (1.0 - self.p)


JITTOR_MODELS.register_module('Dropout', module=Dropout)


def build_dropout(cfg: Optional[dict]) -> jt.nn.Module:
    """mmcv's ``build_dropout``: ``None`` gives the identity; ``dict(type='Dropout', drop_prob=p)``
    a :class:`Dropout` (any other registered Jittor dropout type works the same way)."""
    if cfg is None:
        return jt.nn.Identity()
    args = config_args(cfg, JITTOR_MODELS)
    _, cls = resolve_type(args.pop('type'), JITTOR_MODELS)
    return instantiate(cls, args, JITTOR_MODELS)
