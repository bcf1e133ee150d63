"""Jittor components; each module registers itself when imported."""
from .activation import ACTIVATION_LAYERS, build_activation_layer  # noqa: F401
from .conv2d import Conv2d  # noqa: F401
from .conv_module import ConvModule  # noqa: F401
from .norm import NORM_LAYERS, GroupNorm, build_norm_layer  # noqa: F401
from .scale import Scale  # noqa: F401
