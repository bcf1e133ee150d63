"""mmcv's ``FFN`` in Jittor: ``identity + dropout_layer(Linear -> act -> drop -> ... -> Linear ->
drop)``, parameter names ``layers.0.0.weight``, ``layers.1.weight`` as mmcv's."""
from typing import Optional

from jt_mm_plugins.bridge.registry import register_jittor_module
from jt_mm_plugins.models.layers.activation import build_activation_layer
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .dropout import build_dropout


@register_jittor_module('JittorFFN')
class FFN(jt.nn.Module):
    """Feed-forward block of transformer layers (mmcv's ``FFN``).

    Args:
        embed_dims (int): Input and output width. Defaults to 256.
        feedforward_channels (int): Hidden width. Defaults to 1024.
        num_fcs (int): Number of linear layers, at least 2. Defaults to 2.
        act_cfg (dict): Activation config. Defaults to ReLU.
        ffn_drop (float): Dropout after each linear layer. Defaults to 0.
        dropout_layer (dict, optional): Dropout config of the residual branch.
        add_identity (bool): Add the input (or ``identity``). Defaults to True.
        init_cfg: Accepted for config compatibility.
        layer_scale_init_value (float): Only 0 (no LayerScale) is supported.
    """

    def __init__(self, embed_dims: int = 256, feedforward_channels: int = 1024, num_fcs: int = 2,
                 act_cfg: Optional[dict] = None, ffn_drop: float = 0.,
                 dropout_layer: Optional[dict] = None, add_identity: bool = True,
                 init_cfg: Optional[dict] = None, layer_scale_init_value: float = 0.) -> None:
        super().__init__()
        if num_fcs < 2:
            raise InputError(f'FFN: num_fcs should be no less than 2, got {num_fcs}')
        if layer_scale_init_value > 0:
            raise NotImplementedError('FFN: LayerScale (layer_scale_init_value > 0) is not '
                                      'implemented in Jittor')
        act_cfg = dict(type='ReLU', inplace=True) if act_cfg is None else act_cfg
        self.embed_dims, self.feedforward_channels, self.num_fcs = (embed_dims,
                                                                    feedforward_channels, num_fcs)
        layers = []
        in_channels = embed_dims
        for _ in range(num_fcs - 1):
            layers.append(jt.nn.Sequential(
                jt.nn.Linear(in_channels, feedforward_channels), build_activation_layer(act_cfg),
                build_dropout(dict(type='Dropout', drop_prob=ffn_drop))))
            in_channels = feedforward_channels
        layers.append(jt.nn.Linear(feedforward_channels, embed_dims))
        layers.append(build_dropout(dict(type='Dropout', drop_prob=ffn_drop)))
        self.layers = jt.nn.Sequential(*layers)
        self.dropout_layer = build_dropout(dropout_layer)
        self.add_identity = add_identity

    def execute(self, x: jt.Var, identity: Optional[jt.Var] = None) -> jt.Var:
        out = self.dropout_layer(self.layers(x))
        if not self.add_identity:
            return out
        return (x if identity is None else identity) + out
