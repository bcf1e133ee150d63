"""Gold-YOLO with every part in Jittor: :class:`EfficientRep` (``fuse_P2``), :class:`RepGDNeck`,
:class:`EffiDeHead`, on :class:`JittorSingleStageDetector`."""
from mmdet.registry import MODELS

from jt_mm_plugins.models.layers.repvgg_block import switch_to_deploy
from jt_mm_plugins.utils.errors import InputError

from .single_stage import JittorSingleStageDetector


@MODELS.register_module()
class GoldYOLO(JittorSingleStageDetector):
    """`Gold-YOLO <https://arxiv.org/abs/2309.11331>`_ computed in Jittor, bridged once.

    See :class:`JittorSingleStageDetector` for the arguments. :meth:`switch_to_deploy` fuses every
    RepVGG block (backbone and neck) into one 3x3 conv, in place; the bridged parameters are
    rebuilt, so the deploy model's ``state_dict`` holds ``rbr_reparam`` and loads into a config
    whose backbone and neck say ``deploy=True``.

    Images whose height or width is not a multiple of 32 (the largest stride) are refused with a
    message naming the size: the data preprocessor's ``pad_size_divisor=32`` pads them (the
    shipped configs set it).

    The head's ATSS warm-up needs the training epoch: :meth:`set_epoch`, called by
    :class:`~jt_mm_plugins.engine.SetEpochHook` (in the Gold-YOLO configs' ``custom_hooks``).
    """

    @property
    def epoch(self) -> int:
        return self.jittor_module.bbox_head.epoch

    def set_epoch(self, epoch: int) -> None:
        """The training epoch, for the head's ATSS warm-up (``atss_warmup_epoch``);
        :class:`~jt_mm_plugins.engine.SetEpochHook` calls it before every epoch."""
        self.jittor_module.bbox_head.set_epoch(epoch)

    def _check_size(self, batch_inputs) -> None:
        h, w = batch_inputs.shape[-2:]
        if h % 32 or w % 32:
            raise InputError(f'GoldYOLO: input {h}x{w} is not a multiple of 32 (the largest '
                             f'stride); pad it, e.g. data_preprocessor=dict(..., '
                             f'pad_size_divisor=32)')

    def loss(self, batch_inputs, batch_data_samples):
        self._check_size(batch_inputs)
        return super().loss(batch_inputs, batch_data_samples)

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        self._check_size(batch_inputs)
        return super().predict(batch_inputs, batch_data_samples, rescale)

    def _forward(self, batch_inputs, batch_data_samples=None):
        self._check_size(batch_inputs)
        return super()._forward(batch_inputs, batch_data_samples)

    def switch_to_deploy(self) -> 'GoldYOLO':
        self._push_state_to_jittor()
        core = self.jittor_module
        switch_to_deploy(core)
        for part in (core.backbone, getattr(core, 'neck', None)):
            if part is not None and hasattr(part, 'deploy'):
                part.deploy = True
        for name in list(self._modules):
            if name != 'data_preprocessor':
                del self._modules[name]
        self._attach(core)
        return self
