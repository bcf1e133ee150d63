"""Jittor components; each module registers itself when imported."""
from .activation import build_activation_layer  # noqa: F401
from .attention_pool import CLIPAttentionPool2d  # noqa: F401
from .conv2d import Conv2d  # noqa: F401
from .conv_module import ConvModule  # noqa: F401
from .depthwise_conv_module import DepthwiseConvModule  # noqa: F401
from .ghost_blocks import GhostBlocks  # noqa: F401
from .ghost_bottleneck import GhostBottleneck  # noqa: F401
from .ghost_module import GhostModule  # noqa: F401
from .norm import GroupNorm, build_norm_layer  # noqa: F401
from .scale import Scale  # noqa: F401
from . import transformer  # noqa: F401  (DETR encoder / decoder, attention, FFN, LN)

from jt_mm_plugins.registry import JITTOR_MODELS  # noqa: E402
from jt_mm_plugins.runtime import jt  # noqa: E402

# mmdet's predictor configs say dict(type='Linear') (mmengine registers torch's Linear in MODELS).
JITTOR_MODELS.register_module('Linear', module=jt.nn.Linear)
