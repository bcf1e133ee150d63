"""Training-loop additions: mmengine's seed reaches Jittor (``seeding``), and the hook for an exact
resume (``EpochSeedHook``) and NanoDet-Plus's epoch (``NanoDetPlusEpochHook``), registered in
mmdet's ``HOOKS``."""
from .epoch_seed_hook import EpochSeedHook, epoch_seed
from .nanodet_plus_epoch_hook import NanoDetPlusEpochHook
from .seeding import seed_jittor_with_mmengine

__all__ = ['EpochSeedHook', 'epoch_seed', 'seed_jittor_with_mmengine', 'NanoDetPlusEpochHook']
