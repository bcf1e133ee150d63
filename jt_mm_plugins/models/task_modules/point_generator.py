"""Jittor twin of mmdet's ``MlvlPointGenerator``
(mmdet/models/task_modules/prior_generators/point_generator.py): the points of each level's grid.
"""
from typing import List, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.registry import JITTOR_TASK_UTILS
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@JITTOR_TASK_UTILS.register_module()
class MlvlPointGenerator:
    """Points ``((x + offset) * stride_w, (y + offset) * stride_h)`` of every level's grid, x
    fastest, as mmdet's (NanoDet-Plus's priors are ``offset=0``).

    Args:
        strides (Sequence[int | tuple[int, int]]): Stride of each level, an int or (w, h).
        offset (float): Offset of the points in strides. Defaults to 0.5.
    """

    def __init__(self, strides: Sequence[Union[int, Tuple[int, int]]], offset: float = 0.5) -> None:
        self.strides = [s if isinstance(s, (tuple, list)) else (s, s) for s in strides]
        self.strides = [tuple(s) for s in self.strides]
        self.offset = offset

    @property
    def num_levels(self) -> int:
        """int: Number of levels."""
        return len(self.strides)

    @property
    def num_base_priors(self) -> List[int]:
        """list[int]: One point per location on every level."""
        return [1 for _ in self.strides]

    def single_level_grid_priors(self, featmap_size: Tuple[int, int], level_idx: int,
                                 dtype: str = 'float32', with_stride: bool = False) -> jt.Var:
        """(h * w, 2) points of one level, or (h * w, 4) with (stride_w, stride_h)."""
        feat_h, feat_w = (int(s) for s in featmap_size)
        stride_w, stride_h = self.strides[level_idx]
        xs = ((np.arange(feat_w) + self.offset) * stride_w).astype(np.float32)
        ys = ((np.arange(feat_h) + self.offset) * stride_h).astype(np.float32)
        xx, yy = np.meshgrid(xs, ys)
        columns = [xx.reshape(-1), yy.reshape(-1)]
        if with_stride:
            columns += [np.full(feat_h * feat_w, stride_w, np.float32),
                        np.full(feat_h * feat_w, stride_h, np.float32)]
        return jt.array(np.stack(columns, axis=-1)).astype(dtype)

    def grid_priors(self, featmap_sizes: Sequence[Tuple[int, int]], dtype: str = 'float32',
                    with_stride: bool = False) -> List[jt.Var]:
        """The points of every level (see :meth:`single_level_grid_priors`)."""
        if len(featmap_sizes) != self.num_levels:
            raise InputError(f'MlvlPointGenerator: {len(featmap_sizes)} feature maps for '
                             f'{self.num_levels} strides {self.strides}')
        return [self.single_level_grid_priors(size, i, dtype, with_stride)
                for i, size in enumerate(featmap_sizes)]
