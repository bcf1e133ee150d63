"""``SetEpochHook``: tells a model the training epoch before every epoch, for behaviour that
changes with it (NanoDet-Plus's ``detach_epoch``, the ATSS warm-up of Gold-YOLO's / YOLOv6's
``EffiDeHead``): the originals' trainers set ``model.epoch``; mmengine's runner does it through
this hook."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from jt_mm_plugins.utils.errors import InputError


def epoch_setter(model, owner: str):
    """``model.set_epoch``; for a detector without one (mmdet's own, holding a bridged Jittor
    head in mixed mode) a setter of its ``bbox_head``'s ``epoch`` (written through to the
    Jittor head). InputError naming ``owner`` when neither exists."""
    if callable(getattr(model, 'set_epoch', None)):
        return model.set_epoch
    head = getattr(model, 'bbox_head', None)
    if head is not None and isinstance(getattr(head, 'epoch', None), int):
        return lambda epoch: setattr(head, 'epoch', int(epoch))
    raise InputError(f'{owner}: the model ({type(model).__name__}) has no set_epoch(epoch) and '
                     f'no bbox_head with an epoch; use it with a detector whose behaviour '
                     f'depends on the epoch (NanoDetPlus / NanoDetPlusMixed, GoldYOLO, or an '
                     f'mmdet detector holding EffiDeHead)')


@HOOKS.register_module()
class SetEpochHook(Hook):
    """Before every training epoch, ``model.set_epoch(runner.epoch)`` (or the bbox head's
    ``epoch``, see :func:`epoch_setter`).

    Without this hook the model stays at epoch 0; resuming restores the epoch because the hook
    runs before each epoch from the resumed one.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        epoch_setter(model, type(self).__name__)(runner.epoch)
