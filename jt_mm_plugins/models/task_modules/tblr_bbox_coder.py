"""Jittor twin of mmdet's ``TBLRBBoxCoder`` (mmdet/models/task_modules/coders)."""
from typing import Optional, Sequence

from jt_mm_plugins.registry import JITTOR_TASK_UTILS
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@JITTOR_TASK_UTILS.register_module()
class TBLRBBoxCoder:
    """Boxes as the distances (top, bottom, left, right) from the prior's centre to the box's
    sides, divided by the prior's height (top, bottom) and width (left, right) when
    ``normalize_by_wh``, then by ``normalizer`` (mmdet's ``TBLRBBoxCoder``; OLN uses
    ``normalizer=1``).

    Args:
        normalizer (float | Sequence[float]): Divisor of the encoded distances. Defaults to 4.0.
        clip_border (bool): Whether to clip decoded boxes to ``max_shape``. Defaults to True.
        use_box_type (bool): Only False is supported. Defaults to False.
    """

    encode_size = 4

    def __init__(self, normalizer=4.0, clip_border: bool = True,
                 use_box_type: bool = False) -> None:
        if use_box_type:
            raise InputError('TBLRBBoxCoder: use_box_type=True is not supported in Jittor')
        self.normalizer = normalizer
        self.clip_border = clip_border
        self.use_box_type = use_box_type

    def _normalizer(self) -> jt.Var:
        values = self.normalizer if isinstance(self.normalizer, Sequence) else [self.normalizer] * 4
        return jt.array([float(v) for v in values]).reshape(1, 4)

    def encode(self, bboxes: jt.Var, gt_bboxes: jt.Var) -> jt.Var:
        """(n, 4) priors and (n, 4) gt boxes -> (n, 4) normalised (top, bottom, left, right)."""
        if bboxes.shape[0] != gt_bboxes.shape[0]:
            raise InputError(f'TBLRBBoxCoder.encode: {bboxes.shape[0]} priors but '
                             f'{gt_bboxes.shape[0]} gt boxes')
        cx = (bboxes[:, 0] + bboxes[:, 2]) / 2
        cy = (bboxes[:, 1] + bboxes[:, 3]) / 2
        w = bboxes[:, 2] - bboxes[:, 0]
        h = bboxes[:, 3] - bboxes[:, 1]
        loc = jt.stack([(cy - gt_bboxes[:, 1]) / h, (gt_bboxes[:, 3] - cy) / h,
                        (cx - gt_bboxes[:, 0]) / w, (gt_bboxes[:, 2] - cx) / w], dim=1)
        return loc / self._normalizer()

    def decode(self, bboxes: jt.Var, pred_bboxes: jt.Var,
               max_shape: Optional[Sequence[int]] = None) -> jt.Var:
        """(n, 4) priors and (n, 4) encoded distances -> (n, 4) boxes, clipped to ``max_shape``
        (h, w) with ``clip_border``."""
        loc = pred_bboxes * self._normalizer()
        cx = (bboxes[:, 0] + bboxes[:, 2]) / 2
        cy = (bboxes[:, 1] + bboxes[:, 3]) / 2
        w = bboxes[:, 2] - bboxes[:, 0]
        h = bboxes[:, 3] - bboxes[:, 1]
        x1, x2 = cx - w * loc[:, 2], cx + w * loc[:, 3]
        y1, y2 = cy - h * loc[:, 0], cy + h * loc[:, 1]
        if self.clip_border and max_shape is not None:
            x1, x2 = x1.clamp(0, max_shape[1]), x2.clamp(0, max_shape[1])
            y1, y2 = y1.clamp(0, max_shape[0]), y2.clamp(0, max_shape[0])
        return jt.stack([x1, y1, x2, y2], dim=1)
