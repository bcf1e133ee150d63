"""Run a Jittor computation as one differentiable torch operation.

``call_jittor(fn, args, kwargs, params)`` converts every torch tensor found in ``args``/``kwargs``
(nested lists, tuples and dicts included) to Jittor, runs ``fn`` on them, converts its outputs (any
nesting, any number, integer ones included) back to torch, and registers one
``torch.autograd.Function`` node. Its backward asks Jittor for the vector-Jacobian product with
``jt.grad`` and returns gradients for the tensor inputs and for ``params``: torch tensors that stand
for the Jittor Vars ``fn`` reads (a bridged module's weights), so torch's optimizer owns them.

The Jittor graph lives on the autograd context, so it is freed together with the torch graph of the
step (when its outputs are dropped): Jittor graphs never outlive their training step.
"""
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from jt_mm_plugins.runtime import jt
from .tensors import flatten_structure, jittor_to_torch, map_structure, torch_to_jittor


def _replace_leaves(obj: Any, is_leaf: Callable[[Any], bool], new_leaves: Sequence[Any]) -> Any:
    it = iter(new_leaves)
    return map_structure(lambda x: next(it) if is_leaf(x) else x, obj)


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _is_var(x: Any) -> bool:
    return isinstance(x, jt.Var)


def _is_float(dtype: Any) -> bool:
    return str(dtype) in ('float16', 'float32', 'float64', 'bfloat16')


class _JittorCall:
    """What one forward hands to its backward (kept off torch's saved-tensor machinery)."""

    def __init__(self, fn: Callable, args: Any, kwargs: Any, jt_params: Sequence['jt.Var']):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.jt_params = list(jt_params)
        self.grad_enabled = torch.is_grad_enabled()
        self.output_structure: Any = None
        self.jt_inputs: List['jt.Var'] = []
        self.jt_outputs: List['jt.Var'] = []
        self.input_needs_grad: List[bool] = []
        self.param_needs_grad: List[bool] = []
        self.param_shapes: List[torch.Size] = []

    def release(self) -> None:
        self.jt_inputs, self.jt_outputs, self.args, self.kwargs = [], [], None, None


def _gradients_to_torch(grads: Sequence['jt.Var'], device: torch.device) -> List[torch.Tensor]:
    """The gradients as torch tensors, without copies on CPU (views of the Jittor buffers: the
    backward's Vars are read by nothing else). A buffer that comes twice (``jt.grad`` hands one Var,
    or reshapes of one Var, to inputs whose gradients are equal, e.g. both terms of a sum) is copied
    for its later places, so that torch accumulating into one gradient cannot change another."""
    shared_buffers = set()
    tensors = []
    for g in grads:
        tensor = jittor_to_torch(g, device, share_memory=True)
        if tensor.device.type == 'cpu' and tensor.numel():
            if tensor.data_ptr() in shared_buffers:
                tensor = tensor.clone()
            shared_buffers.add(tensor.data_ptr())
        tensors.append(tensor)
    return tensors


