"""A torch module that owns a Jittor module's state and runs its computation in Jittor."""
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModule

from jt_mm_plugins.runtime import jt
from .function import call_jittor
from .mirrors import JittorAttributeView, make_mirror, sync_train_mode
from .tensors import (JITTOR_TO_TORCH_DTYPE, flatten_structure, jittor_to_torch,
                      torch_to_jittor)

# Jittor Vars under these names are running statistics: torch buffers, never trained. A Jittor module
# names more of its Vars that its twin registers as buffers in ``_torch_buffers`` (a tuple of
# attribute names, e.g. GFL's ``Integral.project``), so module walks and optimizers see the twin's.
BUFFER_NAMES = ('running_mean', 'running_var', 'num_batches_tracked')
# Jittor has no 0-d Vars; torch (and every mmdet checkpoint) stores these as scalars. A Jittor module
# names more of its (1,)-shaped Vars that are 0-d on the torch side in ``_torch_0d_vars`` (a tuple of
# attribute names, e.g. mmcv's ``Scale.scale``), so the twin's checkpoints load strictly.
SCALAR_BUFFER_NAMES = ('num_batches_tracked', )


def _all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinity in a tensor (True for non-float and empty ones). One pass: NaN propagates
    into both the minimum and the maximum, and an infinity is one of them."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor.detach())
    return bool(torch.isfinite(low) & torch.isfinite(high))


class _StateEntry:
    __slots__ = ('name', 'owner', 'attr', 'var', 'tensor', 'is_buffer', 'synced')

    def __init__(self, name: str, owner: 'jt.nn.Module', var: 'jt.Var', tensor: torch.Tensor,
                 is_buffer: bool):
        self.name, self.owner, self.var, self.tensor = name, owner, var, tensor
        self.attr = name.rsplit('.', 1)[-1]
        self.is_buffer = is_buffer
        self.synced: Optional[Tuple] = None

    def replace_var(self, var: 'jt.Var') -> None:
        # A new Var object rather than ``assign`` into the old one: a Jittor graph still held by an
        # earlier autograd node (retain_graph, gradcheck) must keep seeing the values it was built on.
        setattr(self.owner, self.attr, var)
        self.var = var

    def torch_state_key(self) -> Tuple:
        # In-place updates (optimizer steps, load_state_dict) bump _version; ``.data =`` or
        # ``.to()``/``.double()`` change the storage, dtype or device.
        t = self.tensor
        return (t._version, t.data_ptr(), t.dtype, t.device)


