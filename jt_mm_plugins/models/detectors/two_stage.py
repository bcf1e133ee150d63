"""Two-stage detection in Jittor: the Jittor core, and the mmdet-facing detector that bridges it once."""
import copy
from typing import Dict, List, Optional, Tuple

from jt_mm_plugins.bridge import JITTOR_MODELS, build_jittor_module
from jt_mm_plugins.bridge.data_samples import proposals_from_instances
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .base import JittorDetector, JittorDetectorCore


@JITTOR_MODELS.register_module()
class JittorTwoStageCore(JittorDetectorCore):
    """The Jittor side of a two-stage detector: backbone, neck, RPN head and RoI head, all Jittor.

    It speaks the Jittor-native interface (lists of dicts of Vars instead of ``DetDataSample``) and is
    driven by :class:`JittorTwoStageDetector`, which owns its state in torch. Config handling mirrors
    mmdet's ``TwoStageDetector``: the RPN head gets ``train_cfg.rpn`` / ``test_cfg.rpn`` and
    ``num_classes=1``; the RoI head gets ``train_cfg.rcnn`` / ``test_cfg.rcnn``. Without an RPN head
    (``rpn_head=None``: mmdet's ``FastRCNN``) the proposals are inputs (``batch_proposals``: one
    dict per image with ``bboxes`` and optionally ``scores``, from ``LoadProposals``); with one,
    ``predict`` still uses given proposals instead of the RPN's, as mmdet's.
    """

    def __init__(self, backbone: dict, rpn_head: Optional[dict], roi_head: dict,
                 neck: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None) -> None:
        needed = ('rpn', 'rcnn') if rpn_head is not None else ('rcnn', )
        if test_cfg is None or any(k not in test_cfg for k in needed):
            raise KeyError(f'a two-stage detector needs test_cfg with {" and ".join(needed)} '
                           f'entries, got {None if test_cfg is None else sorted(test_cfg)}')
        super().__init__(backbone, neck, train_cfg, test_cfg)
        if rpn_head is not None:
            rpn_head = copy.deepcopy(rpn_head)
            rpn_head.update(train_cfg=train_cfg['rpn'] if train_cfg is not None else None,
                            test_cfg=test_cfg['rpn'])
            if rpn_head.get('num_classes', 1) != 1:
                raise InputError('the RPN head is class-agnostic: its num_classes must be 1, got '
                                 f'{rpn_head["num_classes"]}')
            rpn_head['num_classes'] = 1
            self.rpn_head = build_jittor_module(rpn_head)
        roi_head = copy.deepcopy(roi_head)
        roi_head.update(train_cfg=train_cfg['rcnn'] if train_cfg is not None else None,
                        test_cfg=test_cfg['rcnn'])
        self.roi_head = build_jittor_module(roi_head)

    @property
    def with_rpn(self) -> bool:
        """bool: Whether the detector has an RPN head (not: proposals are inputs)."""
        return getattr(self, 'rpn_head', None) is not None

    def _given_proposals(self, batch_proposals: Optional[List[Dict]],
                         num_imgs: int) -> List[Dict]:
        if batch_proposals is None:
            raise InputError(f'{type(self).__name__}: no RPN head and no proposals: a '
                             "proposal-file detector (FastRCNN) takes each image's proposals from "
                             "its data sample's `proposals` (LoadProposals in the pipeline)")
        if len(batch_proposals) != num_imgs:
            raise InputError(f'{type(self).__name__}: {len(batch_proposals)} proposal lists for '
                             f'{num_imgs} images')
        return batch_proposals

    def execute(self, inputs: jt.Var, batch_proposals: Optional[List[Dict]] = None) -> Tuple:
        """mmdet's ``mode='tensor'``: with an RPN head, the features and its raw outputs; without,
        ``(roi_head outputs,)`` on the given proposals, as mmdet's ``FastRCNN``."""
        x = self.extract_feat(inputs)
        if self.with_rpn:
            return tuple(x), self.rpn_head(x)
        return (self.roi_head(x, self._given_proposals(batch_proposals, inputs.shape[0])), )

    def loss(self, inputs: jt.Var, batch_gt_instances: List[Dict], batch_img_metas: List[Dict],
             batch_proposals: Optional[List[Dict]] = None) -> Dict:
        x = self.extract_feat(inputs)
        losses = {}
        if self.with_rpn:
            proposal_cfg = self.train_cfg.get('rpn_proposal', self.test_cfg['rpn']) \
                if self.train_cfg is not None else self.test_cfg['rpn']
            # The RPN is class-agnostic: every ground truth is label 0 for it.
            rpn_gts = [dict(gt, labels=jt.zeros_like(gt['labels'])) for gt in batch_gt_instances]
            rpn_losses, proposals = self.rpn_head.loss_and_predict(
                x, rpn_gts, batch_img_metas, proposal_cfg=proposal_cfg)
            losses.update({(f'rpn_{k}' if 'loss' in k and 'rpn' not in k else k): v
                           for k, v in rpn_losses.items()})
        else:
            proposals = self._given_proposals(batch_proposals, len(batch_img_metas))
        losses.update(self.roi_head.loss(x, proposals, batch_gt_instances, batch_img_metas))
        return losses

    def predict(self, inputs: jt.Var, batch_img_metas: List[Dict], rescale: bool = True,
                batch_proposals: Optional[List[Dict]] = None) -> List[Dict]:
        x = self.extract_feat(inputs)
        if batch_proposals is None and self.with_rpn:
            proposals = self.rpn_head.predict(x, batch_img_metas, rescale=False)
        else:
            proposals = self._given_proposals(batch_proposals, len(batch_img_metas))
        return self.roi_head.predict(x, proposals, batch_img_metas, rescale=rescale)


