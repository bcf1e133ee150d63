"""Jittor twin of mmdet's ``AnchorGenerator`` (mmdet/models/task_modules/prior_generators)."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from jt_mm_plugins.registry import JITTOR_TASK_UTILS


def _pair(value: Union[int, float, Sequence]) -> Tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise InputError(f'AnchorGenerator: a stride must be a number or a (w, h) pair, got '
                             f'{value!r}')
        return tuple(value)
    return (value, value)


@JITTOR_TASK_UTILS.register_module()
class AnchorGenerator:
    """Standard anchor generator for 2D anchor-based detectors, as in
    `Faster R-CNN <https://arxiv.org/abs/1506.01497>`_.

    Produces exactly mmdet 3.x's anchors (same values, same order): for each level, anchors are
    ordered by feature-map row, then column, then base anchor; base anchors are ordered by ratio
    then scale when ``scale_major`` (else scale then ratio). Base anchors are computed with float32
    arithmetic in mmdet's operation order so that values are bit-identical.

    Args:
        strides (list[int] | list[tuple[int, int]]): Strides of anchors in multiple feature levels,
            in order (w, h).
        ratios (list[float]): Ratios between the height and width of anchors in a single level.
        scales (list[float], optional): Anchor scales in a single level. Mutually exclusive with
            ``octave_base_scale``/``scales_per_octave``. Defaults to None.
        base_sizes (list[int], optional): Basic sizes of anchors per level. Defaults to None
            (the shorter stride of each level).
        scale_major (bool): Whether to multiply scales first when generating base anchors (anchors
            in the same row then share the scale). Defaults to True.
        octave_base_scale (int, optional): Base scale of an octave (RetinaNet style).
            Defaults to None.
        scales_per_octave (int, optional): Number of scales per octave. Defaults to None.
        centers (list[tuple[float, float]], optional): Anchor centres relative to the feature grid
            cell, per level. Defaults to None.
        center_offset (float): Offset of the centre in proportion to the anchor size, in [0, 1].
            Defaults to 0.
        use_box_type (bool): Only False is supported (mmdet's ``HorizontalBoxes`` wrapper has no
            Jittor counterpart). Defaults to False.
    """

    def __init__(self,
                 strides: Sequence[Union[int, Tuple[int, int]]],
                 ratios: Sequence[float],
                 scales: Optional[Sequence[float]] = None,
                 base_sizes: Optional[Sequence[Union[int, float]]] = None,
                 scale_major: bool = True,
                 octave_base_scale: Optional[Union[int, float]] = None,
                 scales_per_octave: Optional[int] = None,
                 centers: Optional[Sequence[Tuple[float, float]]] = None,
                 center_offset: float = 0.,
                 use_box_type: bool = False) -> None:
        if use_box_type:
            raise NotImplementedError('AnchorGenerator (Jittor): use_box_type=True is not '
                                      'supported; anchors are plain (N, 4) Vars.')
        if center_offset != 0 and centers is not None:
            raise InputError(f'AnchorGenerator: centers cannot be set when center_offset != 0 '
                             f'(got centers={centers!r}, center_offset={center_offset})')
        if not 0 <= center_offset <= 1:
            raise InputError(f'AnchorGenerator: center_offset should be in [0, 1], got '
                             f'{center_offset}')
        if centers is not None and len(centers) != len(strides):
            raise InputError(f'AnchorGenerator: {len(strides)} strides but {len(centers)} centers')

        self.strides = [_pair(stride) for stride in strides]
        self.base_sizes = ([min(stride) for stride in self.strides]
                           if base_sizes is None else list(base_sizes))
        if len(self.base_sizes) != len(self.strides):
            raise InputError(f'AnchorGenerator: {len(self.strides)} strides but '
                             f'{len(self.base_sizes)} base_sizes')

        octave = octave_base_scale is not None and scales_per_octave is not None
        if octave == (scales is not None):
            raise InputError('AnchorGenerator: set either `scales` or both `octave_base_scale` and '
                             '`scales_per_octave`, not both and not neither')
        if scales is None:
            octave_scales = np.array([2**(i / scales_per_octave) for i in range(scales_per_octave)])
            scales = octave_scales * octave_base_scale
        self.scales = np.asarray(scales, dtype=np.float32)
        self.ratios = np.asarray(ratios, dtype=np.float32)
        self.octave_base_scale = octave_base_scale
        self.scales_per_octave = scales_per_octave
        self.scale_major = scale_major
        self.centers = centers
        self.center_offset = center_offset
        # numpy float32 (N, 4) per level; converted to Jittor when grids are generated.
        self.base_anchors = self.gen_base_anchors()

    @property
    def num_base_priors(self) -> List[int]:
        """list[int]: Number of priors (anchors) at one point of each level's feature grid."""
        return [len(base_anchors) for base_anchors in self.base_anchors]

    @property
    def num_base_anchors(self) -> List[int]:
        """list[int]: Alias of :attr:`num_base_priors` (mmdet keeps both names)."""
        return self.num_base_priors

    @property
    def num_levels(self) -> int:
        """int: Number of feature levels the generator is applied to."""
        return len(self.strides)

    def gen_base_anchors(self) -> List[np.ndarray]:
        """Generate the base anchors of every level.

        Returns:
            list[np.ndarray]: Float32 base anchors of shape (num_base_priors, 4) per level.
        """
        return [
            self.gen_single_level_base_anchors(
                base_size,
                self.scales,
                self.ratios,
                center=None if self.centers is None else self.centers[i])
            for i, base_size in enumerate(self.base_sizes)
        ]

    def gen_single_level_base_anchors(self,
                                      base_size: Union[int, float],
                                      scales: np.ndarray,
                                      ratios: np.ndarray,
                                      center: Optional[Tuple[float, float]] = None) -> np.ndarray:
        """Generate the base anchors of one level (float32, in mmdet's operation order).

        Args:
            base_size (int | float): Basic size of an anchor.
            scales (np.ndarray): Float32 anchor scales.
            ratios (np.ndarray): Float32 height/width ratios.
            center (tuple[float, float], optional): Anchor centre in the grid cell.
                Defaults to None (``center_offset`` times the base size).

        Returns:
            np.ndarray: Base anchors (x1, y1, x2, y2), shape (len(ratios) * len(scales), 4).
        """
        w = h = base_size
        if center is None:
            x_center = self.center_offset * w
            y_center = self.center_offset * h
        else:
            x_center, y_center = center

        h_ratios = np.sqrt(ratios)
        w_ratios = np.float32(1) / h_ratios
        if self.scale_major:
            ws = (w * w_ratios[:, None] * scales[None, :]).reshape(-1)
            hs = (h * h_ratios[:, None] * scales[None, :]).reshape(-1)
        else:
            ws = (w * scales[:, None] * w_ratios[None, :]).reshape(-1)
            hs = (h * scales[:, None] * h_ratios[None, :]).reshape(-1)
        half_ws, half_hs = ws * np.float32(0.5), hs * np.float32(0.5)
        x_center, y_center = np.float32(x_center), np.float32(y_center)
        base_anchors = np.stack(
            [x_center - half_ws, y_center - half_hs, x_center + half_ws, y_center + half_hs],
            axis=-1)
        return base_anchors.astype(np.float32)

    def grid_priors(self, featmap_sizes: Sequence[Tuple[int, int]],
                    dtype: str = 'float32') -> List[jt.Var]:
        """Generate grid anchors for every feature level.

        Args:
            featmap_sizes (list[tuple[int, int]]): (h, w) of each level's feature map.
            dtype (str): Jittor dtype of the anchors. Defaults to 'float32'.

        Returns:
            list[jt.Var]: Anchors of shape (h * w * num_base_priors, 4) per level.
        """
        self._check_num_levels(featmap_sizes)
        return [
            self.single_level_grid_priors(featmap_sizes[i], level_idx=i, dtype=dtype)
            for i in range(self.num_levels)
        ]

    def single_level_grid_priors(self,
                                 featmap_size: Tuple[int, int],
                                 level_idx: int,
                                 dtype: str = 'float32') -> jt.Var:
        """Generate the grid anchors of one level.

        Args:
            featmap_size (tuple[int, int]): (h, w) of the feature map.
            level_idx (int): Index of the level.
            dtype (str): Jittor dtype of the anchors. Defaults to 'float32'.

        Returns:
            jt.Var: Anchors of shape (h * w * num_base_priors, 4); the first num_base_priors rows
            are the anchors of grid point (0, 0), then (0, 1), ...
        """
        feat_h, feat_w = (int(s) for s in featmap_size)
        stride_w, stride_h = self.strides[level_idx]
        base_anchors = jt.array(self.base_anchors[level_idx]).cast(dtype)
        shift_x = jt.arange(0, feat_w).cast(dtype) * stride_w
        shift_y = jt.arange(0, feat_h).cast(dtype) * stride_h
        shift_xx, shift_yy = self._meshgrid(shift_x, shift_y)
        shifts = jt.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1)
        all_anchors = base_anchors[None, :, :] + shifts[:, None, :]
        return all_anchors.reshape(-1, 4)

    def valid_flags(self, featmap_sizes: Sequence[Tuple[int, int]],
                    pad_shape: Sequence[int]) -> List[jt.Var]:
        """Flag the anchors whose grid point lies inside the padded image.

        Args:
            featmap_sizes (list[tuple[int, int]]): (h, w) of each level's feature map.
            pad_shape (tuple): Padded image shape; the first two entries are (h, w).

        Returns:
            list[jt.Var]: Bool flags of shape (h * w * num_base_priors,) per level.
        """
        self._check_num_levels(featmap_sizes)
        pad_h, pad_w = pad_shape[:2]
        flags = []
        for i in range(self.num_levels):
            stride_w, stride_h = self.strides[i]
            feat_h, feat_w = featmap_sizes[i]
            valid_h = min(int(np.ceil(pad_h / stride_h)), feat_h)
            valid_w = min(int(np.ceil(pad_w / stride_w)), feat_w)
            flags.append(
                self.single_level_valid_flags((feat_h, feat_w), (valid_h, valid_w),
                                              self.num_base_priors[i]))
        return flags

    def single_level_valid_flags(self, featmap_size: Tuple[int, int], valid_size: Tuple[int, int],
                                 num_base_anchors: int) -> jt.Var:
        """Valid flags of the anchors of one level.

        Args:
            featmap_size (tuple[int, int]): (h, w) of the feature map.
            valid_size (tuple[int, int]): (h, w) of the part of the map inside the image.
            num_base_anchors (int): Number of anchors per grid point.

        Returns:
            jt.Var: Bool flags of shape (h * w * num_base_anchors,).
        """
        feat_h, feat_w = featmap_size
        valid_h, valid_w = valid_size
        if valid_h > feat_h or valid_w > feat_w:
            raise InputError(f'AnchorGenerator: valid size {valid_size} exceeds feature map size '
                             f'{featmap_size}')
        valid_x = jt.arange(0, feat_w) < valid_w
        valid_y = jt.arange(0, feat_h) < valid_h
        valid_xx, valid_yy = self._meshgrid(valid_x, valid_y)
        valid = jt.logical_and(valid_xx, valid_yy)
        return valid[:, None].broadcast((valid.shape[0], num_base_anchors)).reshape(-1)

    @staticmethod
    def _meshgrid(x: jt.Var, y: jt.Var) -> Tuple[jt.Var, jt.Var]:
        """Row-major mesh grid: x varies fastest. Returns flattened (xx, yy)."""
        xx = x[None, :].broadcast((y.shape[0], x.shape[0])).reshape(-1)
        yy = y[:, None].broadcast((y.shape[0], x.shape[0])).reshape(-1)
        return xx, yy

    def _check_num_levels(self, featmap_sizes: Sequence) -> None:
        if len(featmap_sizes) != self.num_levels:
            raise InputError(f'AnchorGenerator has {self.num_levels} levels (strides '
                             f'{self.strides}) but got {len(featmap_sizes)} feature map sizes')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(strides={self.strides}, ratios={self.ratios.tolist()}, '
                f'scales={self.scales.tolist()}, base_sizes={self.base_sizes}, '
                f'scale_major={self.scale_major}, octave_base_scale={self.octave_base_scale}, '
                f'scales_per_octave={self.scales_per_octave}, centers={self.centers}, '
                f'center_offset={self.center_offset})')
