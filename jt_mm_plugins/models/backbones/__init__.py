"""Jittor components; each module registers itself when imported."""
from .resnet import JittorResNet  # noqa: F401
from .clip_resnet import CLIPResNet  # noqa: F401
from .open_clip_resnet import OpenCLIPResNet  # noqa: F401
from .shufflenet_v2 import ShuffleNetV2  # noqa: F401
from .efficient_rep import EfficientRep  # noqa: F401
