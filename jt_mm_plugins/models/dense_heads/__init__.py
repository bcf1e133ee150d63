"""Jittor components; each module registers itself when imported."""
from .anchor_head import JittorAnchorHead  # noqa: F401
from .base_dense_head import JittorBaseDenseHead  # noqa: F401
from .detr_head import DETRHead  # noqa: F401
from .gfl_head import Integral, JittorGFLHead  # noqa: F401
from .gfocal_v2_head import GFocalV2Head  # noqa: F401
from .nanodet_plus_head import NanoDetPlusHead  # noqa: F401
from .oln_rpn_head import OlnRPNHead  # noqa: F401
from .rpn_head import JittorRPNHead  # noqa: F401
from .simple_conv_head import SimpleConvHead  # noqa: F401
from .effide_head import EffiDeHead  # noqa: F401
