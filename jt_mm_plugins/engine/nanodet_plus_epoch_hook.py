"""``NanoDetPlusEpochHook``: tells a NanoDet-Plus detector the training epoch, which switches its
assign guidance module to detached inputs at ``detach_epoch`` (NanoDet's trainer sets
``model.epoch``; mmengine's runner does it through this hook)."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from jt_mm_plugins.utils.errors import InputError


@HOOKS.register_module()
class NanoDetPlusEpochHook(Hook):
    """Before every training epoch, ``model.set_epoch(runner.epoch)``.

    From ``detach_epoch`` on (a detector argument, NanoDet-Plus's 10), the auxiliary FPN gets
    detached backbone features and the main FPN's features are detached in the aux head's input.
    Without this hook the detector stays at epoch 0 (never detached); resuming restores the epoch
    because the hook runs before each epoch from the resumed one.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not callable(getattr(model, 'set_epoch', None)):
            raise InputError(f'NanoDetPlusEpochHook: the model ({type(model).__name__}) has no '
                             'set_epoch(epoch); use it with NanoDetPlus or NanoDetPlusMixed')
        model.set_epoch(runner.epoch)
