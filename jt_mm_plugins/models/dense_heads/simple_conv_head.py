"""``SimpleConvHead``: NanoDet-Plus's auxiliary head (``nanodet/model/head/simple_conv_head.py``,
../shared/specs/seed-systems.md section 4.4) in Jittor.

It only predicts: separate classification and regression towers of ``stacked_convs`` 3x3
ConvModules (GN(32) and LeakyReLU by default), a 3x3 ``gfl_cls`` and a 3x3 ``gfl_reg`` scaled per
level. Its outputs drive the assignment of :class:`NanoDetPlusHead` and get the same losses
(``NanoDetPlusHead.loss_by_feat(..., aux_outs=...)``). Parameter names are NanoDet's
(``cls_convs.0.conv.weight``, ``cls_convs.0.gn.weight``, ``gfl_reg.bias``, ``scales.0.scale``).
"""
from typing import List, Optional, Sequence, Tuple, Union

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.layers.activation_names import act_cfg_from_name
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.scale import Scale
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from ..utils import normal_init_convs

# NanoDet's: prior probability 0.01 of the classification sigmoid
CLS_BIAS = -4.595


@register_jittor_module()
class SimpleConvHead(jt.nn.Module):
    """NanoDet-Plus's auxiliary head.

    Args:
        num_classes (int): Number of classes.
        input_channel (int): Input channels (NanoDet-Plus: twice the FPN's, main and aux FPN
            concatenated).
        feat_channels (int): Tower channels. Defaults to 256.
        stacked_convs (int): Convs per tower. Defaults to 4.
        strides (Sequence[int]): One per level (one ``Scale`` each). Defaults to (8, 16, 32).
        conv_cfg (dict, optional): Conv config of the towers. Defaults to None.
        norm_cfg (dict, optional): Norm of the towers. Defaults to ``dict(type='GN',
            num_groups=32, requires_grad=True)``.
        activation (str | dict | None): NanoDet activation name or mmcv ``act_cfg``. Defaults to
            ``'LeakyReLU'`` (slope 0.1).
        reg_max (int): Largest bin of the box distributions. Defaults to 16.
    """

    def __init__(self,
                 num_classes: int,
                 input_channel: int,
                 feat_channels: int = 256,
                 stacked_convs: int = 4,
                 strides: Sequence[int] = (8, 16, 32),
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='GN', num_groups=32, requires_grad=True),
                 activation: Union[str, dict, None] = 'LeakyReLU',
                 reg_max: int = 16,
                 **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise InputError(f'SimpleConvHead: unknown arguments {sorted(kwargs)}')
        self.num_classes = num_classes
        self.in_channels = input_channel
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = list(strides)
        self.reg_max = reg_max
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.activation = activation
        self.cls_out_channels = num_classes
        act_cfg = act_cfg_from_name(activation, 'SimpleConvHead')
        self.cls_convs = jt.nn.ModuleList()
        self.reg_convs = jt.nn.ModuleList()
        for i in range(stacked_convs):
            chn = input_channel if i == 0 else feat_channels
            for tower in (self.cls_convs, self.reg_convs):
                tower.append(ConvModule(chn, feat_channels, 3, padding=1, conv_cfg=conv_cfg,
                                        norm_cfg=norm_cfg, act_cfg=act_cfg))
        self.gfl_cls = Conv2d(feat_channels, self.cls_out_channels, 3, padding=1)
        self.gfl_reg = Conv2d(feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = jt.nn.ModuleList([Scale(1.0) for _ in self.strides])
        self.init_weights()

    def init_weights(self) -> None:
        """NanoDet's: every conv N(0, 0.01), biases 0 except ``gfl_cls``'s (-4.595)."""
        normal_init_convs(self, std=0.01)
        self.gfl_cls.bias.assign(jt.full(self.gfl_cls.bias.shape, CLS_BIAS, dtype='float32'))

    def execute(self, feats: Sequence[jt.Var]) -> Tuple[List[jt.Var], List[jt.Var]]:
        """Per level ``cls_scores`` (N, num_classes, H, W) and ``bbox_preds``
        (N, 4 * (reg_max + 1), H, W) (NanoDet concatenates and flattens them)."""
        if isinstance(feats, jt.Var) or len(feats) != len(self.scales):
            got = 'a single Var' if isinstance(feats, jt.Var) else f'{len(feats)} levels'
            raise InputError(f'SimpleConvHead: expects {len(self.scales)} feature levels (one per '
                             f'stride {self.strides}), got {got}')
        cls_scores, bbox_preds = [], []
        for x, scale in zip(feats, self.scales):
            if x.shape[1] != self.in_channels:
                raise InputError(f'SimpleConvHead: expects {self.in_channels} input channels, got '
                                 f'{tuple(x.shape)}')
            cls_feat, reg_feat = x, x
            for cls_conv in self.cls_convs:
                cls_feat = cls_conv(cls_feat)
            for reg_conv in self.reg_convs:
                reg_feat = reg_conv(reg_feat)
            cls_scores.append(self.gfl_cls(cls_feat))
            bbox_preds.append(scale(self.gfl_reg(reg_feat)).float32())
        return cls_scores, bbox_preds
