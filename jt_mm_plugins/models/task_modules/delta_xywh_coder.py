"""Jittor twin of mmdet's ``DeltaXYWHBBoxCoder`` (mmdet/models/task_modules/coders)."""
from typing import Optional, Sequence, Union

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_TASK_UTILS


@JITTOR_TASK_UTILS.register_module()
class DeltaXYWHBBoxCoder:
    """Delta XYWH box coder of `R-CNN <https://arxiv.org/abs/1311.2524>`_.

    Encodes boxes (x1, y1, x2, y2) as deltas (dx, dy, dw, dh) relative to base boxes (anchors or
    proposals), normalised by ``target_means``/``target_stds``, and decodes them back. Both
    directions are differentiable Jittor expressions.

    Args:
        target_means (Sequence[float]): Means used to normalise the deltas.
            Defaults to (0., 0., 0., 0.).
        target_stds (Sequence[float]): Standard deviations used to normalise the deltas.
            Defaults to (1., 1., 1., 1.).
        clip_border (bool): Whether to clip decoded boxes to ``max_shape``. Defaults to True.
        add_ctr_clamp (bool): Whether to clamp the centre shift to ``ctr_clamp`` pixels (YOLOF).
            Defaults to False.
        ctr_clamp (int): Maximum centre shift in pixels when ``add_ctr_clamp``. Defaults to 32.
        use_box_type (bool): Only False is supported (decoded boxes are plain Vars).
            Defaults to False.
    """

    encode_size = 4

    def __init__(self,
                 target_means: Sequence[float] = (0., 0., 0., 0.),
                 target_stds: Sequence[float] = (1., 1., 1., 1.),
                 clip_border: bool = True,
                 add_ctr_clamp: bool = False,
                 ctr_clamp: int = 32,
                 use_box_type: bool = False) -> None:
        if use_box_type:
            raise NotImplementedError('DeltaXYWHBBoxCoder (Jittor): use_box_type=True is not '
                                      'supported; boxes are plain (N, 4) Vars.')
        if len(target_means) != 4 or len(target_stds) != 4:
            raise InputError(f'DeltaXYWHBBoxCoder: target_means and target_stds need 4 values, got '
                             f'{target_means!r} and {target_stds!r}')
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = ctr_clamp
        self.use_box_type = use_box_type

    def encode(self, bboxes: jt.Var, gt_bboxes: jt.Var) -> jt.Var:
        """Deltas that transform ``bboxes`` into ``gt_bboxes``.

        Args:
            bboxes (jt.Var): Source boxes (e.g. anchors), shape (N, 4).
            gt_bboxes (jt.Var): Target boxes, shape (N, 4).

        Returns:
            jt.Var: Normalised deltas (dx, dy, dw, dh), shape (N, 4).
        """
        if tuple(bboxes.shape) != tuple(gt_bboxes.shape) or bboxes.shape[-1] != 4:
            raise InputError(f'DeltaXYWHBBoxCoder.encode: bboxes {tuple(bboxes.shape)} and '
                             f'gt_bboxes {tuple(gt_bboxes.shape)} must both be (N, 4)')
        return bbox2delta(bboxes, gt_bboxes, self.means, self.stds)

    def decode(self,
               bboxes: jt.Var,
               pred_bboxes: jt.Var,
               max_shape: Optional[Sequence[int]] = None,
               wh_ratio_clip: float = 16 / 1000) -> jt.Var:
        """Apply deltas ``pred_bboxes`` to ``bboxes``.

        Args:
            bboxes (jt.Var): Base boxes, shape (N, 4).
            pred_bboxes (jt.Var): Deltas, shape (N, 4) or (N, num_classes * 4).
            max_shape (Sequence[int], optional): (h, w[, c]) bounds for clipping. Defaults to None.
            wh_ratio_clip (float): Bound on the log scale change, as in mmdet. Defaults to 16/1000.

        Returns:
            jt.Var: Decoded boxes, same shape as ``pred_bboxes``.
        """
        if pred_bboxes.ndim != 2 or bboxes.ndim != 2:
            raise InputError('DeltaXYWHBBoxCoder.decode (Jittor) decodes one image at a time: '
                             f'expected (N, 4) boxes and (N, 4k) deltas, got {tuple(bboxes.shape)} '
                             f'and {tuple(pred_bboxes.shape)}')
        if pred_bboxes.shape[0] != bboxes.shape[0]:
            raise InputError(f'DeltaXYWHBBoxCoder.decode: {bboxes.shape[0]} boxes but '
                             f'{pred_bboxes.shape[0]} deltas')
        return delta2bbox(bboxes, pred_bboxes, self.means, self.stds, max_shape, wh_ratio_clip,
                          self.clip_border, self.add_ctr_clamp, self.ctr_clamp)


