"""Utilities that need no Jittor: checkpoint loading compatibility."""
from .checkpoint_compat import (history_buffer_getattr, mmengine_safe_globals,
                                register_mmengine_safe_globals)

# Importing jt_mm_plugins makes mmengine checkpoints loadable with torch.load(weights_only=True).
register_mmengine_safe_globals()

__all__ = ['history_buffer_getattr', 'mmengine_safe_globals', 'register_mmengine_safe_globals']
