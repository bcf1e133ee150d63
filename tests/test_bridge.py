"""The torch <-> Jittor bridge: conversion, autograd, module wrapper, registration."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS

import jt_mm_plugins  # noqa: F401
from jt_mm_plugins.bridge import (JITTOR_MODELS, JittorModuleWrapper, build_jittor_module,
                                  call_jittor, jittor_to_torch, register_jittor_module,
                                  torch_to_jittor)
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d
from jt_mm_plugins.ops import relu
from jt_mm_plugins.runtime import jt


# ---------------------------------------------------------------------------------------------------
# Tensor conversion
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16, torch.int64,
                                   torch.int32, torch.uint8, torch.bool])
def test_round_trip_keeps_dtype_and_values(dtype):
    source = (torch.arange(24).reshape(2, 3, 4) * 7 % 5).to(dtype)
    var = torch_to_jittor(source)
    assert str(var.dtype) == {torch.float32: 'float32', torch.float64: 'float64',
                              torch.float16: 'float16', torch.int64: 'int64',
                              torch.int32: 'int32', torch.uint8: 'uint8',
                              torch.bool: 'bool'}[dtype]
    back = jittor_to_torch(var)
    assert back.dtype == dtype and back.shape == source.shape
    assert torch.equal(back, source)


def test_int64_beyond_int32_range_survives():
    big = torch.tensor([2**40 + 3, -(2**35)], dtype=torch.int64)
    assert torch.equal(jittor_to_torch(torch_to_jittor(big)), big)


def test_conversion_copies_are_independent():
    source = torch.ones(4)
    var = torch_to_jittor(source)
    source.add_(1)  # the Var must not alias torch's memory
    assert np.allclose(var.numpy(), 1)
    back = jittor_to_torch(var)
    back.add_(5)
    assert np.allclose(var.numpy(), 1)


def test_shared_memory_view_keeps_its_var_alive():
    var = jt.array(np.arange(6, dtype=np.float32)).reshape(2, 3) * 2
    view = jittor_to_torch(var, share_memory=True)
    del var
    jt.gc()
    for _ in range(3):  # fresh allocations must not reuse the view's buffer
        (jt.ones((2, 3)) * 9).sync()
    assert torch.equal(view, torch.arange(6.).reshape(2, 3) * 2)
    view.add_(1)  # writeable, no warning
    assert view[1, 2] == 11


def test_non_contiguous_input():
    source = torch.arange(12.).reshape(3, 4).t()
    assert torch.equal(jittor_to_torch(torch_to_jittor(source)), source)


def test_unsupported_dtype_is_named():
    with pytest.raises(TypeError, match='complex64'):
        torch_to_jittor(torch.zeros(2, dtype=torch.complex64))


# ---------------------------------------------------------------------------------------------------
# The autograd function
def _mixed_fn(inputs, scale, mode, extra):
    """Several inputs in containers, non-tensor arguments, several outputs of mixed kinds."""
    a, b = inputs
    y = (a * b).sum(dim=1) * scale
    z = jt.tanh(extra['c']) @ a.transpose(1, 0) if mode == 'tanh' else extra['c'] @ a.t()
    index, _ = jt.argmax(a, dim=1)
    return {'y': y, 'pair': [z, index], 'label': 'done', 'constant': jt.ones((2, )).stop_grad()}


def test_call_jittor_structure_and_dtypes():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    c = torch.randn(2, 4)
    out = call_jittor(_mixed_fn, ([a, b], 2.0, 'tanh', {'c': c}))
    assert set(out) == {'y', 'pair', 'label', 'constant'} and out['label'] == 'done'
    torch.testing.assert_close(out['y'], (a * b).sum(1) * 2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out['pair'][0], torch.tanh(c) @ a.t(), atol=1e-6, rtol=1e-5)
    assert out['pair'][1].dtype in (torch.int32, torch.int64)
    assert torch.equal(out['pair'][1].long(), a.argmax(1))


def test_gradcheck_float64_mixed_inputs_and_outputs():
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

    def f(a, b, c):
        out = call_jittor(_mixed_fn, ([a, b], 1.5, 'tanh', {'c': c}))
        return out['y'], out['pair'][0]

    assert torch.autograd.gradcheck(f, (a, b, c), eps=1e-6, atol=1e-5)


def test_gradcheck_float64_parameters():
    weight = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)

    def f(x, weight):
        weight_var = torch_to_jittor(weight)  # what a wrapper does when the value changed
        return call_jittor(lambda v: jt.sigmoid(v @ weight_var.transpose(1, 0)), (x, ),
                           params=[(weight_var, weight)])

    assert torch.autograd.gradcheck(f, (x, weight), eps=1e-6, atol=1e-5)


def test_outputs_without_gradient_and_unused_inputs():
    a = torch.randn(4, requires_grad=True)
    unused = torch.randn(4, requires_grad=True)
    y, k = call_jittor(lambda a, u: (a * 3, (a > 0).int32()), (a, unused))
    assert not k.requires_grad
    y.sum().backward()
    torch.testing.assert_close(a.grad, torch.full((4, ), 3.0))
    assert unused.grad is None or torch.count_nonzero(unused.grad) == 0


@pytest.mark.parametrize('a_shape, fn, scale', [
    ((4, ), lambda a, b: a + b, 1.0),                              # one Var for both
    ((2, 2), lambda a, b: a.reshape(4) + b, 1.0),                  # a reshape of it
    ((2, 2), lambda a, b: (a.reshape(4) * 1 + b) * 2, 2.0)])
def test_gradients_sharing_a_jittor_buffer_become_separate_tensors(a_shape, fn, scale):
    """The backward hands torch views of Jittor's gradient buffers (no copy); jt.grad may give two
    inputs the same buffer, and torch accumulating into one gradient must not change the other."""
    a = torch.randn(*a_shape, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    for _ in range(2):  # the second backward accumulates in place into .grad
        call_jittor(fn, (a, b)).backward(torch.arange(4.))
    torch.testing.assert_close(a.grad, 2 * scale * torch.arange(4.).reshape(a_shape))
    torch.testing.assert_close(b.grad, 2 * scale * torch.arange(4.))
    assert a.grad.data_ptr() != b.grad.data_ptr()
    a.grad.zero_()
    torch.testing.assert_close(b.grad, 2 * scale * torch.arange(4.))


def test_no_grad_mode_builds_no_graph():
    a = torch.randn(4, requires_grad=True)
    with torch.no_grad():
        y = call_jittor(lambda v: v * 2, (a, ))
    assert not y.requires_grad


# ---------------------------------------------------------------------------------------------------
# The module wrapper, against a torch twin
@register_jittor_module(name='_TestJittorNet')
class _JittorNet(jt.nn.Module):

    def __init__(self, channels=4, num_classes=3, freeze_stem=False):
        super().__init__()
        self.stem = jt.nn.Conv2d(3, channels, 3, padding=1)
        self.bn = BatchNorm2d(channels)
        self.head = jt.nn.Linear(channels, num_classes)
        if freeze_stem:
            for v in self.stem.parameters():
                v.requires_grad = False

    def execute(self, x):
        y = relu(self.bn(self.stem(x)))  # the package's ReLU: NaN stays NaN, as in torch
        return self.head(y.mean(dims=[2, 3]))


class _TorchNet(torch.nn.Module):

    def __init__(self, channels=4, num_classes=3):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.head = torch.nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.stem(x))).mean(dim=[2, 3]))


def _twins():
    bridged = MODELS.build(dict(type='_TestJittorNet'))
    reference = _TorchNet()
    with torch.no_grad():
        reference.bn.running_mean.uniform_(-1, 1)
        reference.bn.running_var.uniform_(0.5, 2)
        reference.bn.weight.uniform_(0.5, 1.5)
    bridged.load_state_dict(reference.state_dict(), strict=True)
    return bridged, reference


def test_registration_puts_both_sides_in_place():
    assert JITTOR_MODELS.get('_TestJittorNet') is _JittorNet
    wrapper_cls = MODELS.get('_TestJittorNet')
    assert issubclass(wrapper_cls, JittorModuleWrapper) and wrapper_cls is _JittorNet.bridged
    assert isinstance(build_jittor_module(dict(type='_TestJittorNet')), _JittorNet)


def test_bad_config_errors_name_the_culprit():
    with pytest.raises(KeyError, match='NoSuchNeck'):
        build_jittor_module(dict(type='NoSuchNeck'))
    with pytest.raises(TypeError, match='chanels'):
        MODELS.build(dict(type='_TestJittorNet', chanels=3))


def test_non_finite_training_output_names_module_and_cause():
    x = torch.randn(2, 3, 5, 5)
    bad_x = x.clone()
    bad_x[0, 0, 0, 0] = float('nan')
    bridged = _twins()[0].train()
    with pytest.raises(FloatingPointError, match=r'_JittorNet .*output 0 \(2, 3\).*inputs already'):
        bridged(bad_x)

    bridged = _twins()[0].train()
    with torch.no_grad():
        bridged.head.weight[0, 0] = float('inf')
    with pytest.raises(FloatingPointError, match=r'_JittorNet.*parameters.*: head\.weight \('):
        bridged(x)

    bridged = _twins()[0].train()
    with torch.no_grad():  # finite, but the first logit exceeds float32's 3.4e38
        bridged.head.weight[0] = 3e38
        bridged.head.bias[0] = 3e38
    with pytest.raises(FloatingPointError, match='computation overflowed'):
        bridged(x)
    bridged.eval()  # evaluation returns what it computed, unchecked
    assert not torch.isfinite(bridged(x)).all()
    bridged.train()
    bridged.check_finite_outputs = False  # components with infinite outputs by design opt out
    assert not torch.isfinite(bridged(x)).all()


def test_state_dict_keys_match_torch_twin():
    bridged, reference = _twins()
    assert list(bridged.state_dict()) == list(reference.state_dict())
    assert bridged.state_dict()['bn.num_batches_tracked'].shape == ()


def test_load_state_dict_shape_mismatch_names_key():
    bridged = MODELS.build(dict(type='_TestJittorNet'))
    bad = _TorchNet(channels=5).state_dict()
    with pytest.raises(RuntimeError, match='stem.weight'):
        bridged.load_state_dict(bad)


@pytest.mark.parametrize('training', [False, True])
def test_wrapper_matches_torch_twin_outputs_and_gradients(training):
    bridged, reference = _twins()
    bridged.train(training)
    reference.train(training)
    x = torch.randn(2, 3, 8, 8)
    x_ref = x.clone().requires_grad_()
    x_jt = x.clone().requires_grad_()
    out_ref, out_jt = reference(x_ref), bridged(x_jt)
    torch.testing.assert_close(out_jt, out_ref, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out_ref)
    (out_ref * weights).sum().backward()
    (out_jt * weights).sum().backward()
    torch.testing.assert_close(x_jt.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    ref_params = dict(reference.named_parameters())
    for name, p in bridged.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, atol=1e-5, rtol=1e-4,
                                   msg=lambda m: f'{name}: {m}')
    # BatchNorm running statistics come back after a training forward (and only then change).
    ref_buffers = dict(reference.named_buffers())
    for name, b in bridged.named_buffers():
        torch.testing.assert_close(b, ref_buffers[name], atol=1e-6, rtol=1e-5)


def test_train_eval_propagate_to_jittor():
    bridged = MODELS.build(dict(type='_TestJittorNet'))
    bridged.eval()
    assert not bridged.jittor_module.bn.is_training()
    bridged.train()
    assert bridged.jittor_module.bn.is_training()


def test_optimizer_steps_reach_jittor_and_unchanged_values_are_not_resent(monkeypatch):
    bridged, reference = _twins()
    optim = torch.optim.SGD(bridged.parameters(), lr=0.1)
    optim_ref = torch.optim.SGD(reference.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(3):
        for model, opt in ((bridged, optim), (reference, optim_ref)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(bridged(x), reference(x), atol=1e-4, rtol=1e-4)

    import jt_mm_plugins.bridge.module as module_mod
    sent = []
    original = module_mod.torch_to_jittor
    monkeypatch.setattr(module_mod, 'torch_to_jittor', lambda t: sent.append(t) or original(t))
    bridged.eval()
    bridged(x)  # the training forward above wrote the buffers back: nothing changed since
    assert sent == []
    with torch.no_grad():
        bridged.head.bias.add_(1.0)
    bridged(x)
    assert len(sent) == 1 and sent[0].shape == (3, )


def test_frozen_parameters_get_no_gradient_and_no_jittor_grad_work():
    bridged = MODELS.build(dict(type='_TestJittorNet', freeze_stem=True))
    assert not bridged.stem.weight.requires_grad and bridged.head.weight.requires_grad
    bridged(torch.randn(2, 3, 8, 8)).sum().backward()
    assert bridged.stem.weight.grad is None and bridged.head.weight.grad is not None
    assert bridged.jittor_module.stem.weight.is_stop_grad()
    # Unfreezing in torch takes effect in Jittor at the next forward.
    bridged.stem.weight.requires_grad_(True)
    bridged(torch.randn(2, 3, 8, 8)).sum().backward()
    assert bridged.stem.weight.grad is not None


def test_pretrained_init_cfg_loads_checkpoint(tmp_path):
    reference = _TorchNet()
    path = tmp_path / 'net.pth'
    torch.save({'state_dict': reference.state_dict()}, path)
    bridged = MODELS.build(
        dict(type='_TestJittorNet', init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    bridged.init_weights()
    x = torch.randn(1, 3, 8, 8)
    reference.eval()
    bridged.eval()
    torch.testing.assert_close(bridged(x), reference(x), atol=1e-5, rtol=1e-5)


def test_double_precision_module_via_to():
    bridged, reference = _twins()
    bridged.double().eval()
    reference.double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = bridged(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference(x), atol=1e-10, rtol=1e-9)


def test_jittor_graph_memory_stays_flat_over_200_training_iterations():
    bridged = MODELS.build(dict(type='_TestJittorNet'))
    optim = torch.optim.SGD(bridged.parameters(), lr=0.01)
    x = torch.randn(2, 3, 8, 8)

    def step():
        optim.zero_grad()
        bridged(x).square().mean().backward()
        optim.step()

    for _ in range(20):
        step()
    jt.sync_all(True)
    jt.gc()
    lived_early = jt.liveness_info()['lived_vars']
    for _ in range(180):
        step()
    jt.sync_all(True)
    jt.gc()
    lived_late = jt.liveness_info()['lived_vars']
    assert lived_late <= lived_early + 5, (lived_early, lived_late)
