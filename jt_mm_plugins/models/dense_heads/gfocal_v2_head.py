"""GFocalV2's head (``GFocalHead`` of implus/GFocalV2, an mmdet 2.6 fork) in Jittor: GFL plus the
distribution-guided quality predictor (DGQP), `Generalized Focal Loss V2
<https://arxiv.org/abs/2011.12885>`_. mmdet has no twin; see ../shared/specs/seed-systems.md §2."""
import copy
from typing import Dict

from jt_mm_plugins.bridge import BridgedDenseHead, register_jittor_module
from jt_mm_plugins.models.layers.activation import ReLU, Sigmoid
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .gfl_head import JittorGFLHead


def dgqp_statistics(bbox_pred: jt.Var, reg_max: int, reg_topk: int, add_mean: bool) -> jt.Var:
    """DGQP's input: per side, the ``reg_topk`` largest probabilities of the softmax over the
    ``reg_max + 1`` bins, followed by their mean when ``add_mean``.

    Args:
        bbox_pred (jt.Var): Distribution logits (N, 4 * (reg_max + 1), H, W).
        reg_max (int): The largest bin.
        reg_topk (int): How many of the largest probabilities per side.
        add_mean (bool): Whether to append the mean of the top-k.

    Returns:
        jt.Var: (N, 4 * (reg_topk + add_mean), H, W), side-major (side 0's top-k and mean first).
    """
    n, _, h, w = bbox_pred.shape
    prob = jt.nn.softmax(bbox_pred.reshape(n, 4, reg_max + 1, h, w), dim=2)
    prob_topk, _ = jt.topk(prob, reg_topk, dim=2)
    if add_mean:
        prob_topk = jt.concat([prob_topk, prob_topk.mean(dim=2, keepdims=True)], dim=2)
    return prob_topk.reshape(n, -1, h, w)


