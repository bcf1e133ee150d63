"""The torch-side structure of a bridged Jittor module: one mirror module per Jittor submodule.

mmdet and mmengine decide things by walking torch modules: the optimizer constructor gives norm layers
``norm_decay_mult`` and depthwise convolutions ``dwconv_decay_mult`` by their type
(``isinstance(m, _BatchNorm)``, ``m.in_channels == m.groups``), ``init_cfg=dict(type='Kaiming',
layer='Conv2d')`` matches class names, ``norm_eval`` code calls ``m.eval()`` on every ``_BatchNorm``.
So a bridged module shows, for every Jittor submodule, a torch module of the twin's type holding that
submodule's parameters and buffers under the same dotted name (a Jittor ``BatchNorm2d`` appears as a
``torch.nn.BatchNorm2d``, a Jittor ``Conv2d`` as a ``torch.nn.Conv2d`` whose ``in_channels`` and
``groups`` are the Jittor layer's).

A mirror never computes: calling it raises, since the computation runs in Jittor when the bridged root
module is called. Its public non-tensor attributes are the Jittor module's (read and written through),
its ``train()``/``eval()`` switch the Jittor submodule, and replacing it with another torch module
(``torch.nn.SyncBatchNorm.convert_sync_batchnorm``) raises instead of silently doing nothing.
"""
from typing import Any, Dict, List, Optional, Tuple, Type

import torch

from jt_mm_plugins.runtime import jt

# (Jittor class, torch class): a Jittor submodule is mirrored by the torch class of its first match.
_MIRROR_TYPES: List[Tuple[type, type]] = []
_MIRROR_CLASSES: Dict[type, type] = {}
_MISSING = object()


def register_torch_mirror(torch_class: Type[torch.nn.Module]):
    """Class decorator: bridged instances of this Jittor class (and its subclasses) appear in torch
    module walks as ``torch_class`` (e.g. ``torch.nn.BatchNorm2d`` for a Jittor batch norm)."""

    def decorator(jittor_class: type) -> type:
        if not (isinstance(jittor_class, type) and issubclass(jittor_class, jt.nn.Module)):
            raise TypeError(f'register_torch_mirror expects a jittor.nn.Module subclass, got '
                            f'{jittor_class!r}')
        if not (isinstance(torch_class, type) and issubclass(torch_class, torch.nn.Module)):
            raise TypeError(f'register_torch_mirror: {torch_class!r} is not a torch.nn.Module class')
        # Most recent first, so a subclass registered after its base wins.
        _MIRROR_TYPES.insert(0, (jittor_class, torch_class))
        return jittor_class

    return decorator


for _jittor_class, _torch_class in (
        (jt.nn.Sequential, torch.nn.Sequential),  # Jittor's ModuleList is Sequential
        (jt.nn.Conv, torch.nn.Conv2d),
        (jt.nn.Conv1d, torch.nn.Conv1d),
        (jt.nn.ConvTranspose, torch.nn.ConvTranspose2d),
        (jt.nn.Linear, torch.nn.Linear),
        (jt.nn.Embedding, torch.nn.Embedding),
        (jt.nn.BatchNorm, torch.nn.BatchNorm2d),
        (jt.nn.InstanceNorm, torch.nn.InstanceNorm2d),
        (jt.nn.LayerNorm, torch.nn.LayerNorm),
        (jt.nn.GroupNorm, torch.nn.GroupNorm),
):
    register_torch_mirror(_torch_class)(_jittor_class)


_DATA_TYPES = (bool, int, float, complex, str, bytes, type(None))


def is_data_attribute(value: Any) -> bool:
    """What a bridged module shows of its Jittor module: data (numbers, strings, None, configs and
    lists of them). Not Vars (their torch tensors are the parameters), submodules (mirrored),
    methods, nor helper objects such as a Jittor box coder, which torch code could not call."""
    if isinstance(value, _DATA_TYPES):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(is_data_attribute(v) for v in value)
    if isinstance(value, dict):  # mmengine's ConfigDict too
        return all(isinstance(k, _DATA_TYPES) and is_data_attribute(v) for k, v in value.items())
    return False


