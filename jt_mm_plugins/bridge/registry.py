"""Two registries, one name space: Jittor modules are built Jittor-side (:data:`JITTOR_MODELS`,
:mod:`jt_mm_plugins.registry`) and bridged torch-side (mmdet's ``MODELS``)."""
from typing import Optional, Type, Union

from mmdet.registry import MODELS

from jt_mm_plugins.registry import JITTOR_MODELS, resolve_type
from jt_mm_plugins.runtime import jt
from .module import JittorModuleWrapper


def jittor_type(type_name: Union[str, type]) -> Union[str, type]:
    """The Jittor registry name for a config ``type``, accepting mmdet's names.

    Inside a Jittor parent a config written for mmdet (``'SingleRoIExtractor'``) must build the Jittor
    twin (``'JittorSingleRoIExtractor'``): see :func:`jt_mm_plugins.registry.resolve_type`. Jittor
    module classes pass through.
    """
    if isinstance(type_name, type) and issubclass(type_name, jt.nn.Module):
        return type_name
    if not isinstance(type_name, str):
        raise TypeError(f'a Jittor module type must be a name or a jittor.nn.Module class, got '
                        f'{type_name!r}')
    return resolve_type(type_name, JITTOR_MODELS)[0]


def build_jittor_module(cfg: dict, **default_args) -> 'jt.nn.Module':
    """Build a Jittor module from a config dict such as ``dict(type='JittorFPN', ...)`` (mmdet's
    names work too, see :func:`jittor_type`): ``JITTOR_MODELS.build``."""
    return JITTOR_MODELS.build(cfg, default_args=default_args)


def register_jittor_module(name: Optional[str] = None, bridge: bool = True, force: bool = False,
                           bridge_base: Type[JittorModuleWrapper] = JittorModuleWrapper):
    """Class decorator registering a Jittor module under ``name`` (default: the class name).

    It goes into :data:`JITTOR_MODELS`; with ``bridge=True`` a subclass of ``bridge_base`` (a
    :class:`JittorModuleWrapper`) of the same name also goes into mmdet's ``MODELS``, so any mmdet
    config or mmdet-side parent can build it with ``dict(type=name, ...)``. The wrapper class is
    reachable as ``cls.bridged``. ``bridge_base`` adds an mmdet-facing interface, e.g.
    :class:`~jt_mm_plugins.bridge.heads.BridgedDenseHead` for heads used by mmdet's detectors.
    """

    def decorator(cls: Type) -> Type:
        if not (isinstance(cls, type) and issubclass(cls, jt.nn.Module)):
            raise TypeError(f'register_jittor_module expects a jittor.nn.Module subclass, got {cls!r}')
        type_name = name or cls.__name__
        JITTOR_MODELS.register_module(name=type_name, module=cls, force=force)
        if bridge:
            if not issubclass(bridge_base, JittorModuleWrapper):
                raise TypeError(f'bridge_base must subclass JittorModuleWrapper, got {bridge_base!r}')
            wrapper = type(type_name, (bridge_base, ), {
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
