"""Jittor twin of mmdet's ``AssignResult``
(mmdet/models/task_modules/assigners/assign_result.py)."""
from typing import Any, Dict, Optional

import numpy as np

from jt_mm_plugins.runtime import jt


class AssignResult:
    """Assignment between predicted boxes (priors) and ground-truth boxes, with mmdet's conventions.

    Args:
        num_gts (int): Number of ground-truth boxes considered in the assignment.
        gt_inds (jt.Var): For each prior, the 1-based index of its assigned gt box; 0 means
            negative (background) and -1 means ignored. int32, shape (num_priors,).
        max_overlaps (jt.Var): IoU of each prior with its best gt box, float32, (num_priors,).
        labels (jt.Var, optional): Label of the assigned gt of each prior, -1 where none.
            int32, (num_priors,).
    """

    def __init__(self, num_gts: int, gt_inds: jt.Var, max_overlaps: jt.Var,
                 labels: Optional[jt.Var]) -> None:
        self.num_gts = num_gts
        self.gt_inds = gt_inds
        self.max_overlaps = max_overlaps
        self.labels = labels
        self._extra_properties: Dict[str, Any] = {}

    @property
    def num_preds(self) -> int:
        """int: Number of priors in this assignment."""
        return int(self.gt_inds.shape[0])

    def set_extra_property(self, key: str, value: Any) -> None:
        """Set a user-defined property."""
        if key in self.info:
            raise KeyError(f'AssignResult already has a property named {key!r}')
        self._extra_properties[key] = value

    def get_extra_property(self, key: str) -> Any:
        """Get a user-defined property (None when unset)."""
        return self._extra_properties.get(key, None)

    @property
    def info(self) -> Dict[str, Any]:
        """dict: The assignment's fields and extra properties."""
        basic_info = {
            'num_gts': self.num_gts,
            'num_preds': self.num_preds,
            'gt_inds': self.gt_inds,
            'max_overlaps': self.max_overlaps,
            'labels': self.labels,
        }
        basic_info.update(self._extra_properties)
        return basic_info

    def add_gt_(self, gt_labels: jt.Var) -> None:
        """Prepend the gt boxes as priors assigned to themselves (used when sampling).

        Args:
            gt_labels (jt.Var): Labels of the gt boxes, shape (num_gts,).
        """
        num = int(gt_labels.shape[0])
        self_inds = jt.array(np.arange(1, num + 1, dtype=np.int32))
        self.gt_inds = jt.concat([self_inds, self.gt_inds.int32()])
        self.max_overlaps = jt.concat([jt.ones((num, ), dtype=self.max_overlaps.dtype),
                                       self.max_overlaps])
        if self.labels is not None:
            self.labels = jt.concat([gt_labels.int32(), self.labels.int32()])

    def __repr__(self) -> str:
        labels = None if self.labels is None else tuple(self.labels.shape)
        return (f'<AssignResult(num_gts={self.num_gts}, gt_inds.shape={tuple(self.gt_inds.shape)}, '
                f'max_overlaps.shape={tuple(self.max_overlaps.shape)}, labels.shape={labels})>')
