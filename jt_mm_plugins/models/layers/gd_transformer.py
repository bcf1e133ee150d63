"""Gold-YOLO's high-level information fusion (``high_IFM``, ``gold_yolo/transformer.py``, from
TopFormer) in Jittor with the original's names: :class:`TopBasicLayer` of :class:`top_Block`
(residual :class:`Attention`, residual :class:`Mlp`, each through :class:`DropPath`), all on
``(N, C, H, W)`` maps with 1x1 :class:`Conv2d_BN` projections.

As in the original:

* ``Attention.scale`` (``key_dim ** -0.5``) is set but **not applied**: the logits are ``q @ k``.
* The output projection is ``proj.0`` (the activation, ReLU6 in Gold-YOLO) then ``proj.1``
  (Conv2d_BN with its BN weight initialised to 0, so a fresh block's attention branch is 0).
* The MLP is ``fc1`` (Conv2d_BN 1x1), ``dwconv`` (3x3 depthwise with bias), the activation,
  ``fc2`` (Conv2d_BN 1x1); dropout 0 (the original's ``drop``, always 0 in Gold-YOLO, is refused
  otherwise).
"""
from typing import Optional, Sequence, Union

from jt_mm_plugins.models.layers.activation import ReLU6
from jt_mm_plugins.models.layers.conv2d import Conv2d
from jt_mm_plugins.models.layers.drop_path import DropPath
from jt_mm_plugins.models.layers.norm import build_norm_layer
from jt_mm_plugins.ops.batched_matmul import batched_matmul
from jt_mm_plugins.ops.softmax import softmax_last_dim
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError

BN = dict(type='BN', requires_grad=True)


class Conv2d_BN(jt.nn.Module):  # noqa: N801 (the original's name)
    """Bias-free conv ``c`` then norm ``bn`` (BN weight ``bn_weight_init``, bias 0)."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 dilation: int = 1, groups: int = 1, bn_weight_init: float = 1.0,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.inp_channel, self.out_channel, self.ks, self.pad = a, b, ks, pad
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.c = Conv2d(a, b, ks, stride=stride, padding=pad, dilation=dilation, groups=groups,
                        bias=False)
        self.bn = build_norm_layer(dict(BN if norm_cfg is None else norm_cfg), b)[1]
        self.bn.weight.assign(jt.full(self.bn.weight.shape, float(bn_weight_init), 'float32'))
        self.bn.bias.assign(jt.zeros(self.bn.bias.shape, 'float32'))

    def execute(self, x: jt.Var) -> jt.Var:
        return self.bn(self.c(x))


class Mlp(jt.nn.Module):
    """``fc2(act(dwconv(fc1(x))))``."""

    def __init__(self, in_features: int, hidden_features: Optional[int] = None,
                 out_features: Optional[int] = None, act_layer=ReLU6, drop: float = 0.0,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if drop != 0:
            raise InputError(f'Mlp: drop={drop} is not built (Gold-YOLO uses 0)')
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = Conv2d_BN(in_features, hidden_features, norm_cfg=norm_cfg)
        self.dwconv = Conv2d(hidden_features, hidden_features, 3, stride=1, padding=1,
                             groups=hidden_features, bias=True)
        self.act = act_layer()
        self.fc2 = Conv2d_BN(hidden_features, out_features, norm_cfg=norm_cfg)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class Attention(jt.nn.Module):
    """Multi-head self-attention over the ``H * W`` positions (no scaling, see the module doc).

    Args:
        dim (int): Channels in and out.
        key_dim (int): Channels of q and k per head.
        num_heads (int): Heads.
        attn_ratio (float): Channels of v per head are ``int(attn_ratio * key_dim)``.
        activation: Activation class of ``proj.0``.
        norm_cfg (dict, optional): Norm of the Conv2d_BNs (``None``: BN).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float = 4,
                 activation=ReLU6, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5  # kept for the original's attribute; never applied
        self.key_dim = key_dim
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.attn_ratio = attn_ratio
        self.to_q = Conv2d_BN(dim, self.nh_kd, 1, norm_cfg=norm_cfg)
        self.to_k = Conv2d_BN(dim, self.nh_kd, 1, norm_cfg=norm_cfg)
        self.to_v = Conv2d_BN(dim, self.dh, 1, norm_cfg=norm_cfg)
        self.proj = jt.nn.Sequential(activation(), Conv2d_BN(self.dh, dim, bn_weight_init=0,
                                                             norm_cfg=norm_cfg))

    def execute(self, x: jt.Var) -> jt.Var:
        b, _, h, w = x.shape
        # (b, heads, channels, h * w) as the convs give them; the products take the transposes
        # as flags (q^T @ k, attn @ v^T) instead of copies
        q = self.to_q(x).reshape(b, self.num_heads, self.key_dim, h * w)
        k = self.to_k(x).reshape(b, self.num_heads, self.key_dim, h * w)
        v = self.to_v(x).reshape(b, self.num_heads, self.d, h * w)
        attn = softmax_last_dim(batched_matmul(q, k, transpose_a=True))
        out = batched_matmul(attn, v, transpose_b=True).transpose(0, 1, 3, 2)
        out = out.reshape(b, self.dh, h, w)
        return self.proj(out)


class top_Block(jt.nn.Module):  # noqa: N801
    """``x + drop_path(attn(x))``, then ``x + drop_path(mlp(x))``."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 attn_ratio: float = 2.0, drop: float = 0.0, drop_path: float = 0.0,
                 act_layer=ReLU6, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.dim, self.num_heads, self.mlp_ratio = dim, num_heads, mlp_ratio
        self.attn = Attention(dim, key_dim, num_heads, attn_ratio, act_layer, norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else jt.nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop,
                       norm_cfg=norm_cfg)

    def execute(self, x: jt.Var) -> jt.Var:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


class TopBasicLayer(jt.nn.Module):
    """``block_num`` :class:`top_Block` in ``transformer_blocks``.

    Args:
        drop_path (float | Sequence[float]): One rate, or one per block (Gold-YOLO:
            ``linspace(0, drop_path_rate, block_num)``).
        attn_drop (float): Unused, as in the original.
    """

    def __init__(self, block_num: int, embedding_dim: int, key_dim: int, num_heads: int,
                 mlp_ratio: float = 4.0, attn_ratio: float = 2.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: Union[float, Sequence[float]] = 0.0,
                 norm_cfg: Optional[dict] = None, act_layer=ReLU6) -> None:
        super().__init__()
        rates = list(drop_path) if isinstance(drop_path, (list, tuple)) else \
            [drop_path] * block_num
        if len(rates) != block_num:
            raise InputError(f'TopBasicLayer: {len(rates)} drop-path rates for {block_num} blocks')
        self.block_num = block_num
        self.transformer_blocks = jt.nn.ModuleList([
            top_Block(embedding_dim, key_dim, num_heads, mlp_ratio, attn_ratio, drop, rates[i],
                      act_layer, norm_cfg) for i in range(block_num)])

    def execute(self, x: jt.Var) -> jt.Var:
        for block in self.transformer_blocks:
            x = block(x)
        return x
