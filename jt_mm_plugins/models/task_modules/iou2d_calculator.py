"""Jittor twin of mmdet's ``BboxOverlaps2D``
(mmdet/models/task_modules/assigners/iou2d_calculator.py); the overlaps themselves come from
:func:`jt_mm_plugins.ops.bbox_overlaps.bbox_overlaps`."""
from typing import Optional

from jt_mm_plugins.ops.bbox_overlaps import bbox_overlaps
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_TASK_UTILS


@JITTOR_TASK_UTILS.register_module()
class BboxOverlaps2D:
    """2D overlaps (IoU, IoF, GIoU) calculator, as mmdet's ``BboxOverlaps2D``.

    Args:
        scale (float): Only used by mmdet's fp16 mode; kept for config compatibility.
            Defaults to 1.
        dtype (str, optional): Only None (float32) is supported. Defaults to None.
    """

    def __init__(self, scale: float = 1., dtype: Optional[str] = None) -> None:
        if dtype is not None:
            raise NotImplementedError(f'BboxOverlaps2D (Jittor): dtype={dtype!r} is not supported; '
                                      'overlaps are computed in float32')
        self.scale = scale
        self.dtype = dtype

    def __call__(self,
                 bboxes1: jt.Var,
                 bboxes2: jt.Var,
                 mode: str = 'iou',
                 is_aligned: bool = False) -> jt.Var:
        """Overlaps between two sets of boxes.

        Args:
            bboxes1 (jt.Var): Boxes (m, 4), or (m, 5) with a trailing score column.
            bboxes2 (jt.Var): Boxes (n, 4), or (n, 5) with a trailing score column.
            mode (str): 'iou', 'iof' or 'giou'. Defaults to 'iou'.
            is_aligned (bool): Whether to compute only the m pairs (i, i). Defaults to False.

        Returns:
            jt.Var: Shape (m, n), or (m,) when ``is_aligned``.
        """
        for name, boxes in (('bboxes1', bboxes1), ('bboxes2', bboxes2)):
            if boxes.shape[-1] not in (0, 4, 5):
                raise InputError(f'BboxOverlaps2D: {name} must be (n, 4) or (n, 5), got '
                                 f'{tuple(boxes.shape)}')
        if bboxes1.shape[-1] == 5:
            bboxes1 = bboxes1[..., :4]
        if bboxes2.shape[-1] == 5:
            bboxes2 = bboxes2[..., :4]
        # mmdet accepts an empty (0,) tensor for "no boxes"
        bboxes1 = bboxes1.reshape(0, 4) if bboxes1.numel() == 0 else bboxes1
        bboxes2 = bboxes2.reshape(0, 4) if bboxes2.numel() == 0 else bboxes2
        return bbox_overlaps(bboxes1, bboxes2, mode, is_aligned)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(scale={self.scale}, dtype={self.dtype})'
