"""Data pipeline pieces; each module registers itself when imported."""
from .dataset_id import AddDatasetId

__all__ = ['AddDatasetId']
