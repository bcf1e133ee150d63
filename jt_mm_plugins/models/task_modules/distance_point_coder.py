"""Jittor twin of mmdet's ``DistancePointBBoxCoder``
(mmdet/models/task_modules/coders/distance_point_bbox_coder.py) with ``bbox2distance`` and
``distance2bbox`` (mmdet/structures/bbox/transforms.py)."""
from typing import Optional, Sequence

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_TASK_UTILS


def _clamp(x: jt.Var, low: float, high: float) -> jt.Var:
    """``x.clamp(low, high)`` (the gradient passes where low <= x <= high, as torch's)."""
    x = jt.ternary(x < low, jt.zeros_like(x) + low, x)
    return jt.ternary(x > high, jt.zeros_like(x) + high, x)


def distance2bbox(points: jt.Var,
                  distance: jt.Var,
                  max_shape: Optional[Sequence[int]] = None) -> jt.Var:
    """Boxes from a point and its distances to the four sides, as mmdet's ``distance2bbox``.

    Args:
        points (jt.Var): (N, 2) points (x, y).
        distance (jt.Var): (N, 4) distances (left, top, right, bottom).
        max_shape (Sequence[int], optional): (h, w[, c]) to clip the boxes to. Defaults to None.

    Returns:
        jt.Var: (N, 4) boxes (x1, y1, x2, y2).
    """
    bboxes = jt.concat([points - distance[:, :2], points + distance[:, 2:]], dim=-1)
    if max_shape is not None:
        height, width = float(max_shape[0]), float(max_shape[1])
        upper = jt.array(np.array([width, height, width, height], np.float32))
        bboxes = jt.ternary(bboxes < 0, jt.zeros_like(bboxes), bboxes)
        bboxes = jt.ternary(bboxes > upper, upper.broadcast(bboxes.shape).astype(bboxes.dtype),
                            bboxes)
    return bboxes


def bbox2distance(points: jt.Var,
                  bbox: jt.Var,
                  max_dis: Optional[float] = None,
                  eps: float = 0.1) -> jt.Var:
    """Distances from a point to the four sides of a box, as mmdet's ``bbox2distance``.

    Args:
        points (jt.Var): (N, 2) points (x, y).
        bbox (jt.Var): (N, 4) boxes (x1, y1, x2, y2).
        max_dis (float, optional): Distances are clamped to [0, max_dis - eps]. Defaults to None.
        eps (float): Keeps a clamped target strictly below ``max_dis``. Defaults to 0.1.

    Returns:
        jt.Var: (N, 4) distances (left, top, right, bottom).
    """
    distance = jt.concat([points - bbox[:, :2], bbox[:, 2:] - points], dim=-1)
    if max_dis is not None:
        distance = _clamp(distance, 0., max_dis - eps)
    return distance


@JITTOR_TASK_UTILS.register_module()
class DistancePointBBoxCoder:
    """Point-distance box coder (FCOS, GFL): a box is the distances (left, top, right, bottom)
    from a point to its sides.

    Args:
        clip_border (bool): Whether decoded boxes are clipped to ``max_shape``. Defaults to True.
        use_box_type (bool): Only False is supported (decoded boxes are plain Vars).
            Defaults to False.
    """

    encode_size = 4

    def __init__(self, clip_border: Optional[bool] = True, use_box_type: bool = False) -> None:
        if use_box_type:
            raise NotImplementedError('DistancePointBBoxCoder (Jittor): use_box_type=True is not '
                                      'supported; boxes are plain (N, 4) Vars.')
        self.clip_border = clip_border
        self.use_box_type = use_box_type

    @staticmethod
    def _check(points: jt.Var, boxes: jt.Var, what: str) -> None:
        if points.ndim != 2 or points.shape[-1] != 2:
            raise InputError(f'DistancePointBBoxCoder: points must be (N, 2), got '
                             f'{tuple(points.shape)}')
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape[0] != points.shape[0]:
            raise InputError(f'DistancePointBBoxCoder: {what} must be ({points.shape[0]}, 4) like '
                             f'the points, got {tuple(boxes.shape)}')

    def encode(self,
               points: jt.Var,
               gt_bboxes: jt.Var,
               max_dis: Optional[float] = None,
               eps: float = 0.1) -> jt.Var:
        """Distances (left, top, right, bottom) from ``points`` to the sides of ``gt_bboxes``.

        Args:
            points (jt.Var): (N, 2) points.
            gt_bboxes (jt.Var): (N, 4) boxes.
            max_dis (float, optional): Upper bound of the distance. Defaults to None.
            eps (float): Margin below ``max_dis``. Defaults to 0.1.

        Returns:
            jt.Var: (N, 4) distances.
        """
        self._check(points, gt_bboxes, 'gt_bboxes')
        return bbox2distance(points, gt_bboxes, max_dis, eps)

    def decode(self,
               points: jt.Var,
               pred_bboxes: jt.Var,
               max_shape: Optional[Sequence[int]] = None) -> jt.Var:
        """Boxes from ``points`` and predicted distances.

        Args:
            points (jt.Var): (N, 2) points.
            pred_bboxes (jt.Var): (N, 4) distances (left, top, right, bottom).
            max_shape (Sequence[int], optional): (h, w[, c]) bounds; ignored unless
                ``clip_border``. Defaults to None.

        Returns:
            jt.Var: (N, 4) boxes.
        """
        self._check(points, pred_bboxes, 'pred_bboxes')
        if self.clip_border is False:
            max_shape = None
        return distance2bbox(points, pred_bboxes, max_shape)
