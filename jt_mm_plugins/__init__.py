"""jt_mm_plugins: Jittor detection components for MMDetection 3.x.

Importing the package configures Jittor (see :mod:`jt_mm_plugins.runtime`) and registers every
component in mmdet's registries, so configs only need
``custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)``.
"""
from . import runtime  # noqa: F401  (first: configures Jittor before anything imports it)
from . import utils  # noqa: F401  (checkpoint loading under torch>=2.6, see utils/checkpoint_compat)
from . import bridge, datasets, engine, models, ops  # noqa: F401,E402

__version__ = '0.1.0'
