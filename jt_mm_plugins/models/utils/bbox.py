"""Box helpers shared by the Jittor heads: RoI packing, empty results, rescaling, box sizes.

Jittor twins of ``mmdet.structures.bbox`` (``bbox2roi``, ``scale_boxes``, ``get_box_wh``) and
``mmdet.models.utils.empty_instances`` (bbox part), on Jittor Vars.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .misc import concat_rows


def bbox2roi(bbox_list: List[jt.Var]) -> jt.Var:
    """Convert per-image boxes into RoIs ``(batch_index, x1, y1, x2, y2)``, as mmdet's ``bbox2roi``.

    Args:
        bbox_list (list[jt.Var]): Boxes of each image of the batch, each of shape (n_i, 4).

    Returns:
        jt.Var: RoIs of shape (sum n_i, 5), float32 unless the boxes are float64.
    """
    if len(bbox_list) == 0:
        raise InputError('bbox2roi: got an empty list of images')
    dtype = str(bbox_list[0].dtype)
    dtype = dtype if dtype in ('float32', 'float64') else 'float32'
    rois = []
    for img_id, bboxes in enumerate(bbox_list):
        if bboxes.ndim != 2 or bboxes.shape[1] != 4:
            raise InputError(f'bbox2roi: the boxes of image {img_id} must be (n, 4), got '
                             f'{tuple(bboxes.shape)}')
        if bboxes.shape[0] == 0:
            continue
        img_inds = jt.full((bboxes.shape[0], 1), float(img_id), dtype=dtype)
        rois.append(jt.concat([img_inds, bboxes.astype(dtype)], dim=1))
    return concat_rows(rois, (5, ), dtype)


def empty_bbox_results(num_classes: int, score_per_cls: bool = False,
                       dtype: str = 'float32') -> Dict[str, jt.Var]:
    """Results of an image without RoIs, as mmdet's ``empty_instances(task_type='bbox')``.

    Args:
        num_classes (int): Number of foreground classes.
        score_per_cls (bool): Whether ``scores`` has a column per class plus background (raw
            results without NMS). Defaults to False.
        dtype (str): Float dtype of boxes and scores. Defaults to 'float32'.

    Returns:
        dict: ``bboxes`` (0, 4), ``scores`` (0,) or (0, num_classes + 1), ``labels`` (0,) int64.
    """
    score_shape = (0, num_classes + 1) if score_per_cls else (0, )
    return dict(
        bboxes=jt.zeros((0, 4), dtype=dtype),
        scores=jt.zeros(score_shape, dtype=dtype),
        labels=jt.zeros((0, ), dtype='int64'))


def inverse_scale_factor(scale_factor: Sequence[float], owner: str = 'rescale') -> jt.Var:
    """``[1/sw, 1/sh, 1/sw, 1/sh]`` in float32: what mmdet's ``scale_boxes`` multiplies boxes by to
    map them back to the original image (``rescale=True``).

    Args:
        scale_factor (Sequence[float]): ``img_meta['scale_factor']``, (w_scale, h_scale).
        owner (str): Name for the error message. Defaults to 'rescale'.

    Returns:
        jt.Var: Shape (4,), float32.
    """
    factors = [1 / s for s in scale_factor]
    if len(factors) != 2:
        raise InputError(f'{owner}: scale_factor must be (w_scale, h_scale), got {scale_factor!r}')
    return jt.array(np.array(factors * 2, dtype=np.float32))


def get_box_wh(bboxes: jt.Var) -> Tuple[jt.Var, jt.Var]:
    """Widths and heights of (n, 4) boxes (x1, y1, x2, y2), as mmdet's ``get_box_wh``."""
    return bboxes[:, 2] - bboxes[:, 0], bboxes[:, 3] - bboxes[:, 1]
