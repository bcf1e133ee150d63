"""Helpers shared by the Jittor dense heads and RoI heads (mmdet keeps them in
``mmdet.models.utils``, ``mmdet.models.layers.bbox_nms`` and ``mmdet.structures.bbox``)."""
from .bbox import bbox2roi, empty_bbox_results, get_box_wh, inverse_scale_factor
from .bbox_nms import multiclass_nms
from .misc import (accuracy, anchor_inside_flags, build_jittor_child, cfg_get, cfg_require,
                   concat_rows, filter_scores_and_topk, images_to_levels, multi_apply,
                   normal_init_convs, select_single_mlvl, split_rows, take_rows, unmap)

__all__ = [
    'accuracy', 'anchor_inside_flags', 'bbox2roi', 'build_jittor_child', 'cfg_get', 'cfg_require',
    'concat_rows', 'empty_bbox_results', 'filter_scores_and_topk', 'get_box_wh',
    'images_to_levels', 'inverse_scale_factor', 'multi_apply', 'multiclass_nms',
    'normal_init_convs', 'select_single_mlvl', 'split_rows', 'take_rows', 'unmap'
]
