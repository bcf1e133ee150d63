"""Data pipeline pieces; each module registers itself when imported."""
from . import lvis_compat  # noqa: F401 (mmdet's LVISMetric with PyPI's lvis 0.5.3)
from .dataset_id import AddDatasetId
from .proposals import DATASETS_WITH_PROPOSALS, CheckedProposalsMixin

__all__ = ['AddDatasetId', 'CheckedProposalsMixin', 'DATASETS_WITH_PROPOSALS']
