"""Jittor-implemented detection components. Importing this package registers all of them."""
from . import backbones, dense_heads, detectors, layers, losses, necks, roi_heads, task_modules  # noqa