class JittorTwoStageDetector(JittorDetector):
    """A two-stage mmdet detector computed in Jittor, bridged once (see :class:`JittorDetector`).

    Args:
        backbone, neck, rpn_head, roi_head (dict): Configs of the Jittor parts (``JittorResNet``,
            ``JittorFPN``, ``JittorRPNHead``, ``JittorStandardRoIHead``, ...); ``rpn_head`` None for
            a detector on given proposals (:class:`~.fast_rcnn.JittorFastRCNN`).
        train_cfg, test_cfg (dict): As for mmdet's ``TwoStageDetector``.
        data_preprocessor (dict, optional): mmdet's data preprocessor config (runs in torch).
        init_cfg (dict, optional): mmengine initialisation config (e.g. ``Pretrained``).
    """
    jittor_class = JittorTwoStageCore

    def __init__(self, backbone: dict, rpn_head: Optional[dict], roi_head: dict,
                 neck: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(dict(backbone=backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head),
                         train_cfg, test_cfg, data_preprocessor, init_cfg)

    @property
    def with_rpn(self) -> bool:
        """bool: Whether the detector has an RPN head (mmdet's ``TwoStageDetector.with_rpn``)."""
        return self.jittor_module.with_rpn

    @property
    def with_roi_head(self) -> bool:
        """bool: Whether the detector has a RoI head (always)."""
        return True

    def extra_jittor_inputs(self, batch_data_samples, mode: str) -> Dict:
        """The proposals of the data samples (``proposals``, filled by ``LoadProposals``), where
        mmdet's ``TwoStageDetector`` reads them: always without an RPN head; with one, at test time
        when the samples have them."""
        if mode == 'loss' and self.with_rpn:
            return {}
        samples = batch_data_samples or []
        have = [sample.get('proposals', None) is not None for sample in samples]
        if not self.with_rpn and not all(have):
            missing = [i for i, h in enumerate(have) if not h] or 'all (no data samples)'
            raise InputError(f'{type(self).__name__} has no RPN head: it needs the proposals of '
                             f'every image in its data sample (`proposals`, filled by '
                             f'LoadProposals in the pipeline); data samples {missing} have none')
        if not samples or not have[0]:
            return {}
        return dict(batch_proposals=proposals_from_instances(
            [sample.proposals for sample in samples]))
