"""Two registries, one name space: Jittor modules are built Jittor-side and bridged torch-side."""
from typing import Optional, Type, Union

from mmdet.registry import MODELS
from mmengine.registry import Registry

from jt_mm_plugins.runtime import jt
from .module import JittorModuleWrapper

#: Jittor modules by type name; a Jittor parent (e.g. a Jittor detector) builds its Jittor children here.
JITTOR_MODELS = Registry('jittor model', locations=['jt_mm_plugins.models'])


JITTOR_PREFIX = 'Jittor'  # Jittor twins of mmdet modules: FPN -> JittorFPN


def jittor_type(type_name: Union[str, type]) -> Union[str, type]:
    """The Jittor registry name for a config ``type``, accepting mmdet's names.

    Inside a Jittor parent a config written for mmdet (``'SingleRoIExtractor'``) must build the Jittor
    twin (``'JittorSingleRoIExtractor'``): a name registered in :data:`JITTOR_MODELS` is used as is,
    otherwise ``'Jittor' + name`` when that is registered. Jittor module classes pass through.
    """
    if isinstance(type_name, type) and issubclass(type_name, jt.nn.Module):
        return type_name
    if not isinstance(type_name, str):
        raise TypeError(f'a Jittor module type must be a name or a jittor.nn.Module class, got '
                        f'{type_name!r}')
    registered = JITTOR_MODELS.module_dict
    for candidate in (type_name, JITTOR_PREFIX + type_name):
        if candidate in registered:
            return candidate
    raise KeyError(f'{type_name!r} has no Jittor implementation: neither {type_name!r} nor '
                   f'{JITTOR_PREFIX + type_name!r} is registered. Available: {sorted(registered)}')


def build_jittor_module(cfg: dict, **default_args) -> 'jt.nn.Module':
    """Build a Jittor module from a config dict such as ``dict(type='JittorFPN', ...)`` (mmdet's
    names work too, see :func:`jittor_type`)."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'a Jittor module config must be a dict with a "type" key, got {cfg!r}')
    args = dict(default_args)
    args.update(cfg)
    args.pop('_scope_', None)
    module_type = jittor_type(args.pop('type'))
    # Instantiated directly rather than through Registry.build, whose default-scope logic (mmdet's
    # configs set default_scope='mmdet') does not apply to this package-private registry.
    module_cls = module_type if isinstance(module_type, type) else JITTOR_MODELS.get(module_type)
    try:
        return module_cls(**args)
    except TypeError as err:
        raise TypeError(f'{module_cls.__name__}: {err}') from err


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
