"""Jittor components; each module registers itself when imported."""
from .channel_mapper import JittorChannelMapper  # noqa: F401
from .fpn import JittorFPN  # noqa: F401
from .ghost_pan import GhostPAN  # noqa: F401
from .repgd_neck import RepGDNeck  # noqa: F401
