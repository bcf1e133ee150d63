"""Alignment of Jittor components with their PyTorch references (see tools/align.py)."""
from .compare import (DEFAULT_TOLERANCES, DiffRow, compare_modules, format_rows, fresh_inputs,
                      leaves, randomize_norm_statistics)
from .pairs import ALIGNMENT_PAIRS, AlignmentPair, alignment_pair, get_pair

__all__ = [
    'DEFAULT_TOLERANCES', 'DiffRow', 'compare_modules', 'format_rows', 'fresh_inputs', 'leaves',
    'randomize_norm_statistics', 'ALIGNMENT_PAIRS', 'AlignmentPair', 'alignment_pair', 'get_pair'
]