class JittorAttributeView:
    """Mixin for torch modules that stand for a Jittor module (the bridged wrapper and its mirrors).

    Attribute reads that torch cannot answer fall back to the Jittor module's public data attributes
    (``neck.num_outs``, ``head.num_classes``, ``conv.groups``); writes to such an attribute go to the
    Jittor module (``model.bbox_head.use_l1 = True`` from a hook reaches the computation). A child
    mirror cannot be replaced by another torch module: it would never run.
    """

    def jittor_target(self) -> Optional['jt.nn.Module']:
        raise NotImplementedError

    def _jittor_attribute(self, name: str) -> Any:
        target = self.jittor_target() if not name.startswith('_') else None
        if target is None:
            return _MISSING
        value = getattr(target, name, _MISSING)
        return value if value is _MISSING or is_data_attribute(value) else _MISSING

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            value = self._jittor_attribute(name)
            if value is _MISSING:
                raise
            return value

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, torch.nn.Module):
            self._refuse_replacing_mirror(name, value)
        elif (not isinstance(value, torch.Tensor) and name not in self.__dict__
              and self._jittor_attribute(name) is not _MISSING):
            setattr(self.jittor_target(), name, value)
            return
        super().__setattr__(name, value)

    def add_module(self, name: str, module: Optional[torch.nn.Module]) -> None:
        self._refuse_replacing_mirror(name, module)
        super().add_module(name, module)

    def _refuse_replacing_mirror(self, name: str, module: Optional[torch.nn.Module]) -> None:
        existing = self.__dict__.get('_modules', {}).get(name)
        if isinstance(existing, TorchMirror) and module is not existing:
            raise RuntimeError(
                f'{existing.__dict__["_mirror_path"]} is the torch view of a Jittor '
                f'{type(existing.jittor_target()).__name__} inside a bridged Jittor module and '
                f'cannot be replaced by {type(module).__name__}: the computation runs in Jittor, '
                f'so a torch module put here would never run. '
                f'torch.nn.SyncBatchNorm.convert_sync_batchnorm (mmengine\'s sync_bn option) '
                f'cannot convert Jittor layers: configure the Jittor component itself (its '
                f'norm_cfg).')


class TorchMirror(JittorAttributeView, torch.nn.Module):
    """A torch module standing for one Jittor submodule of a bridged module (see the module docs).

    Made by :func:`make_mirror`, as a subclass of the twin's torch class (``torch.nn.BatchNorm2d``...)
    whose ``__init__`` never runs: the parameters are the bridge's, the attributes the Jittor
    module's.
    """

    def jittor_target(self) -> Optional['jt.nn.Module']:
        return self.__dict__.get('_jittor_owner')

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f'{self.__dict__["_mirror_path"]} is the torch view of a Jittor '
            f'{type(self.jittor_target()).__name__} (it holds its parameters): it does not compute. '
            f'Call the bridged Jittor module that contains it.')

    def train(self, mode: bool = True) -> 'TorchMirror':
        sync_train_mode(self, self.jittor_target(), mode)
        return self

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # The generic loader: the twin classes' version upgrades (BatchNorm's num_batches_tracked)
        # read constructor attributes a Jittor layer may not have; the keys are the bridge's.
        torch.nn.Module._load_from_state_dict(self, *args, **kwargs)

    def extra_repr(self) -> str:
        return f'jittor={type(self.jittor_target()).__name__}'


def _mirror_class(torch_class: type) -> type:
    if torch_class not in _MIRROR_CLASSES:
        # The twin's class name, and its direct bases among ours: mmengine's init_cfg matches
        # ``layer='Conv2d'`` / ``layer='_BatchNorm'`` against a class's name and direct bases.
        bases = (TorchMirror, ) if torch_class is torch.nn.Module else \
            (TorchMirror, torch_class) + torch_class.__bases__
        _MIRROR_CLASSES[torch_class] = type(torch_class.__name__, bases, {
            '__module__': __name__,
            '__doc__': f'Torch view of a Jittor layer, typed as ``{torch_class.__module__}.'
                       f'{torch_class.__qualname__}`` for module walks; see :class:`TorchMirror`.'
        })
    return _MIRROR_CLASSES[torch_class]


def make_mirror(jittor_module: 'jt.nn.Module', path: str) -> TorchMirror:
    """An empty torch mirror for ``jittor_module`` (the bridge registers its tensors in it);
    ``path`` (``'JittorFPN.lateral_convs.0.bn'``) names it in error messages."""
    torch_class = next((t for j, t in _MIRROR_TYPES if isinstance(jittor_module, j)),
                       torch.nn.Module)
    cls = _mirror_class(torch_class)
    mirror = cls.__new__(cls)
    torch.nn.Module.__init__(mirror)
    mirror.__dict__['_jittor_owner'] = jittor_module
    mirror.__dict__['_mirror_path'] = path
    return mirror


def set_jittor_train_mode(module: 'jt.nn.Module', mode: bool) -> None:
    """Switch a Jittor module tree to training or evaluation mode with torch's semantics.

    Jittor's ``Module.train()`` flags the whole tree but never calls the children's own ``train()``
    overrides, so a nested backbone's ``norm_eval``/``frozen_stages`` would be lost. Here, after the
    flags are set, every override runs deepest first, so a parent's decision wins as in torch. (Jittor's
    ``eval()`` also stops gradients of every Var; the bridge re-applies torch's ``requires_grad`` before
    each forward, so that has no effect on bridged training.)
    """
    if not mode:
        module.eval()
        return
    jt.nn.Module.train(module)  # the flags only
    for sub in reversed(module.modules()):  # pre-order reversed: children first, ``module`` last
        if type(sub).train is not jt.nn.Module.train:
            sub.train()


def sync_train_mode(torch_root: torch.nn.Module, jittor_root: 'jt.nn.Module', mode: bool) -> None:
    """Put ``jittor_root`` in ``mode`` (its own ``train()`` overrides deciding, e.g. ``norm_eval``)
    and show the result on the torch side: each mirror's ``training`` is its Jittor module's."""
    set_jittor_train_mode(jittor_root, mode)
    for module in torch_root.modules():
        owner = module.jittor_target() if isinstance(module, TorchMirror) else None
        module.training = owner.is_training() if owner is not None else mode
