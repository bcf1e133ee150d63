"""Training-loop additions: mmengine's seed reaches Jittor (``seeding``), and the hook for an exact
resume (``EpochSeedHook``) and the training epoch for models that change with it
(``SetEpochHook``; ``NanoDetPlusEpochHook`` is it under NanoDet-Plus's name), registered in
mmdet's ``HOOKS``."""
from .epoch_seed_hook import EpochSeedHook, epoch_seed
from .nanodet_plus_epoch_hook import NanoDetPlusEpochHook
from .seeding import seed_jittor_with_mmengine
from .set_epoch_hook import SetEpochHook

__all__ = ['EpochSeedHook', 'epoch_seed', 'seed_jittor_with_mmengine', 'NanoDetPlusEpochHook',
           'SetEpochHook']