class _JittorFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, call: _JittorCall, num_inputs: int, *tensors: torch.Tensor):
        inputs, params = tensors[:num_inputs], tensors[num_inputs:]
        device = next((t.device for t in tensors), torch.device('cpu'))
        call.input_needs_grad = [ctx.needs_input_grad[2 + i] and t.is_floating_point()
                                 for i, t in enumerate(inputs)]
        call.param_needs_grad = [ctx.needs_input_grad[2 + num_inputs + i]
                                 for i in range(len(params))]
        # A torch parameter may be 0-d where its Jittor Var is (1,) (Jittor has no 0-d Vars).
        call.param_shapes = [t.shape for t in params]
        jt_inputs = [torch_to_jittor(t) for t in inputs]
        for var, needs in zip(jt_inputs, call.input_needs_grad):
            if not needs:
                var.stop_grad()
        args, kwargs = _replace_leaves((call.args, call.kwargs), _is_tensor, jt_inputs)
        if call.grad_enabled:
            result = call.fn(*args, **kwargs)
        else:
            with jt.no_grad():
                result = call.fn(*args, **kwargs)
        jt_outputs = flatten_structure(result, _is_var)
        call.output_structure = result
        # One graph execution for all outputs (converting them one by one runs one sync each).
        if jt_outputs:
            jt.sync(jt_outputs)
        torch_outputs = tuple(jittor_to_torch(v, device) for v in jt_outputs)
        ctx.mark_non_differentiable(*[t for t in torch_outputs if not t.is_floating_point()])
        if call.grad_enabled:
            call.jt_inputs, call.jt_outputs = jt_inputs, jt_outputs
        else:
            call.release()
        ctx.call = call
        return torch_outputs

    @staticmethod
    def backward(ctx, *grad_outputs: Optional[torch.Tensor]):
        call: _JittorCall = ctx.call
        targets = [v for v, n in zip(call.jt_inputs, call.input_needs_grad) if n]
        targets += [v for v, n in zip(call.jt_params, call.param_needs_grad) if n]
        # Vector-Jacobian product: d(sum_i <out_i, g_i>)/d(targets).
        terms = [(out * torch_to_jittor(g).cast(out.dtype)).sum()
                 for out, g in zip(call.jt_outputs, grad_outputs)
                 if g is not None and _is_float(out.dtype) and not out.is_stop_grad()]
        # retain_graph: torch may run this backward again (retain_graph=True, gradcheck); the Jittor
        # graph is freed with the torch graph node that holds it.
        grads = jt.grad(sum(terms), targets, retain_graph=True) if (terms and targets) else []
        if grads:
            jt.sync(list(grads))  # one graph execution for every gradient
        device = grad_outputs[0].device if grad_outputs and grad_outputs[0] is not None else None
        grads = iter(_gradients_to_torch(grads, device or torch.device('cpu')))
        input_grads = [next(grads) if n else None for n in call.input_needs_grad] \
            if terms and targets else [None] * len(call.input_needs_grad)
        param_grads = [next(grads).reshape(shape) if n else None
                       for n, shape in zip(call.param_needs_grad, call.param_shapes)] \
            if terms and targets else [None] * len(call.param_needs_grad)
        return (None, None, *input_grads, *param_grads)


def call_jittor(fn: Callable, args: Tuple = (), kwargs: Optional[dict] = None,
                params: Sequence[Tuple['jt.Var', torch.Tensor]] = ()) -> Any:
    """Run ``fn(*args, **kwargs)`` in Jittor as a differentiable torch op.

    Args:
        fn: A callable on Jittor Vars (e.g. a ``jt.nn.Module``) returning Vars in any nesting of
            lists, tuples and dicts; non-Var outputs are returned unchanged.
        args, kwargs: Arguments; every torch tensor inside (containers included) becomes a Var;
            everything else is passed through as is.
        params: ``(jittor_var, torch_tensor)`` pairs: Vars that ``fn`` reads whose gradients belong to
            the torch tensors. The caller keeps their values in step (see ``JittorModuleWrapper``).

    Returns:
        ``fn``'s result with every Var replaced by a torch tensor on the inputs' device.
    """
    if torch.jit.is_tracing():
        # A traced graph would hold one opaque node: FLOP counters would count nothing for it.
        raise RuntimeError(
            f'{getattr(fn, "__qualname__", type(fn).__name__)} runs in Jittor, which torch.jit '
            f'cannot trace: torch.jit.trace, ONNX export and mmengine\'s FLOP analysis '
            f'(get_model_complexity_info) see PyTorch operations only. Parameter counts work '
            f'(mmengine.analysis.parameter_count).')
    kwargs = kwargs or {}
    tensors = flatten_structure((args, kwargs), _is_tensor)
    call = _JittorCall(fn, args, kwargs, [v for v, _ in params])
    outputs = _JittorFunction.apply(call, len(tensors), *tensors, *[t for _, t in params])
    structure, call.output_structure = call.output_structure, None
    return _replace_leaves(structure, _is_var, outputs)
