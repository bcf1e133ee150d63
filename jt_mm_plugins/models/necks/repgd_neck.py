"""``RepGDNeck``, Gold-YOLO's gather-and-distribute neck (``gold_yolo/reppan.py``, N and S
models), in Jittor with the original's parameter names.

Inputs (C2, C3, C4, C5) from :class:`EfficientRep` with ``fuse_P2=True``; outputs [P3, N4, N5].
With ``channels_list`` c0..c10 (backbone c0..c4, neck c5..c10) and ``num_repeats`` (neck n5..n8):

* **Low-GD.** ``low_FAM`` (:class:`SimFusion_4in`) gathers C2..C5 at C4's size; ``low_IFM``:
  ``Conv`` 1x1 (SiLU) ``fusion_in -> embed_dim_p``, ``fuse_block_num`` RepVGG blocks, ``Conv``
  1x1 ``-> trans_channels[0] + trans_channels[1]``, split in two global parts.
  ``reduce_layer_c5`` (SimConv 1x1 c4 -> c5) gives ``c5_half``; ``LAF_p4`` (SimFusion_3in of
  C3, C4, c5_half), ``Inject_p4`` (global part 0), ``Rep_p4`` (RepBlock c5, n5) give P4;
  ``reduce_layer_p4`` (c5 -> c6) gives ``p4_half``; ``LAF_p3`` (C2, C3, p4_half), ``Inject_p3``
  (global part 1), ``Rep_p3`` (c6, n6) give **P3**.
* **High-GD.** ``high_FAM`` (:class:`PyramidPoolAgg`, ``c2t_stride``) pools P3, P4, C5 to C5's
  size / stride; ``high_IFM`` (:class:`TopBasicLayer`, ``depths`` blocks, drop-path rates
  ``linspace(0, drop_path_rate, depths)``); ``conv_1x1_n`` (conv with bias) ``embed_dim_n ->
  trans_channels[2] + trans_channels[3]``, split in two. ``LAF_n4`` (:class:`AdvPoolFusion` of
  P3 and p4_half), ``Inject_n4``, ``Rep_n4`` (c6 + c7 -> c8, n7) give **N4**; ``LAF_n5`` (N4 and
  c5_half), ``Inject_n5``, ``Rep_n5`` (c5 + c9 -> c10, n8) give **N5**.

Norms: the YOLOv6 blocks (SimConv, Conv, RepVGG) use ``norm_cfg`` (default: YOLOv6's trained
BatchNorm, eps 1e-3, momentum 0.03, what the original's ``initialize_weights`` sets on every
``nn.BatchNorm2d``); the injection and transformer modules use ``extra_cfg['norm_cfg']``
(Gold-YOLO's configs: SyncBN, which ``initialize_weights`` leaves at eps 1e-5, momentum 0.1).
``width_multiple`` / ``depth_multiple`` (optional) scale ``channels_list`` / ``num_repeats`` as
YOLOv6's builder does; ``extra_cfg`` is never scaled (as in the original). :data:`GOLD_YOLO_S`
and :data:`GOLD_YOLO_N` hold the original configs' values.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.models.backbones.efficient_rep import yolov6_channels, yolov6_repeats
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.gd_fusion import (AdvPoolFusion, PyramidPoolAgg, SimFusion_3in,
                                                   SimFusion_4in)
from jt_mm_plugins.models.layers.gd_injection import InjectionMultiSum_Auto_pool
from jt_mm_plugins.models.layers.gd_transformer import TopBasicLayer
from jt_mm_plugins.models.layers.rep_block import RepBlock
from jt_mm_plugins.models.layers.repvgg_block import RepVGGBlock, switch_to_deploy
from jt_mm_plugins.models.layers.sim_conv import Conv, SimConv
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

EXTRA_CFG_KEYS = ('norm_cfg', 'depths', 'fusion_in', 'fuse_block_num', 'embed_dim_p',
                  'embed_dim_n', 'key_dim', 'num_heads', 'mlp_ratios', 'attn_ratios',
                  'c2t_stride', 'drop_path_rate', 'trans_channels', 'pool_mode')
# Read by nothing in the original either.
IGNORED_EXTRA_KEYS = ('ppa_in', 'fusion_act')

_COMMON = dict(norm_cfg=dict(type='SyncBN', requires_grad=True), depths=2, fuse_block_num=3,
               key_dim=8, num_heads=4, mlp_ratios=1, attn_ratios=2, c2t_stride=2,
               drop_path_rate=0.1, pool_mode='torch')
# configs/gold_yolo-s.py and -n.py: the whole network's lists (unscaled) and the neck's extra_cfg
# (fusion_act, unused, as in the original: ReLU6 for S, ReLU for N).
GOLD_YOLO_S = dict(
    channels_list=[64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512],
    num_repeats=[1, 6, 12, 18, 6, 12, 12, 12, 12], width_multiple=0.5, depth_multiple=0.33,
    extra_cfg=dict(_COMMON, fusion_in=960, ppa_in=704, embed_dim_p=128, embed_dim_n=704,
                   trans_channels=[128, 64, 128, 256], fusion_act=dict(type='ReLU6')))
GOLD_YOLO_N = dict(
    channels_list=[64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512],
    num_repeats=[1, 6, 12, 18, 6, 12, 12, 12, 12], width_multiple=0.25, depth_multiple=0.33,
    extra_cfg=dict(_COMMON, fusion_in=480, ppa_in=352, embed_dim_p=96, embed_dim_n=352,
                   trans_channels=[64, 32, 64, 128], fusion_act=dict(type='ReLU')))


@register_jittor_module()
class RepGDNeck(jt.nn.Module):
    """Gold-YOLO's RepGD neck (see the module docstring).

    Args:
        channels_list (Sequence[int]): 11 channel counts (backbone 5, neck 6).
        num_repeats (Sequence[int]): 9 repeat counts (backbone 5, neck 4).
        extra_cfg (dict): The original's ``extra_cfg`` (keys :data:`EXTRA_CFG_KEYS`; ``ppa_in``
            and ``fusion_act`` accepted and unused, as in the original).
        width_multiple (float, optional): Scale ``channels_list`` (YOLOv6's builder).
        depth_multiple (float, optional): Scale ``num_repeats`` (YOLOv6's builder).
        deploy (bool): Build fused RepVGG blocks. Defaults to False.
        norm_cfg (dict, optional): Norm of the YOLOv6 blocks (``None``: YOLOv6's BatchNorm).
    """

    def __init__(self, channels_list: Optional[Sequence[int]] = None,
                 num_repeats: Optional[Sequence[int]] = None, extra_cfg: Optional[dict] = None,
                 width_multiple: Optional[float] = None, depth_multiple: Optional[float] = None,
                 deploy: bool = False, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if channels_list is None or num_repeats is None or len(channels_list) != 11 \
                or len(num_repeats) != 9:
            raise InputError(f'RepGDNeck: channels_list needs 11 entries and num_repeats 9 '
                             f'(backbone and neck), got {channels_list!r} and {num_repeats!r}')
        cfg = self._check_extra_cfg(extra_cfg)
        c = yolov6_channels(channels_list, width_multiple)
        n = yolov6_repeats(num_repeats, depth_multiple)
        self.channels_list, self.num_repeats, self.deploy = c, n, deploy
        self.trans_channels = list(cfg['trans_channels'])
        gd_norm = cfg['norm_cfg']

        def rep_block(c_in, c_out, repeats):
            return RepBlock(c_in, c_out, repeats, deploy=deploy, norm_cfg=norm_cfg)

        def inject(channels):
            return InjectionMultiSum_Auto_pool(channels, channels, norm_cfg=gd_norm)

        self.low_FAM = SimFusion_4in()
        self.low_IFM = jt.nn.Sequential(
            Conv(cfg['fusion_in'], cfg['embed_dim_p'], 1, 1, norm_cfg=norm_cfg),
            *[RepVGGBlock(cfg['embed_dim_p'], cfg['embed_dim_p'], deploy=deploy,
                          norm_cfg=norm_cfg) for _ in range(cfg['fuse_block_num'])],
            Conv(cfg['embed_dim_p'], sum(self.trans_channels[0:2]), 1, 1, norm_cfg=norm_cfg))
        self.reduce_layer_c5 = SimConv(c[4], c[5], 1, 1, norm_cfg=norm_cfg)
        self.LAF_p4 = SimFusion_3in([c[3], c[3]], c[5], norm_cfg=norm_cfg)
        self.Inject_p4 = inject(c[5])
        self.Rep_p4 = rep_block(c[5], c[5], n[5])
        self.reduce_layer_p4 = SimConv(c[5], c[6], 1, 1, norm_cfg=norm_cfg)
        self.LAF_p3 = SimFusion_3in([c[5], c[5]], c[6], norm_cfg=norm_cfg)
        self.Inject_p3 = inject(c[6])
        self.Rep_p3 = rep_block(c[6], c[6], n[6])

        self.high_FAM = PyramidPoolAgg(cfg['c2t_stride'], cfg['pool_mode'])
        rates = [float(r) for r in np.linspace(0, cfg['drop_path_rate'], cfg['depths'],
                                               dtype=np.float32)]
        self.high_IFM = TopBasicLayer(cfg['depths'], cfg['embed_dim_n'], cfg['key_dim'],
                                      cfg['num_heads'], cfg['mlp_ratios'], cfg['attn_ratios'],
                                      drop_path=rates, norm_cfg=gd_norm)
        self.conv_1x1_n = Conv2d(cfg['embed_dim_n'], sum(self.trans_channels[2:4]), 1)
        self.LAF_n4 = AdvPoolFusion()
        self.Inject_n4 = inject(c[8])
        self.Rep_n4 = rep_block(c[6] + c[7], c[8], n[7])
        self.LAF_n5 = AdvPoolFusion()
        self.Inject_n5 = inject(c[10])
        self.Rep_n5 = rep_block(c[5] + c[9], c[10], n[8])

    @staticmethod
    def _check_extra_cfg(extra_cfg) -> dict:
        if not isinstance(extra_cfg, dict):
            raise InputError(f'RepGDNeck: extra_cfg must be a dict with {EXTRA_CFG_KEYS}, got '
                             f'{extra_cfg!r}')
        missing = [k for k in EXTRA_CFG_KEYS if k not in extra_cfg]
        unknown = [k for k in extra_cfg if k not in EXTRA_CFG_KEYS + IGNORED_EXTRA_KEYS]
        if missing or unknown:
            raise InputError(f'RepGDNeck: extra_cfg is missing {missing} / has unknown keys '
                             f'{unknown}')
        return dict(extra_cfg)

    def switch_to_deploy(self) -> 'RepGDNeck':
        """Fuse every RepVGG block into one 3x3 conv (in place)."""
        switch_to_deploy(self)
        self.deploy = True
        return self

    def execute(self, inputs: Sequence[jt.Var]) -> Tuple[jt.Var, jt.Var, jt.Var]:
        if len(inputs) != 4:
            raise InputError(f'RepGDNeck expects (C2, C3, C4, C5) (EfficientRep with '
                             f'fuse_P2=True), got {len(inputs)} maps')
        c2, c3, c4, c5 = inputs
        for i, (x, ch) in enumerate(zip(inputs, self.channels_list[1:5]), start=2):
            if x.ndim != 4 or x.shape[1] != ch:
                raise InputError(f'RepGDNeck: C{i} must be (N, {ch}, H, W), got {tuple(x.shape)}')
        t = self.trans_channels
        low = self.low_IFM(self.low_FAM(inputs))
        low_global = (low[:, :t[0]], low[:, t[0]:t[0] + t[1]])
        c5_half = self.reduce_layer_c5(c5)
        p4 = self.Rep_p4(self.Inject_p4(self.LAF_p4([c3, c4, c5_half]), low_global[0]))
        p4_half = self.reduce_layer_p4(p4)
        p3 = self.Rep_p3(self.Inject_p3(self.LAF_p3([c2, c3, p4_half]), low_global[1]))

        high = self.conv_1x1_n(self.high_IFM(self.high_FAM([p3, p4, c5])))
        high_global = (high[:, :t[2]], high[:, t[2]:t[2] + t[3]])
        n4 = self.Rep_n4(self.Inject_n4(self.LAF_n4(p3, p4_half), high_global[0]))
        n5 = self.Rep_n5(self.Inject_n5(self.LAF_n5(n4, c5_half), high_global[1]))
        return p3, n4, n5
