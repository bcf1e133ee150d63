"""The mmdet-facing side of a pure-Jittor detector, shared by the single- and two-stage ones."""
import copy
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.structures import SampleList
from mmengine.config import ConfigDict
from mmengine.model import initialize

from jt_mm_plugins.bridge import JittorModuleWrapper, build_jittor_module
from jt_mm_plugins.bridge.data_samples import (instances_from_results, losses_for_mmdet,
                                               unpack_data_samples)
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


def plain_config(cfg):
    """ConfigDict -> dict recursively (Jittor modules take plain configs)."""
    if isinstance(cfg, ConfigDict):
        return cfg.to_dict()
    return copy.deepcopy(cfg)


class JittorDetectorCore(jt.nn.Module):
    """The Jittor side of a detector: a backbone, an optional neck, and the heads of a subclass.

    It speaks the Jittor-native interface (lists of dicts of Vars instead of ``DetDataSample``) and is
    driven by a :class:`JittorDetector`, which owns its state in torch.
    """

    def __init__(self, backbone: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.backbone = build_jittor_module(backbone)
        self.neck = build_jittor_module(neck) if neck is not None else None

    def extract_feat(self, inputs: 'jt.Var') -> Tuple['jt.Var', ...]:
        x = self.backbone(inputs)
        return self.neck(x) if self.neck is not None else x


class JittorDetector(JittorModuleWrapper, BaseDetector):
    """An mmdet detector whose every part runs in Jittor, with one bridge at the detector boundary.

    Images arrive from mmdet's data preprocessor (torch); ground truths and image metas are unpacked
    from ``DetDataSample`` into the Jittor-native form; the Jittor core (``jittor_class``: a module
    with ``loss(inputs, batch_gt_instances, batch_img_metas)``, ``predict(inputs, batch_img_metas,
    rescale)``, ``extract_feat(inputs)`` and an ``execute`` giving mmdet's ``mode='tensor'`` outputs)
    computes losses or predictions; losses come back as torch scalars whose gradients reach the
    torch-owned parameters (named exactly as in the mmdet detector, so mmdet checkpoints load
    strictly), and predictions come back as ``DetDataSample.pred_instances`` so mmdet's metrics and
    visualizer work unchanged.

    Args:
        parts (dict): The Jittor parts' configs by name (``backbone``, ``neck``, ``bbox_head`` ...).
        train_cfg, test_cfg (dict): As for the mmdet detector.
        data_preprocessor (dict, optional): mmdet's data preprocessor config (runs in torch).
        init_cfg (dict, optional): mmengine initialisation config (e.g. ``Pretrained``).
    """

    def __init__(self, parts: Dict[str, Optional[dict]], train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        BaseDetector.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        parts = {name: plain_config(cfg) for name, cfg in parts.items()}
        # The parts' init_cfg belong to the torch side (Jittor modules initialise themselves).
        self._part_init_cfgs = {name: cfg.pop('init_cfg', None)
                                for name, cfg in parts.items() if cfg is not None}
        self._attach(self.jittor_class(**parts, train_cfg=plain_config(train_cfg),
                                       test_cfg=plain_config(test_cfg)))

    def init_weights(self) -> None:
        """mmengine's init, plus the parts' ``Pretrained`` init_cfg applied to their torch-owned
        parameters (other init types are the Jittor modules' own business and were already applied
        when they were built)."""
        super().init_weights()
        for name, init_cfg in self._part_init_cfgs.items():
            for cfg in (init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []):
                if cfg.get('type') != 'Pretrained':
                    continue
                checkpoint = str(cfg.get('checkpoint', ''))
                if '://' in checkpoint:
                    raise InputError(
                        f'{type(self).__name__}: {name}.init_cfg.checkpoint={checkpoint!r} would be '
                        'downloaded; jt_mm_plugins never downloads. Fetch the file yourself and set '
                        f'{name}.init_cfg.checkpoint to its local path (or init_cfg=None).')
                initialize(getattr(self, name), cfg)

    # BaseDetector.forward dispatches on ``mode`` to loss / predict / _forward.
    forward = BaseDetector.forward

    def extra_jittor_inputs(self, batch_data_samples: Optional[SampleList], mode: str) -> Dict:
        """Keyword inputs of the Jittor core's ``loss`` / ``predict`` / ``execute`` (``mode``
        ``'loss'``, ``'predict'``, ``'tensor'``) taken from the data samples beyond the gts and
        the metas: none here (a proposal-file two-stage detector passes the proposals)."""
        return {}

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList) -> Dict:
        gts, metas = unpack_data_samples(batch_data_samples, type(self).__name__)
        losses = self.run_jittor(self.jittor_module.loss, batch_inputs, gts, metas,
                                 **self.extra_jittor_inputs(batch_data_samples, 'loss'))
        return losses_for_mmdet(losses, type(self).__name__)

    def predict(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        _, metas = unpack_data_samples(batch_data_samples, type(self).__name__, with_gt=False)
        extra = self.extra_jittor_inputs(batch_data_samples, 'predict')
        with torch.no_grad():
            results = self.run_jittor(self.jittor_module.predict, batch_inputs, metas, rescale,
                                      **extra)
        return self.add_pred_to_datasample(batch_data_samples, instances_from_results(results))

    def _forward(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList = None) -> Tuple:
        return self.run_jittor(self.jittor_module, batch_inputs,
                               **self.extra_jittor_inputs(batch_data_samples, 'tensor'))

    def extract_feat(self, batch_inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.run_jittor(self.jittor_module.extract_feat, batch_inputs)
