"""Jittor-side registries for task modules (assigners, samplers, coders, prior generators) and
losses.

A Jittor detector builds its training helpers from the same config dicts that mmdet uses, e.g.
``dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3)``. Those names belong to mmdet's own
``TASK_UTILS``/``MODELS`` registries, where they build PyTorch implementations; the registries here
map the *same* names to the Jittor implementations, so a Jittor component reads an unchanged mmdet
config. They are separate mmengine :class:`~mmengine.registry.Registry` objects (no parent), so the
Jittor classes never shadow mmdet's.

Both registries live in this one module (the losses package imports its registry from here).
"""
import inspect
from typing import Any, Optional

from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry

JITTOR_TASK_UTILS = Registry(
    'jittor task util',
    scope='jt_mm_plugins',
    locations=['jt_mm_plugins.models.task_modules'])
JITTOR_LOSSES = Registry(
    'jittor loss', scope='jt_mm_plugins', locations=['jt_mm_plugins.models.losses'])


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


def build_from_registry(cfg: Any, registry: Registry, default_args: Optional[dict] = None) -> Any:
    """Build an object from ``cfg`` in ``registry``, with errors that name the culprit.

    Compared with :func:`mmengine.registry.build_from_cfg` this says which types exist when the type
    is unknown, and which keys the class accepts when the config has an unexpected one.

    Args:
        cfg (dict | ConfigDict): Config with a ``type`` key (a registered name or a class).
        registry (Registry): Registry to look the type up in.
        default_args (dict, optional): Arguments used where ``cfg`` has none of the same name.
            Defaults to None.

    Returns:
        object: The built object.
    """
    if not isinstance(cfg, (dict, ConfigDict, Config)):
        raise TypeError(f'{registry.name}: the config must be a dict, got {type(cfg).__name__}: '
                        f'{cfg!r}')
    args = dict(cfg)
    for name, value in (default_args or {}).items():
        args.setdefault(name, value)
    if 'type' not in args:
        raise KeyError(f'{registry.name}: the config has no "type" key: {dict(cfg)!r}')
    args.pop('_scope_', None)
    obj_type = args.pop('type')
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type)
        if obj_cls is None:
            available = ', '.join(sorted(registry.module_dict))
            raise KeyError(f'"{obj_type}" is not a registered Jittor {registry.name} '
                           f'(registry {registry.scope}::{registry.name}). Available: {available}')
    elif inspect.isclass(obj_type):
        obj_cls = obj_type
    else:
        raise TypeError(f'{registry.name}: "type" must be a name or a class, got {obj_type!r}')

    accepted = _accepted_init_args(obj_cls)
    if accepted is not None:
        unexpected = sorted(set(args) - accepted)
        if unexpected:
            raise TypeError(f'{obj_cls.__name__} (Jittor {registry.name}) got unexpected config '
                            f'key(s) {unexpected}; it accepts {sorted(accepted)}')
    return obj_cls(**args)


def build_jittor_task_module(cfg: Any, default_args: Optional[dict] = None) -> Any:
    """Build a Jittor task module (assigner, sampler, coder, prior generator) from an mmdet config.

    Args:
        cfg (dict | ConfigDict): e.g. ``dict(type='MaxIoUAssigner', pos_iou_thr=0.7, ...)``.
        default_args (dict, optional): Defaults for keys ``cfg`` lacks. Defaults to None.

    Returns:
        object: The Jittor implementation registered under ``cfg['type']``.
    """
    return build_from_registry(cfg, JITTOR_TASK_UTILS, default_args)


def build_jittor_loss(cfg: Any, default_args: Optional[dict] = None) -> Any:
    """Build a Jittor loss module from an mmdet loss config.

    Args:
        cfg (dict | ConfigDict): e.g. ``dict(type='CrossEntropyLoss', use_sigmoid=True)``.
        default_args (dict, optional): Defaults for keys ``cfg`` lacks. Defaults to None.

    Returns:
        jittor.nn.Module: The Jittor loss registered under ``cfg['type']``.
    """
    return build_from_registry(cfg, JITTOR_LOSSES, default_args)