class JittorModuleWrapper(JittorAttributeView, BaseModule):
    """Bridged Jittor module: PyTorch owns the state, Jittor does the computation.

    Every Jittor submodule is mirrored by a torch module of its twin's type (``torch.nn.BatchNorm2d``
    for a Jittor batch norm, see :mod:`.mirrors`) and every Jittor Var by a torch parameter (or
    buffer, for running statistics) under the same dotted name, so mmengine's optimizer constructor
    (``paramwise_cfg``), ``init_cfg`` and module walks see the twin's structure, the public data
    attributes of the Jittor module are readable here (``num_outs``), ``state_dict()`` keys equal the
    Jittor module's and an mmengine checkpoint, ``init_cfg=dict(type='Pretrained', ...)``,
    optimizers, gradient clipping and ``load_from`` all work on the torch side unchanged.
    ``forward`` pushes parameter values that changed since the last step to Jittor, runs the Jittor
    module as one autograd node (see :func:`call_jittor`), and after a training forward copies
    updated running statistics back.

    Subclasses made by :func:`register_jittor_module` set ``jittor_class`` and build it from the
    config's keyword arguments; :meth:`from_jittor_module` wraps an existing Jittor module.

    Args:
        *args, **kwargs: Passed to ``jittor_class``.
        init_cfg (dict or list[dict], optional): mmengine initialisation config of the torch side.
    """
    jittor_class = None
    # A training forward whose outputs hold NaN or infinity raises FloatingPointError (see
    # _check_outputs_finite). A component whose outputs may be infinite by design (e.g. -inf masks)
    # sets this to False on its bridged class: ``MyModule.bridged.check_finite_outputs = False``.
    check_finite_outputs = True

    def __init__(self, *args, init_cfg: Optional[Union[dict, List[dict]]] = None, **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        if self.jittor_class is None:
            raise TypeError('JittorModuleWrapper is abstract: register a Jittor module with '
                            '@register_jittor_module() or use JittorModuleWrapper.from_jittor_module')
        self._attach(self.jittor_class(*args, **kwargs))

    @classmethod
    def from_jittor_module(cls, module: 'jt.nn.Module',
                           init_cfg: Optional[dict] = None) -> 'JittorModuleWrapper':
        """Wrap an already built Jittor module."""
        wrapper = cls.__new__(cls)
        BaseModule.__init__(wrapper, init_cfg=init_cfg)
        wrapper._attach(module)
        return wrapper

    def _attach(self, module: 'jt.nn.Module') -> None:
        if not isinstance(module, jt.nn.Module):
            raise TypeError(f'expected a jittor.nn.Module, got {type(module).__name__}')
        self.jittor_module = module  # not a torch Module: a plain attribute
        self._state_entries: List[_StateEntry] = []
        owners = dict(module.named_modules())
        for name, sub in owners.items():  # pre-order: a parent's mirror exists before its children's
            if name:
                self._container_for(name).add_module(
                    name.rpartition('.')[2], make_mirror(sub, f'{type(module).__name__}.{name}'))
        for name, var in module.named_parameters():
            leaf = name.rsplit('.', 1)[-1]
            owner = owners[name.rsplit('.', 1)[0]] if '.' in name else module
            is_buffer = leaf in BUFFER_NAMES or leaf in getattr(owner, '_torch_buffers', ())
            tensor = jittor_to_torch(var)
            if leaf in SCALAR_BUFFER_NAMES or leaf in getattr(owner, '_torch_0d_vars', ()):
                tensor = tensor.reshape(())
            parent = self._container_for(name)
            if is_buffer:
                parent.register_buffer(leaf, tensor)
            else:
                parent.register_parameter(
                    leaf, torch.nn.Parameter(tensor, requires_grad=var.requires_grad))
            # Look the tensor up again: register_* may have wrapped it.
            registered = getattr(parent, leaf)
            if owner.__dict__.get(leaf) is not var:
                raise TypeError(f'{type(module).__name__}.{name}: the bridge supports Vars held as '
                                f'plain module attributes only')
            entry = _StateEntry(name, owner, var, registered, is_buffer)
            entry.synced = entry.torch_state_key()
            self._state_entries.append(entry)
        self.train(module.is_training())

    def jittor_target(self) -> Optional['jt.nn.Module']:
        return self.__dict__.get('jittor_module')

    def _container_for(self, name: str) -> torch.nn.Module:
        """The torch module holding the tensor (or submodule) with the dotted ``name``."""
        parent: torch.nn.Module = self
        for part in name.split('.')[:-1]:
            parent = parent._modules[part]
        return parent

    def _refresh_entries(self) -> None:
        """Re-read the registered tensors: ``.to()``/``.double()``/``.cuda()`` replace them."""
        for entry in self._state_entries:
            holder = self._container_for(entry.name)
            entry.tensor = getattr(holder, entry.name.rsplit('.', 1)[-1])

    def _push_state_to_jittor(self) -> None:
        self._refresh_entries()
        for entry in self._state_entries:
            key = entry.torch_state_key()
            if key != entry.synced:
                var = torch_to_jittor(entry.tensor.reshape(tuple(entry.var.shape)))
                if entry.is_buffer:
                    var.stop_grad()
                entry.replace_var(var)
                entry.synced = key
            if not entry.is_buffer and entry.var.requires_grad != entry.tensor.requires_grad:
                # Frozen in torch means no gradient work in Jittor either.
                entry.var.requires_grad = entry.tensor.requires_grad
                if not entry.tensor.requires_grad:
                    entry.var.stop_grad()

    def _pull_buffers_from_jittor(self) -> None:
        buffers = [entry for entry in self._state_entries if entry.is_buffer]
        if buffers:
            jt.sync([entry.var for entry in buffers])  # one graph execution for all of them
        with torch.no_grad():
            for entry in buffers:
                value = jittor_to_torch(entry.var, entry.tensor.device)
                entry.tensor.copy_(value.reshape(entry.tensor.shape))
                entry.synced = entry.torch_state_key()

    def train(self, mode: bool = True) -> 'JittorModuleWrapper':
        super().train(mode)
        module = self.__dict__.get('jittor_module')
        if module is not None:
            sync_train_mode(self, module, mode)
        return self

    def run_jittor(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` (the Jittor module or one of its methods) as one differentiable torch op,
        with the Jittor state in step with the torch-owned parameters and buffers."""
        self._push_state_to_jittor()
        trainable = [(e.var, e.tensor) for e in self._state_entries
                     if not e.is_buffer and e.tensor.requires_grad]
        outputs = call_jittor(fn, args, kwargs, trainable)
        if self.training:
            self._pull_buffers_from_jittor()
        return outputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self.run_jittor(self.jittor_module, *args, **kwargs)
        if self.training and self.check_finite_outputs:
            self._check_outputs_finite(args, kwargs, outputs)
        return outputs

    def _check_outputs_finite(self, args: Any, kwargs: Any, outputs: Any) -> None:
        """Raise ``FloatingPointError`` naming this module when a training forward produced NaN or
        infinity, and saying where it came from: the inputs, the parameters, or the computation.

        Without it a NaN from a Jittor backbone surfaces only as a NaN loss in mmdet's heads.
        """
        def non_finite(obj: Any) -> List[str]:
            tensors = flatten_structure(obj, torch.is_tensor)
            return [f'{i} {tuple(t.shape)}' for i, t in enumerate(tensors) if not _all_finite(t)]

        bad_outputs = non_finite(outputs)
        if not bad_outputs:
            return
        name = type(self.jittor_module).__name__
        bad_inputs = non_finite((args, kwargs))
        # Parameters only: a training forward has just rewritten the running statistics (from
        # non-finite values too, when its inputs or parameters were).
        bad_state = [n for n, t in self.named_parameters() if not _all_finite(t)]
        if bad_inputs:
            cause = f'its inputs already were (input {", ".join(bad_inputs)}): look upstream'
        elif bad_state:
            cause = (f'its parameters are not finite: {", ".join(bad_state[:5])}'
                     + (f' and {len(bad_state) - 5} more' if len(bad_state) > 5 else '')
                     + ' (a diverged optimizer step? lower the learning rate or clip gradients)')
        else:
            cause = 'its inputs and parameters are finite, so the computation overflowed'
        raise FloatingPointError(f'{name} (Jittor, bridged): training output '
                                 f'{", ".join(bad_outputs)} is not finite; {cause}')

    def extra_repr(self) -> str:
        return f'jittor_module={type(self.jittor_module).__name__}'


def state_dict_to_jittor(module: 'jt.nn.Module', state_dict: Dict[str, torch.Tensor],
                         strict: bool = True) -> None:
    """Load a torch state dict into a bare Jittor module (no bridge), checking keys and shapes."""
    own = dict(module.named_parameters())
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if strict and (missing or unexpected):
        raise KeyError(f'state dict does not match {type(module).__name__}: missing keys {missing}, '
                       f'unexpected keys {unexpected}')
    for name, value in state_dict.items():
        if name not in own:
            continue
        var = own[name]
        if value.numel() != var.numel():
            raise ValueError(f'size mismatch for {name}: checkpoint {tuple(value.shape)}, '
                             f'{type(module).__name__} {tuple(var.shape)}')
        value = value.reshape(tuple(var.shape)).to(JITTOR_TO_TORCH_DTYPE[str(var.dtype)])
        var.assign(torch_to_jittor(value))
