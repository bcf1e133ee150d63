"""jt_mm_plugins/alignment/margins.py: the ReLU / max-pool decisions of a reference run, their
margins, and which float32 gradients they leave well-defined (the rule every alignment test uses);
the selections (top-k / sort cuts, NMS and its survivors' order, assigner, score_thr,
min_bbox_size) and their margins."""
import copy

import pytest
import torch
import torch.nn.functional as F

from jt_mm_plugins.alignment.margins import (FLOAT32_EPS, FLOAT32_MARGIN_FACTOR, float32_bound,
                                             max_iou_assigner_margin, measure_margins,
                                             record_decisions, record_selections)
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


def test_max_pool_margin_counts_exact_ties_as_undecided():
    # a tie of two equal positive values (e.g. the constant padding of a smaller image)
    x = torch.tensor([[[[2.0, 2.0], [1.0, 0.0]]]])
    with record_decisions(torch.nn.Identity()) as trace:
        F.max_pool2d(x, 2)
    assert trace.decisions[0].margin == 0.0


def test_topk_is_judged_at_its_cut_and_sort_at_sort_cut():
    x = torch.tensor([5.0, 4.0, 3.0, 3.0 + 2**-20, 1.0])
    with record_selections() as trace:
        x.topk(2)
        torch.topk(x, 3, largest=False)  # 1, 3, 3+2**-20 | 4: cut gap 1 - 2**-20
        x.sort(descending=True)
    assert [d.kind for d in trace.decisions] == ['topk', 'topk', 'sort']
    assert trace.decisions[0].margin == pytest.approx(1.0 - 2**-20)  # 4 vs 3 + 2**-20
    assert trace.decisions[1].margin == pytest.approx(1.0 - 2**-20)
    assert trace.decisions[2].margin == 2**-20  # every neighbour of a sort
    with record_selections(sort_cut=2) as trace:
        x.sort(descending=True)
        x[:2].sort()  # no cut: nothing to decide
    assert trace.decisions[0].margin == pytest.approx(1.0 - 2**-20)
    assert trace.decisions[1].margin == float('inf')


def test_nms_order_is_the_survivors_order():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.5, 0.5 + 2**-20])  # box 1 is suppressed by box 0
    with record_selections() as trace:
        _, keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [0, 2]
    suppression, order = trace.decisions
    assert (suppression.kind, order.kind) == ('nms', 'nms order')
    assert suppression.margin == pytest.approx(min(9 / 11 - 0.5, 0.4))  # IoU 9/11; 0.9 vs 0.5
    assert order.margin == pytest.approx(0.4 - 2**-20)  # 0.5 + 2**-20 is no neighbour of 0.5


def test_max_iou_assigner_margin():
    from mmdet.models.task_modules.assigners import MaxIoUAssigner
    assigner = MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3)
    overlaps = torch.tensor([[0.9, 0.1, 0.25], [0.8, 0.0, 0.6]])  # gts x boxes
    # box 0 positive, its gts 0.1 apart; box 2's best 0.6; gt 1 takes box 0 (0.8 vs 0.6)
    assert max_iou_assigner_margin(assigner, overlaps) == pytest.approx(0.1)
    overlaps[1, 0] = 0.31  # box 2's best IoU is 0.31: 0.01 above neg_iou_thr
    overlaps[1, 2] = 0.31
    assert max_iou_assigner_margin(assigner, overlaps) == pytest.approx(0.0)  # gt 1: tied boxes
    overlaps[1, 2] = 0.305
    assert max_iou_assigner_margin(assigner, overlaps) == pytest.approx(0.005)
    with record_selections() as trace:
        assigner.assign_wrt_overlaps(overlaps, torch.tensor([0, 1]))
    assert [d.kind for d in trace.decisions] == ['assigner']
    assert trace.decisions[0].margin == pytest.approx(0.005)


def test_score_thr_and_min_bbox_size_are_recorded():
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.roi_heads.bbox_heads import bbox_head
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData
    scores = torch.tensor([[0.06, 0.2, 0.74], [0.3, 0.049, 0.651]])  # last column: background
    boxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 31.]]).repeat(1, 2)
    with record_selections() as trace:
        bbox_head.multiclass_nms(boxes, scores, 0.05, dict(type='nms', iou_threshold=0.5))
    assert trace.decisions[0].kind == 'score_thr'
    assert trace.decisions[0].margin == pytest.approx(0.001, rel=1e-5)  # (float32 0.049)
    results = InstanceData(bboxes=torch.tensor([[0., 0., 4., 10.], [20., 20., 30., 33.]]),
                           scores=torch.tensor([0.9, 0.8]), level_ids=torch.tensor([0, 0]))
    cfg = ConfigDict(min_bbox_size=3.5, nms=dict(type='nms', iou_threshold=0.7), max_per_img=10)
    with record_selections() as trace:
        RPNHead(in_channels=1)._bbox_post_process(results, cfg)
    assert trace.decisions[0].kind == 'min_bbox_size'
    assert trace.decisions[0].margin == pytest.approx(0.5)  # width 4 vs 3.5