def bbox2delta(proposals: jt.Var,
               gt: jt.Var,
               means: Sequence[float] = (0., 0., 0., 0.),
               stds: Sequence[float] = (1., 1., 1., 1.)) -> jt.Var:
    """Deltas of ``proposals`` w.r.t. ``gt`` (the inverse of :func:`delta2bbox`).

    Args:
        proposals (jt.Var): Boxes to be transformed, shape (..., 4).
        gt (jt.Var): Target boxes, shape (..., 4).
        means (Sequence[float]): Means to subtract from the deltas. Defaults to zeros.
        stds (Sequence[float]): Standard deviations to divide the deltas by. Defaults to ones.

    Returns:
        jt.Var: Deltas (dx, dy, dw, dh), shape (..., 4).
    """
    proposals = proposals.float32()
    gt = gt.float32()
    px = (proposals[..., 0] + proposals[..., 2]) * 0.5
    py = (proposals[..., 1] + proposals[..., 3]) * 0.5
    pw = proposals[..., 2] - proposals[..., 0]
    ph = proposals[..., 3] - proposals[..., 1]

    gx = (gt[..., 0] + gt[..., 2]) * 0.5
    gy = (gt[..., 1] + gt[..., 3]) * 0.5
    gw = gt[..., 2] - gt[..., 0]
    gh = gt[..., 3] - gt[..., 1]

    dx = (gx - px) / pw
    dy = (gy - py) / ph
    dw = jt.log(gw / pw)
    dh = jt.log(gh / ph)
    deltas = jt.stack([dx, dy, dw, dh], dim=-1)
    return (deltas - jt.array(np.array(means, np.float32))) / jt.array(np.array(stds, np.float32))


def delta2bbox(rois: jt.Var,
               deltas: jt.Var,
               means: Sequence[float] = (0., 0., 0., 0.),
               stds: Sequence[float] = (1., 1., 1., 1.),
               max_shape: Optional[Union[Sequence[int], jt.Var]] = None,
               wh_ratio_clip: float = 16 / 1000,
               clip_border: bool = True,
               add_ctr_clamp: bool = False,
               ctr_clamp: int = 32) -> jt.Var:
    """Apply deltas to shift/scale base boxes (the inverse of :func:`bbox2delta`).

    Args:
        rois (jt.Var): Base boxes, shape (N, 4).
        deltas (jt.Var): Deltas, shape (N, num_classes * 4).
        means (Sequence[float]): Means used in encoding. Defaults to zeros.
        stds (Sequence[float]): Standard deviations used in encoding. Defaults to ones.
        max_shape (Sequence[int] | jt.Var, optional): (h, w[, c]) bounds. Defaults to None.
        wh_ratio_clip (float): The log width/height change is clamped to ``|log(wh_ratio_clip)|``.
            Defaults to 16 / 1000.
        clip_border (bool): Whether to clip boxes to ``max_shape``. Defaults to True.
        add_ctr_clamp (bool): Whether to clamp the centre shift (YOLOF). Defaults to False.
        ctr_clamp (int): Maximum centre shift in pixels. Defaults to 32.

    Returns:
        jt.Var: Boxes (x1, y1, x2, y2), shape (N, num_classes * 4).
    """
    num_bboxes, num_classes = deltas.shape[0], deltas.shape[1] // 4
    if num_bboxes == 0:
        return deltas
    deltas = deltas.reshape(-1, 4)
    denorm_deltas = (deltas * jt.array(np.array(stds, np.float32)) +
                     jt.array(np.array(means, np.float32)))
    dxy = denorm_deltas[:, :2]
    dwh = denorm_deltas[:, 2:]

    # every roi once per class, as mmdet's rois.repeat(1, num_classes)
    rois_ = rois.float32()[:, None, :].broadcast((num_bboxes, num_classes, 4)).reshape(-1, 4)
    pxy = (rois_[:, :2] + rois_[:, 2:]) * 0.5
    pwh = rois_[:, 2:] - rois_[:, :2]
    dxy_wh = pwh * dxy

    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    if add_ctr_clamp:
        dxy_wh = jt.minimum(jt.maximum(dxy_wh, -float(ctr_clamp)), float(ctr_clamp))
        dwh = jt.minimum(dwh, max_ratio)
    else:
        dwh = jt.minimum(jt.maximum(dwh, -max_ratio), max_ratio)

    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    bboxes = jt.concat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if clip_border and max_shape is not None:
        if isinstance(max_shape, jt.Var):
            max_shape = max_shape.numpy().tolist()
        height, width = float(max_shape[0]), float(max_shape[1])
        upper = jt.array(np.array([width, height, width, height], np.float32))
        bboxes = jt.minimum(jt.maximum(bboxes, 0.), upper)
    return bboxes.reshape(num_bboxes, -1)
