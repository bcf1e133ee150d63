"""Training-loop additions: mmengine's seed reaches Jittor (``seeding``), and the hook for an exact
resume (``EpochSeedHook``, registered in mmdet's ``HOOKS``)."""
from .epoch_seed_hook import EpochSeedHook, epoch_seed
from .seeding import seed_jittor_with_mmengine

__all__ = ['EpochSeedHook', 'epoch_seed', 'seed_jittor_with_mmengine']
