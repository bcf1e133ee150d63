"""Jittor twin of mmdet 3.3.0's ``SingleRoIExtractor``
(``mmdet/models/roi_heads/roi_extractors/single_level_roi_extractor.py``)."""
from typing import List, Optional, Sequence, Union

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.ops.roi_align import RoIAlign
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import take_rows

#: RoI layers a config may name in ``roi_layer=dict(type=...)`` (mmcv's names).
ROI_LAYERS = {'RoIAlign': RoIAlign}


@register_jittor_module()
class JittorSingleRoIExtractor(jt.nn.Module):
    """Extract RoI features from a single level feature map, in Jittor.

    If there are multiple input feature levels, each RoI is mapped to a level according to its
    scale. The mapping rule is proposed in `FPN <https://arxiv.org/abs/1612.03144>`_:
    ``level = floor(log2(sqrt(w * h) / finest_scale + 1e-6))`` clamped to the available levels,
    exactly as mmdet's ``SingleRoIExtractor`` computes it (in float32).

    The RoI layer is :class:`jt_mm_plugins.ops.roi_align.RoIAlign`, configured as mmcv's
    (``roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)``); one layer per level with
    ``spatial_scale=1 / stride``. Like mmdet's, the module has no parameters; levels that receive no
    RoI still join the graph (with weight 0) so that every level gets a (zero) gradient.

    Args:
        roi_layer (dict): RoI layer config: ``type`` (only ``'RoIAlign'``, or a Jittor module class
            taking ``spatial_scale``) and its arguments except ``spatial_scale``.
        out_channels (int): Output channels of RoI layers (the channels of the features).
        featmap_strides (list[int]): Strides of input feature maps.
        finest_scale (int): Scale threshold of mapping to level 0. Defaults to 56.
    """

    def __init__(self,
                 roi_layer: dict,
                 out_channels: int,
                 featmap_strides: List[int],
                 finest_scale: int = 56) -> None:
        super().__init__()
        if not isinstance(featmap_strides, (list, tuple)) or not featmap_strides:
            raise InputError(f'JittorSingleRoIExtractor: featmap_strides must be a non-empty list, '
                             f'got {featmap_strides!r}')
        self.roi_layers = self.build_roi_layers(roi_layer, featmap_strides)
        self.out_channels = out_channels
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale

    @property
    def num_inputs(self) -> int:
        """int: Number of input feature maps."""
        return len(self.featmap_strides)

    @staticmethod
    def build_roi_layers(layer_cfg: dict, featmap_strides: Sequence[int]) -> jt.nn.ModuleList:
        """Build one RoI layer per level, with ``spatial_scale = 1 / stride``.

        Args:
            layer_cfg (dict): RoI layer config with a ``type`` key.
            featmap_strides (Sequence[int]): Strides of the input feature maps.

        Returns:
            jt.nn.ModuleList: The RoI layers, one per level.
        """
        if not isinstance(layer_cfg, dict) or 'type' not in layer_cfg:
            raise TypeError('JittorSingleRoIExtractor: roi_layer must be a dict with a "type" '
                            f'key, got {layer_cfg!r}')
        cfg = dict(layer_cfg)
        layer_type = cfg.pop('type')
        if isinstance(layer_type, str):
            if layer_type not in ROI_LAYERS:
                raise NotImplementedError(
                    f'JittorSingleRoIExtractor: roi_layer type {layer_type!r} has no Jittor '
                    f'implementation; available: {sorted(ROI_LAYERS)}')
            layer_cls = ROI_LAYERS[layer_type]
        elif isinstance(layer_type, type) and issubclass(layer_type, jt.nn.Module):
            layer_cls = layer_type
        else:
            raise TypeError(f'JittorSingleRoIExtractor: roi_layer type must be a name or a Jittor '
                            f'module class, got {layer_type!r}')
        if 'spatial_scale' in cfg:
            raise InputError('JittorSingleRoIExtractor: roi_layer must not set spatial_scale; it '
                             'is 1 / stride of each level (featmap_strides)')
        return jt.nn.ModuleList([layer_cls(spatial_scale=1 / s, **cfg) for s in featmap_strides])

    def map_roi_levels(self, rois: jt.Var, num_levels: int) -> jt.Var:
        """Map RoIs to feature levels by scale.

        - scale < finest_scale * 2: level 0
        - finest_scale * 2 <= scale < finest_scale * 4: level 1
        - finest_scale * 4 <= scale < finest_scale * 8: level 2
        - scale >= finest_scale * 8: level 3

        Args:
            rois (jt.Var): RoIs (k, 5).
            num_levels (int): Number of levels.

        Returns:
            jt.Var: 0-based level of each RoI, int64, shape (k,); -1 for a box with negative
            area (mmdet maps it to no level: its features stay zero).
        """
        return jt.array(self._roi_levels(rois, num_levels)).int64()

    def _roi_levels(self, rois: jt.Var, num_levels: int) -> np.ndarray:
        """Levels on the host (the split by level needs them there anyway), float32 as mmdet."""
        boxes = rois.numpy().astype(np.float32, copy=False)
        if boxes.shape[0] == 0:
            return np.zeros((0, ), np.int64)
        with np.errstate(divide='ignore', invalid='ignore'):
            scale = np.sqrt((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2]))
            levels = np.floor(np.log2(scale / np.float32(self.finest_scale) + np.float32(1e-6)))
        # A box with negative area has a NaN scale: mmdet's comparison with every level fails and
        # the RoI keeps zero features. Level -1 marks those RoIs here.
        finite = np.isfinite(levels)
        levels = np.clip(np.where(finite, levels, 0), 0, num_levels - 1).astype(np.int64)
        return np.where(finite, levels, -1)

    @staticmethod
    def roi_rescale(rois: jt.Var, scale_factor: float) -> jt.Var:
        """Scale RoI boxes about their centres by ``scale_factor``.

        Args:
            rois (jt.Var): RoIs (n, 5).
            scale_factor (float): Factor applied to width and height.

        Returns:
            jt.Var: Scaled RoIs (n, 5).
        """
        cx = (rois[:, 1] + rois[:, 3]) * 0.5
        cy = (rois[:, 2] + rois[:, 4]) * 0.5
        new_w = (rois[:, 3] - rois[:, 1]) * scale_factor
        new_h = (rois[:, 4] - rois[:, 2]) * scale_factor
        return jt.stack([
            rois[:, 0], cx - new_w * 0.5, cy - new_h * 0.5, cx + new_w * 0.5, cy + new_h * 0.5
        ], dim=-1)

    def execute(self,
                feats: Union[Sequence[jt.Var], jt.Var],
                rois: jt.Var,
                roi_scale_factor: Optional[float] = None) -> jt.Var:
        """Extract RoI features.

        Args:
            feats (Sequence[jt.Var]): Multi-scale features, each (N, C, H_i, W_i).
            rois (jt.Var): RoIs (n, 5) whose first column is the image index in the batch.
            roi_scale_factor (float, optional): Scale RoIs about their centres before pooling
                (after the level mapping, as mmdet). Defaults to None.

        Returns:
            jt.Var: RoI features (n, C, out_h, out_w).
        """
        feats = [feats] if isinstance(feats, jt.Var) else list(feats)
        self._check_inputs(feats, rois)
        rois = rois.astype(feats[0].dtype)
        out_h, out_w = self.roi_layers[0].output_size
        num_levels = len(feats)

        if num_levels == 1:
            return self.roi_layers[0](feats[0], rois)

        levels = self._roi_levels(rois, num_levels)
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)

        level_feats, level_inds, unused = [], [], []
        for i in range(num_levels):
            inds = np.nonzero(levels == i)[0]
            if len(inds) > 0:
                level_feats.append(self.roi_layers[i](feats[i], take_rows(rois, inds)))
                level_inds.append(inds)
            else:
                # As mmdet: every level joins the graph, so its gradient is defined (zero).
                unused.append(feats[i].sum() * 0.)
        unmatched = np.nonzero(levels < 0)[0]
        if len(unmatched) > 0:
            level_feats.append(
                jt.zeros((len(unmatched), feats[0].shape[1], out_h, out_w), dtype=feats[0].dtype))
            level_inds.append(unmatched)

        if level_feats:
            roi_feats = level_feats[0] if len(level_feats) == 1 else jt.concat(level_feats, dim=0)
            # Rows are grouped by level; put them back in RoI order.
            position = np.empty((len(levels), ), np.int64)
            position[np.concatenate(level_inds)] = np.arange(len(levels))
            roi_feats = roi_feats[jt.array(position.astype(np.int32))]
        else:
            roi_feats = jt.zeros((0, feats[0].shape[1], out_h, out_w), dtype=feats[0].dtype)
        for zero in unused:
            roi_feats = roi_feats + zero
        return roi_feats

    def _check_inputs(self, feats: List[jt.Var], rois: jt.Var) -> None:
        if not feats:
            raise InputError('JittorSingleRoIExtractor: got no feature maps')
        if len(feats) > len(self.roi_layers):
            raise InputError(f'JittorSingleRoIExtractor: got {len(feats)} feature maps but only '
                             f'{len(self.roi_layers)} featmap_strides {self.featmap_strides}; pass '
                             f'feats[:num_inputs]')
        for i, feat in enumerate(feats):
            if feat.ndim != 4 or feat.shape[1] != self.out_channels:
                raise InputError(f'JittorSingleRoIExtractor: feature map {i} must be (N, '
                                 f'{self.out_channels}, H, W) (out_channels={self.out_channels}), '
                                 f'got {tuple(feat.shape)}')
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise InputError(f'JittorSingleRoIExtractor: rois must be (n, 5) rows of (batch_idx, '
                             f'x1, y1, x2, y2), got {tuple(rois.shape)}')
