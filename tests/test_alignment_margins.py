"""jt_mm_plugins/alignment/margins.py: the ReLU / max-pool decisions of a reference run, their
margins, and which float32 gradients they leave well-defined (the rule every alignment test uses)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from jt_mm_plugins.alignment.margins import (FLOAT32_EPS, FLOAT32_MARGIN_FACTOR, float32_bound,
                                             measure_margins, record_decisions)
from jt_mm_plugins.alignment.pairs import _LossProbe


class Net(torch.nn.Module):
    """conv -> nn.ReLU (in place) -> max pool -> conv -> F.relu -> linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 2, 1, bias=True)
        self.act = torch.nn.ReLU(inplace=True)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(2, 2, 1)
        self.fc = torch.nn.Linear(2 * 2 * 2, 1)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        return self.fc(F.relu(self.conv2(x)).flatten(1))


def _net(bias0=0.0):
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.conv1.weight.fill_(1.0)
        net.conv1.bias.copy_(torch.tensor([bias0, -10.0]))
        net.conv2.weight.copy_(torch.tensor([[[[1.0]], [[0.0]]], [[[-1.0]], [[0.0]]]]))
        net.conv2.bias.fill_(-0.5)
    return net


def _input():
    # distinct values, 1 apart: every pool window has a clear maximum
    return torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) + 0.25


def test_records_module_and_functional_relus_and_pools_in_order():
    net = _net()
    with record_decisions(net) as trace:
        net(_input())
    assert [(d.kind, d.module) for d in trace.decisions] == [
        ('relu', 'act'), ('max_pool2d', 'pool'), ('relu', '')]
    relu0, pool, relu1 = trace.decisions
    assert relu0.margin == pytest.approx(0.25)  # channel 0: x + 0; channel 1: x - 10 (>= 0.25)
    # window neighbours differ by 1 (channel 1's all-zero windows are left out)
    assert pool.margin == pytest.approx(1.0)
    assert relu1.margin == pytest.approx(4.75)  # pooled 5.25 - 0.5
    # first calls: conv1 before any decision, conv2 after the pool, fc after the last ReLU
    assert trace.first_call == {'conv1.weight': 0, 'conv1.bias': 0, 'conv2.weight': 2,
                                'conv2.bias': 2, 'fc.weight': 3, 'fc.bias': 3}
    assert F.relu is not None and F.relu.__module__ == 'torch.nn.functional'
    assert F.max_pool2d.__module__ == 'torch.nn.functional'  # restored


def test_in_place_relu_is_recorded_before_it_writes():
    net = _net(bias0=-1.0)
    with record_decisions(net) as trace:
        net(_input())
    assert float(trace.decisions[0].value.min()) < 0  # the input, not the output


def _report(net, x):
    net64 = copy.deepcopy(net).double()
    return measure_margins(net, net64, lambda: net(x), lambda: net64(x.double()))


def test_a_relu_input_within_float32_error_leaves_the_gradients_upstream_undecided():
    # conv1 channel 0 gives x - 0.25 + 6e-8 at the pixel holding 0.25: 6e-8 from zero, on values
    # up to 15.25, where float32 alone rounds by 1e-6.
    net = _net(bias0=-0.24999994)
    report = _report(net, _input())
    assert [d.label for d in report.undecided] == ['relu#0 in act']
    assert report.trace64.decisions[0].margin == pytest.approx(6e-8, rel=0.1)
    assert not report.input_grad_well_defined()
    assert not report.param_grad_well_defined('conv1.weight')
    assert report.param_grad_well_defined('conv2.weight') and report.param_grad_well_defined(
        'fc.bias')
    assert report.float64_violations() == []  # 6e-8 is far from zero in float64
    assert report.float64_violations(margin=1e-8) == report.undecided


def test_with_margins_every_gradient_is_well_defined():
    report = _report(_net(), _input())
    assert report.undecided == [] and report.input_grad_well_defined()
    assert all(report.param_grad_well_defined(n) for n, _ in _net().named_parameters())
    assert 'decided in float32' in report.summary()


def test_unknown_parameters_count_as_early():
    report = _report(_net(bias0=-0.24999994), _input())
    assert not report.param_grad_well_defined('not.a.parameter')


def test_parameter_names_follow_the_wrappers_named_parameters():
    net = _net()
    probe = _LossProbe(net, lambda model, x: {'loss': model(x).sum()})
    with record_decisions(probe) as trace:
        probe(_input())
    assert set(trace.first_call) == {n for n, _ in net.named_parameters()}


def test_float32_bound():
    assert float32_bound(0.0, 2.0) == FLOAT32_MARGIN_FACTOR * FLOAT32_EPS * 2.0
    assert float32_bound(1e-5, 1.0) == pytest.approx(1e-4)


def test_max_pool_margin_keeps_negative_windows():
    x = torch.tensor([[[[-1.0, -1.0 + 2**-20], [-3.0, -4.0]]]])
    with record_decisions(torch.nn.Identity()) as trace:
        F.max_pool2d(x, 2)
    assert trace.decisions[0].margin == 2**-20
