"""NanoDet's activation names (``activation='LeakyReLU'``) as mmcv-style activation configs.

NanoDet's modules take an activation *name* (``nanodet/model/module/activation.py``,
``act_layers``) where mmcv takes an ``act_cfg`` dict; its ``'LeakyReLU'`` has a negative slope of
**0.1** (torch's default is 0.01) and ``None`` means no activation. :func:`act_cfg_from_name` turns
such a name into the config :func:`~jt_mm_plugins.models.layers.activation.build_activation_layer`
builds; a dict passes through unchanged, so the Jittor NanoDet components also take an mmcv
``act_cfg``.
"""
from typing import Dict, Optional, Union

from jt_mm_plugins.utils.errors import InputError

# NanoDet's names -> the layer with NanoDet's arguments (its act_layers; SELU is not implemented
# in this package's activations).
_NANODET_ACTIVATIONS: Dict[str, dict] = {
    'ReLU': dict(type='ReLU'),
    'LeakyReLU': dict(type='LeakyReLU', negative_slope=0.1),
    'ReLU6': dict(type='ReLU6'),
    'ELU': dict(type='ELU'),
    'GELU': dict(type='GELU'),
    'PReLU': dict(type='PReLU'),
    'SiLU': dict(type='SiLU'),
    'HardSwish': dict(type='HSwish'),
    'Hardswish': dict(type='HSwish'),
}


def act_cfg_from_name(activation: Union[str, dict, None],
                      owner: str = 'activation') -> Optional[dict]:
    """The mmcv-style activation config of a NanoDet activation name.

    Args:
        activation (str | dict | None): A NanoDet name (``'ReLU'``, ``'LeakyReLU'`` (slope 0.1),
            ``'ReLU6'``, ``'ELU'``, ``'GELU'``, ``'PReLU'``, ``'SiLU'``, ``'HardSwish'``), an
            mmcv ``act_cfg`` dict (returned as a copy), or None (no activation).
        owner (str): Names the caller in error messages.

    Returns:
        dict | None: The config, or None for no activation.
    """
    if activation is None:
        return None
    if isinstance(activation, dict):
        if 'type' not in activation:
            raise InputError(f'{owner}: an activation config needs a "type", got {activation!r}')
        return dict(activation)
    if not isinstance(activation, str) or activation not in _NANODET_ACTIVATIONS:
        raise InputError(f'{owner}: unknown activation {activation!r}; use one of '
                         f'{sorted(_NANODET_ACTIVATIONS)}, None, or an mmcv act_cfg dict')
    return dict(_NANODET_ACTIVATIONS[activation])
