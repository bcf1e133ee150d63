"""``NanoDetPlusEpochHook``: :class:`SetEpochHook` under the name NanoDet-Plus's configs use; the
epoch switches its assign guidance module to detached inputs at ``detach_epoch``."""
from mmdet.registry import HOOKS

from .set_epoch_hook import SetEpochHook


@HOOKS.register_module()
class NanoDetPlusEpochHook(SetEpochHook):
    """Before every training epoch, ``model.set_epoch(runner.epoch)``.

    From ``detach_epoch`` on (a detector argument, NanoDet-Plus's 10), the auxiliary FPN gets
    detached backbone features and the main FPN's features are detached in the aux head's input.
    Without this hook the detector stays at epoch 0 (never detached); resuming restores the epoch
    because the hook runs before each epoch from the resumed one.
    """