@register_jittor_module(name='GFocalV2Head', bridge_base=BridgedDenseHead)
class GFocalV2Head(JittorGFLHead):
    """GFocalV2's head: :class:`JittorGFLHead` whose classification score is multiplied by the
    quality I that DGQP predicts from the box distributions.

    Per level, with P the softmax of each side's ``reg_max + 1`` logits (not detached): the
    ``reg_topk`` largest probabilities of each side and their mean (``add_mean``) -> 1x1 conv
    (``reg_channels``) -> ReLU -> 1x1 conv (1 channel) -> sigmoid = I; the output is
    ``sigmoid(gfl_cls(cls_feat)) * I``, the joint score as a **probability**. So the
    classification loss must take probabilities (``QualityFocalLoss`` with ``activated=True``), the
    box-loss weights are the max joint score (no further sigmoid), and predictions use the score as
    it is. Parameter names are the original's (``reg_conf.0`` and ``reg_conf.2`` are DGQP's convs);
    every convolution starts from N(0, 0.01), the ``gfl_cls`` bias from prior 0.01.

    The original's config sets ``QualityFocalLoss(use_sigmoid=False)``, which makes its head
    predict ``num_classes + 1`` channels (81 on COCO). That is reproduced: with
    ``use_sigmoid=False`` (``activated`` implied) the extra last channel exists, is trained by QFL
    towards 0 only (the background label's channel, whose quality target is 0), counts in the
    max of the box-loss weights as in the original, and is dropped from the predictions. With
    ``use_sigmoid=True, activated=True`` (mmdet 3's spelling) the head has ``num_classes``
    channels.

    Args:
        num_classes (int): Number of categories excluding the background category.
        in_channels (int): Number of channels in the input feature map.
        reg_topk (int): Top-k probabilities per side fed to DGQP. Defaults to 4.
        reg_channels (int): Hidden channels of DGQP. Defaults to 64.
        add_mean (bool): Whether the mean of the top-k is fed too. Defaults to True.
        loss_cls (dict): A probability QFL. Defaults to ``QualityFocalLoss(use_sigmoid=True,
            activated=True, beta=2.0, loss_weight=1.0)``.
        **kwargs: :class:`JittorGFLHead`'s arguments (``stacked_convs``, ``norm_cfg``,
            ``loss_dfl``, ``reg_max``, ``loss_bbox``, ``anchor_generator``, ``train_cfg``...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 reg_topk: int = 4,
                 reg_channels: int = 64,
                 add_mean: bool = True,
                 loss_cls: Dict = dict(
                     type='QualityFocalLoss', use_sigmoid=True, activated=True, beta=2.0,
                     loss_weight=1.0),
                 **kwargs) -> None:
        reg_max = kwargs.get('reg_max', 16)
        if not isinstance(reg_topk, int) or isinstance(reg_topk, bool) or not (
                isinstance(reg_max, int) and 1 <= reg_topk <= reg_max + 1):
            raise InputError(f'GFocalV2Head: reg_topk must be an int in [1, reg_max + 1 = '
                             f'{reg_max + 1 if isinstance(reg_max, int) else "?"}], got '
                             f'{reg_topk!r}')
        if not isinstance(reg_channels, int) or isinstance(reg_channels, bool) or reg_channels < 1:
            raise InputError(f'GFocalV2Head: reg_channels must be an int >= 1, got '
                             f'{reg_channels!r}')
        if not isinstance(add_mean, bool):
            raise InputError(f'GFocalV2Head: add_mean must be a bool, got {add_mean!r}')
        self.reg_topk = reg_topk
        self.reg_channels = reg_channels
        self.add_mean = add_mean
        self.total_dim = reg_topk + 1 if add_mean else reg_topk
        loss_cls = self._probability_qfl(loss_cls)
        super().__init__(num_classes=num_classes, in_channels=in_channels, loss_cls=loss_cls,
                         **kwargs)

    def _probability_qfl(self, loss_cls: Dict) -> Dict:
        """Check that the classification loss takes the joint score as a probability; the
        original's ``use_sigmoid=False`` selects its extra background channel (see the class
        docstring) and is built as the probability QFL it computes."""
        if not isinstance(loss_cls, dict) or loss_cls.get('type') != 'QualityFocalLoss':
            raise InputError(f'GFocalV2Head: loss_cls must be a QualityFocalLoss config (the joint '
                             f'score is a probability), got {loss_cls!r}')
        loss_cls = copy.deepcopy(dict(loss_cls))
        self.extra_bg_channel = loss_cls.get('use_sigmoid', True) is False
        if self.extra_bg_channel:
            loss_cls['use_sigmoid'] = True
            loss_cls['activated'] = True
        elif loss_cls.get('activated', False) is not True:
            raise InputError('GFocalV2Head: the joint score is a probability: loss_cls needs '
                             'activated=True (or the original\'s use_sigmoid=False), got '
                             f'{loss_cls!r}')
        return loss_cls

    def _init_layers(self) -> None:
        """GFL's layers (with the original's extra channel if asked) and DGQP's ``reg_conf``."""
        if self.extra_bg_channel:
            self.cls_out_channels = self.num_classes + 1
        super()._init_layers()
        self.reg_conf = jt.nn.Sequential(
            Conv2d(4 * self.total_dim, self.reg_channels, 1), ReLU(),
            Conv2d(self.reg_channels, 1, 1), Sigmoid())

    def _cls_output(self, cls_feat: jt.Var, bbox_pred: jt.Var) -> jt.Var:
        """The joint score ``sigmoid(gfl_cls(cls_feat)) * I`` with I = DGQP(``bbox_pred``)."""
        quality = self.reg_conf(
            dgqp_statistics(bbox_pred, self.reg_max, self.reg_topk, self.add_mean))
        return self.gfl_cls(cls_feat).sigmoid() * quality

    def _score_probs(self, cls_score: jt.Var) -> jt.Var:
        """The joint score already is a probability."""
        return cls_score

    def _level_scores(self, cls_score: jt.Var) -> jt.Var:
        """Class probabilities (num_priors, num_classes) of one level's (C, H, W) joint scores:
        as they are, without the original's extra channel."""
        cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
        return cls_score[:, :self.num_classes] if self.extra_bg_channel else cls_score
