"""Exact resume: every epoch starts from random states that depend on (seed, epoch) only.

mmengine checkpoints keep weights, buffers, optimizer and scheduler states and counters, but not the
random states, so after ``--resume`` the samplers of the heads (mmdet's ``RandomSampler`` draws from
torch, the Jittor one from numpy), random augmentations in the main process and Jittor's own random
ops draw other numbers than the uninterrupted run did. Saving the states in the checkpoint would not
be enough either: what runs between the checkpoint and the next epoch (validation, its data loader)
also draws. This hook instead seeds Python's ``random``, numpy, torch (and CUDA) and Jittor at the
start of every epoch from ``(runner.seed, epoch)``, so a run resumed at an epoch boundary draws
exactly what the uninterrupted run draws.

Data-loader workers: mmengine's ``worker_init_fn`` seeds each worker from the run's seed and its
worker id when the worker starts. With ``persistent_workers=False`` (or ``num_workers=0``) workers
start afresh every epoch, so they match too; persistent workers carry their random state across
epochs, which no checkpoint holds: the hook warns once when they are configured.
"""
import random
import warnings

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from jt_mm_plugins.runtime import jt


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for ``epoch`` of a run seeded with ``seed`` (independent streams per epoch)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch]).generate_state(1)[0])


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Seed every random generator at each epoch start from ``(runner.seed, epoch)``.

    Add it to a config with ``custom_hooks = [dict(type='EpochSeedHook')]`` (the demo configs do).
    With ``randomness=dict(seed=..., deterministic=True)``, a run killed in epoch ``k`` and resumed
    from its last checkpoint logs the same losses as an uninterrupted run from epoch ``k`` on
    (``tests/test_resume.py``). It needs an epoch-based loop: an iteration-based loop has one
    "epoch".
    """

    priority = 'VERY_HIGH'  # before any other hook of the epoch may draw

    def before_train(self, runner) -> None:
        loader_cfg = runner.cfg.get('train_dataloader', {}) if hasattr(runner, 'cfg') else {}
        if loader_cfg.get('num_workers', 0) > 0 and loader_cfg.get('persistent_workers', False):
            warnings.warn('EpochSeedHook: train_dataloader has persistent_workers=True: the '
                          "workers' random states (augmentations) carry over from epoch to epoch "
                          'and are in no checkpoint, so a resumed run draws other augmentations. '
                          'Set persistent_workers=False for an exact resume.', RuntimeWarning)

    def before_train_epoch(self, runner) -> None:
        seed = epoch_seed(runner.seed, runner.epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # CUDA generators too
        jt.set_seed(seed)
