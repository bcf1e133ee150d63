"""Two registries, one name space: Jittor modules are built Jittor-side and bridged torch-side."""
from typing import Optional, Type

from mmdet.registry import MODELS
from mmengine.registry import Registry

from jt_mm_plugins.runtime import jt
from .module import JittorModuleWrapper

#: Jittor modules by type name; a Jittor parent (e.g. a Jittor detector) builds its Jittor children here.
JITTOR_MODELS = Registry('jittor model', locations=['jt_mm_plugins.models'])


def build_jittor_module(cfg: dict, **default_args) -> 'jt.nn.Module':
    """Build a Jittor module from a config dict such as ``dict(type='JittorFPN', ...)``."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'a Jittor module config must be a dict with a "type" key, got {cfg!r}')
    if cfg['type'] not in JITTOR_MODELS.module_dict:
        raise KeyError(f'{cfg["type"]!r} is not a registered Jittor module; available: '
                       f'{sorted(JITTOR_MODELS.module_dict)}')
    return JITTOR_MODELS.build(cfg, default_args=default_args or None)


def register_jittor_module(name: Optional[str] = None, bridge: bool = True, force: bool = False):
    """Class decorator registering a Jittor module under ``name`` (default: the class name).

    It goes into :data:`JITTOR_MODELS`; with ``bridge=True`` a :class:`JittorModuleWrapper` subclass of
    the same name also goes into mmdet's ``MODELS``, so any mmdet config or mmdet-side parent can build
    it with ``dict(type=name, ...)``. The wrapper class is reachable as ``cls.bridged``.
    """

    def decorator(cls: Type) -> Type:
        if not (isinstance(cls, type) and issubclass(cls, jt.nn.Module)):
            raise TypeError(f'register_jittor_module expects a jittor.nn.Module subclass, got {cls!r}')
        type_name = name or cls.__name__
        JITTOR_MODELS.register_module(name=type_name, module=cls, force=force)
        if bridge:
            wrapper = type(type_name, (JittorModuleWrapper, ), {
                'jittor_class': cls,
                '__module__': cls.__module__,
                '__qualname__': f'{cls.__qualname__}.bridged',
                '__doc__': f'Bridged (PyTorch-facing) ``{type_name}``; the computation runs in '
                           f'Jittor.\n\n{cls.__doc__ or ""}',
            })
            MODELS.register_module(name=type_name, module=wrapper, force=force)
            cls.bridged = wrapper
        return cls

    return decorator
