"""Gold-YOLO with every part in Jittor: :class:`EfficientRep` (``fuse_P2``), :class:`RepGDNeck`,
:class:`EffiDeHead`, on :class:`JittorSingleStageDetector`."""
from mmdet.registry import MODELS

from jt_mm_plugins.models.layers.repvgg_block import switch_to_deploy

from .single_stage import JittorSingleStageDetector


@MODELS.register_module()
class GoldYOLO(JittorSingleStageDetector):
    """`Gold-YOLO <https://arxiv.org/abs/2309.11331>`_ computed in Jittor, bridged once.

    See :class:`JittorSingleStageDetector` for the arguments. :meth:`switch_to_deploy` fuses every
    RepVGG block (backbone and neck) into one 3x3 conv, in place; the bridged parameters are
    rebuilt, so the deploy model's ``state_dict`` holds ``rbr_reparam`` and loads into a config
    whose backbone and neck say ``deploy=True``.
    """

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
