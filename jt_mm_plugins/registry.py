"""The Jittor registries, in one place, built one way.

Two mmengine :class:`~mmengine.registry.Registry` objects mirror mmdet's split:

* :data:`JITTOR_MODELS`: every Jittor ``nn.Module`` a config can name: backbones, necks, heads,
  detectors, and (as mmdet and mmcv keep them in ``MODELS`` too) losses, norm layers, activation
  layers and ``Linear``.
* :data:`JITTOR_TASK_UTILS`: assigners, samplers, box coders, prior generators (mmdet's
  ``TASK_UTILS``).

They have no parent, so a Jittor class never shadows mmdet's: ``dict(type='MaxIoUAssigner')`` builds
mmdet's PyTorch assigner in mmdet's registry and the Jittor one here, from the same config. Both
build through :func:`build_jittor_from_cfg` (``JITTOR_MODELS.build(cfg, default_args=...)``), so an
unknown type, a misspelt key or a config that is not a dict fail the same way everywhere, naming
the registry, the type and what would have been accepted.
"""
import inspect
from typing import Any, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry

from jt_mm_plugins.runtime import jt

#: Prefix of Jittor twins registered beside an mmdet name: ``FPN`` -> ``JittorFPN``.
JITTOR_PREFIX = 'Jittor'


def _accepted_init_args(obj_cls: type) -> Optional[set]:
    """Names ``obj_cls(...)`` accepts as keywords; ``None`` when it takes ``**kwargs``."""
    params = inspect.signature(obj_cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name
        for p in params
        if p.name != 'self' and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           inspect.Parameter.KEYWORD_ONLY)
    }


def resolve_type(obj_type: Any, registry: Registry) -> Tuple[str, type]:
    """The registered name and the class a config's ``type`` stands for in ``registry``.

    A name registered as is wins; otherwise ``'Jittor' + name`` (a config written for mmdet,
    ``'SingleRoIExtractor'``, builds the Jittor twin ``'JittorSingleRoIExtractor'``). A class is
    used as is.

    Raises:
        KeyError: The name is not registered (the message lists what is).
        TypeError: ``type`` is neither a name nor a class.
    """
    if inspect.isclass(obj_type):
        required_base = _REQUIRED_BASES.get(registry.name)
        if required_base is not None and not issubclass(obj_type, required_base):
            raise TypeError(f'{registry.name}: "type" {obj_type!r} is not a {required_base.__module__}.'
                            f'{required_base.__qualname__} subclass (a torch class here is a mix-up: '
                            f'this registry builds Jittor modules)')
        return obj_type.__name__, obj_type
    if not isinstance(obj_type, str):
        raise TypeError(f'{registry.name}: "type" must be a registered name or a class, got '
                        f'{obj_type!r}')
    for candidate in (obj_type, JITTOR_PREFIX + obj_type):
        obj_cls = registry.get(candidate)
        if obj_cls is not None:
            return candidate, obj_cls
    available = ', '.join(sorted(registry.module_dict))
    raise KeyError(f'"{obj_type}" is not a registered Jittor {registry.name} (neither '
                   f'"{obj_type}" nor "{JITTOR_PREFIX + obj_type}" is in '
                   f'{registry.scope}::{registry.name}). Available: {available}')


def config_args(cfg: Any, registry: Registry, default_args: Optional[dict] = None) -> dict:
    """``cfg`` as a plain dict with ``default_args`` filled in, checked to be a config with a
    ``type``."""
    if not isinstance(cfg, (dict, ConfigDict, Config)):
        raise TypeError(f'{registry.name}: the config must be a dict, got {type(cfg).__name__}: '
                        f'{cfg!r}')
    args = dict(cfg)
    for name, value in (default_args or {}).items():
        args.setdefault(name, value)
    if 'type' not in args:
        raise KeyError(f'{registry.name}: the config has no "type" key: {dict(cfg)!r}')
    args.pop('_scope_', None)
    return args


def instantiate(obj_cls: type, args: dict, registry: Registry) -> Any:
    """``obj_cls(**args)``, refusing keys the class does not accept by naming them."""
    accepted = _accepted_init_args(obj_cls)
    if accepted is not None:
        unexpected = sorted(set(args) - accepted)
        if unexpected:
            raise TypeError(f'{obj_cls.__name__} (Jittor {registry.name}) got unexpected config '
                            f'key(s) {unexpected}; it accepts {sorted(accepted)}')
    return obj_cls(**args)


def build_jittor_from_cfg(cfg: Any, registry: Registry, default_args: Optional[dict] = None) -> Any:
    """Build an object from an mmdet-style config in a Jittor registry (the registries'
    ``build_func``: call ``REGISTRY.build(cfg, default_args=...)``).

    Args:
        cfg (dict | ConfigDict): Config with a ``type`` key (a registered name, mmdet's name of a
            Jittor twin, or a class) and the class's keyword arguments.
        registry (Registry): :data:`JITTOR_MODELS` or :data:`JITTOR_TASK_UTILS`.
        default_args (dict, optional): Arguments used where ``cfg`` has none of the same name.

    Returns:
        object: The built object.
    """
    args = config_args(cfg, registry, default_args)
    _, obj_cls = resolve_type(args.pop('type'), registry)
    return instantiate(obj_cls, args, registry)


JITTOR_MODELS = Registry(
    'jittor model', scope='jt_mm_plugins', build_func=build_jittor_from_cfg,
    locations=['jt_mm_plugins.models'])
JITTOR_TASK_UTILS = Registry(
    'jittor task util', scope='jt_mm_plugins', build_func=build_jittor_from_cfg,
    locations=['jt_mm_plugins.models.task_modules'])
#: What a class given as ``type`` must subclass, per registry name.
_REQUIRED_BASES = {JITTOR_MODELS.name: jt.nn.Module}


def build_jittor_loss(cfg: Any, default_args: Optional[dict] = None) -> Any:
    """A Jittor loss from an mmdet loss config (``dict(type='GIoULoss', loss_weight=2.0)``)."""
    return JITTOR_MODELS.build(cfg, default_args=default_args)


def build_jittor_task_module(cfg: Any, default_args: Optional[dict] = None) -> Any:
    """A Jittor assigner / sampler / coder / prior generator from an mmdet ``TASK_UTILS`` config."""
    return JITTOR_TASK_UTILS.build(cfg, default_args=default_args)
