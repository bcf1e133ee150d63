"""Gold-YOLO's information injection (``InjectionMultiSum_Auto_pool``, ``gold_yolo/transformer.py``)
in Jittor with the original's names.

``out = local_embedding(x_l) * act + global_feat``, each embedding a 1x1 ConvModule with a norm and
no activation (``local_embedding``, ``global_embedding``, ``global_act``). When the local map is
at least as tall as the global one, ``act = resize(h_sigmoid(global_act(x_g)))`` and
``global_feat = resize(global_embedding(x_g))`` (bilinear, ``align_corners=False``). The
original's quirk, kept: when the local map is *shorter* than the global one (``H < g_H``), both
are adaptive-avg-pooled to the local size and ``h_sigmoid`` is **not** applied. In RepGDNeck every
local map is at least as large as its global one, so the interpolation path is the one used.
"""
from typing import Optional

from jt_mm_plugins.models.layers.activation import ReLU6
from jt_mm_plugins.models.layers.adaptive_avg_pool import adaptive_avg_pool2d
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.models.layers.gd_fusion import bilinear_resize
from jt_mm_plugins.runtime import jt

BN = dict(type='BN', requires_grad=True)


class h_sigmoid(jt.nn.Module):  # noqa: N801 (the original's name)
    """``relu6(x + 3) / 6``."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.relu = ReLU6(inplace)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.relu(x + 3.0) / 6.0


class InjectionMultiSum_Auto_pool(jt.nn.Module):  # noqa: N801
    """Inject global information into a local map.

    Args:
        inp (int): Local channels.
        oup (int): Output channels.
        norm_cfg (dict, optional): Norm of the three embeddings (``None``: BN).
        activations: Unused, as in the original (its callers pass ReLU6).
        global_inp (int, optional): Global channels (default ``inp``).
    """

    def __init__(self, inp: int, oup: int, norm_cfg: Optional[dict] = None, activations=None,
                 global_inp: Optional[int] = None) -> None:
        super().__init__()
        self.norm_cfg = dict(BN if norm_cfg is None else norm_cfg)
        global_inp = global_inp or inp
        self.local_embedding = ConvModule(inp, oup, 1, norm_cfg=self.norm_cfg, act_cfg=None)
        self.global_embedding = ConvModule(global_inp, oup, 1, norm_cfg=self.norm_cfg,
                                           act_cfg=None)
        self.global_act = ConvModule(global_inp, oup, 1, norm_cfg=self.norm_cfg, act_cfg=None)
        self.act = h_sigmoid()

    def execute(self, x_l: jt.Var, x_g: jt.Var) -> jt.Var:
        size = tuple(x_l.shape[2:])
        local_feat = self.local_embedding(x_l)
        global_act = self.global_act(x_g)
        global_feat = self.global_embedding(x_g)
        if x_l.shape[2] < x_g.shape[2]:  # the original's pooled path: no h_sigmoid
            sig_act = adaptive_avg_pool2d(global_act, size)
            global_feat = adaptive_avg_pool2d(global_feat, size)
        else:
            sig_act = bilinear_resize(self.act(global_act), size)
            global_feat = bilinear_resize(global_feat, size)
        return local_feat * sig_act + global_feat
