"""tools/align.py: the alignment table users run, and its exit status."""
import copy
import importlib.util
import os

import pytest

import torch

from jt_mm_plugins.alignment import (ALIGNMENT_PAIRS, AlignmentPair, DiffRow, compare_modules,
                                     get_pair)
from jt_mm_plugins.alignment.compare import leaf_names
from jt_mm_plugins.alignment.pairs import mmcv_nms_accepts_float64

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _align_tool():
    spec = importlib.util.spec_from_file_location('align_tool', os.path.join(REPO, 'tools',
                                                                               'align.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_required_pairs_are_registered():
    assert {'clip_resnet', 'fpn', 'resnet', 'rpn_head', 'roi_head', 'faster_rcnn',
            'jittor_heads', 'gfl', 'gfl_head'} <= set(ALIGNMENT_PAIRS)


# fpn and roi_head run through the tool in the markdown test below
@pytest.mark.parametrize('name', ['clip_resnet', 'rpn_head'])
def test_pair_aligned_in_both_modes(name, capsys):
    assert _align_tool().main([name]) == 0
    out = capsys.readouterr().out
    assert out.count('ALIGNED') == 2 and 'NOT ALIGNED' not in out
    assert 'param grad' in out and 'output' in out


def test_tool_fails_past_tolerance(monkeypatch, capsys):
    pair = get_pair('fpn')
    monkeypatch.setitem(pair.tolerances, 'grad_rel', 0.0)
    monkeypatch.setitem(pair.tolerances, 'output_abs', -1.0)
    assert _align_tool().main(['fpn', '--mode', 'eval']) == 1
    assert 'NOT ALIGNED' in capsys.readouterr().out


def test_markdown_summary_has_one_line_per_pair_and_mode(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'align.md'
    assert _align_tool().main(['fpn', 'roi_head', '--markdown', str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count('ALIGNED') == 4 and 'NOT ALIGNED' not in printed
    assert 'param grad' in printed and 'output' in printed
    lines = out.read_text().splitlines()
    assert lines[0].startswith('| pair | mode |') and len(lines) == 2 + 4
    assert lines[2].startswith('| fpn | eval |') and lines[-1].startswith('| roi_head | train |')
    assert all(line.endswith('| ALIGNED |') for line in lines[2:])
    # a failing pair says so in its line
    monkeypatch.setitem(get_pair('fpn').tolerances, 'output_abs', -1.0)
    assert _align_tool().main(['fpn', '--mode', 'eval', '--markdown', str(out)]) == 1
    assert out.read_text().splitlines()[-1].endswith('| NOT ALIGNED |')


def test_summary_line_reports_the_float64_columns_only_where_the_referee_ran():
    tool = _align_tool()
    rows = [DiffRow('output', 'out[0]', 2e-6, 1e-7, 1e-4),
            DiffRow('param grad', 'a', 1e-3, 3e-3, 1e-2, 1e-3, 4e-3),
            DiffRow('input grad', 'x', 1e-5, 5e-4, 1e-2, 6e-4, 2e-5),
            DiffRow('param grad', 'b', 1.0, 0.5, 1e-2, 0.4, 0.5, compared=False, not_compared=3),
            DiffRow('param grad f64', 'a', 1e-9, 2e-9, 1e-5)]
    assert tool.summary_line('p', 'train', rows) == \
        '| p | train | 2.0e-06 | 3.0e-03 | 1.0e-03 | 4.0e-03 | 2.0e-09 | 3 | ALIGNED |'
    assert tool.summary_line('p', 'eval', rows[:1]) == \
        '| p | eval | 2.0e-06 | - | - | - | - | 0 | ALIGNED |'


def test_unknown_pair_is_named(capsys):
    assert _align_tool().main(['no_such_pair']) == 2
    assert 'no_such_pair' in capsys.readouterr().err


def test_compare_reports_every_parameter_group():
    candidate, reference, inputs = get_pair('fpn').build('small', 0)
    rows = compare_modules(candidate, reference, inputs, training=True)
    groups = {r.name.split(' ')[0] for r in rows if r.kind == 'param grad'}
    assert groups == {'lateral_convs', 'fpn_convs'}
    assert all(r.ok for r in rows)


def test_rows_float32_cannot_decide_are_shown_not_judged():
    assert DiffRow('param grad', 'w', 1.0, 5e-3, 1e-2).ok
    assert not DiffRow('param grad', 'w', 1.0, 2e-2, 1e-2).ok
    # a float64 referee's columns inform; they no longer excuse a float32 difference
    assert not DiffRow('param grad', 'w', 1.0, 2e-2, 1e-2, 1e-3, 2e-2).ok
    assert not DiffRow('output', 'y', 2e-4, 0.0, 1e-4, 3e-4, 1e-4).ok
    # upstream of a ReLU within float32 error of zero: not compared (the f64 rows judge it)
    assert DiffRow('param grad', 'w', 1.0, 2e-2, 1e-2, compared=False).ok
    assert not DiffRow('param grad f64', 'w', 1.0, 2e-5, 1e-5).ok
    assert not DiffRow('margin f64', 'decisions', 1, 1, 0).ok
    assert DiffRow('margin f64', 'decisions', 0, 0, 0).ok


def test_float64_candidate_covers_every_gradient(capsys):
    # The float32 rows of resnet in train mode are mostly 'n/c' (ReLU inputs ~1e-6 from zero where
    # float32's error is ~3e-6); the float64 rows compare every gradient.
    pair = get_pair('resnet')
    assert pair.float64_candidate
    candidate, reference, inputs = pair.build('small', 0)
    rows = compare_modules(candidate, reference, inputs, training=True,
                           candidate64=pair.build_candidate64('small', 0))
    assert all(r.ok for r in rows)
    f64 = [r for r in rows if r.kind == 'param grad f64']
    assert {r.name.split(' ')[0] for r in f64} == \
        {r.name.split(' ')[0] for r in rows if r.kind == 'param grad'}
    assert all(r.compared and r.not_compared == 0 for r in f64)
    assert [r.max_abs for r in rows if r.kind == 'margin f64'] == [0]
    assert any(r.kind == 'input grad f64' for r in rows)


def test_whole_detector_in_train_mode_is_aligned(capsys):
    # The faster_rcnn pair is the small case whose selections tests/test_faster_rcnn.py asserts
    # (pairs.small_faster_rcnn_twins; the pair's seed 0 is that case's seed): the same proposals and
    # RoIs on any machine. Its stem's gradients are 'n/c' rows on any machine: the backbone's max
    # pool has exact ties in the constant padding of the smaller image (float64 margin 0, see
    # margins.py); the losses are always compared.
    assert get_pair('faster_rcnn').float64_referee
    assert _align_tool().main(['faster_rcnn', '--mode', 'train']) == 0
    out = capsys.readouterr().out
    assert 'cand-f64' in out and 'ref32-f64' in out and 'NOT ALIGNED' not in out
    assert 'n/c' in out and 'output' in out


def test_nms_shim_selects_the_same_boxes_and_restores_mmcv():
    from mmcv.ops import nms
    import importlib
    nms_module = importlib.import_module('mmcv.ops.nms')
    original = nms_module.ext_module
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(200, 2, generator=generator) * 100
    boxes = torch.cat([corners, corners + 5 + torch.rand(200, 2, generator=generator) * 30], 1)
    scores = torch.rand(200, generator=generator)
    _, keep32 = nms(boxes, scores, 0.5)
    with mmcv_nms_accepts_float64():
        _, keep64 = nms(boxes.double(), scores.double(), 0.5)
    assert torch.equal(keep32, keep64) and 0 < len(keep32) < 200
    assert nms_module.ext_module is original


def _diagnosis_tool():
    spec = importlib.util.spec_from_file_location(
        'float64_diagnosis', os.path.join(REPO, 'tools', 'float64_diagnosis.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_float64_diagnosis_names_every_loss(capsys):
    tool = _diagnosis_tool()
    assert tool.main(['faster_rcnn', '--mode', 'train', '--top', '3']) == 0
    out = capsys.readouterr().out
    candidate, reference, inputs = get_pair('faster_rcnn').build('small', 0)
    reference.train()
    names = leaf_names(reference(*inputs))
    assert len(names) >= 12  # five RPN levels x two losses, loss_cls, acc, loss_bbox
    part1 = out.split('ReLU/max-pool decisions float32 cannot decide')[0]
    assert all(name[:24] in part1 for name in names), [n for n in names if n[:24] not in part1]
    assert 'ReLU/max-pool decisions float32 cannot decide' in out
    # the pair's selections keep their margins (asserted by tests/test_faster_rcnn.py on this case)
    assert 'selections float32 cannot decide' in out
    assert ': the same items are selected on any machine' in out
    assert 'sign flips against float64' in out
    assert tool.main(['no_such_pair']) == 2


class _TinyReLUNet(torch.nn.Module):
    """Linear(2, 2) -> ReLU -> Linear(2, 1); unit 0's ReLU input is ``1.0 * a + 1.0 * b`` with
    ``(a, b)`` = the first row of ``first.weight``."""

    def __init__(self, first_row):
        super().__init__()
        self.first = torch.nn.Linear(2, 2, bias=False)
        self.last = torch.nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([first_row, [0.5, 0.25]]))
            self.last.weight.copy_(torch.tensor([[1.0, -2.0]]))

    def forward(self, x):
        return self.last(torch.nn.functional.relu(self.first(x)))


def _register_tiny_pair(monkeypatch, first_row):
    def build(size='small', seed=0):
        reference = _TinyReLUNet(first_row)
        return copy.deepcopy(reference), reference, [torch.ones(1, 2)]
    monkeypatch.setitem(ALIGNMENT_PAIRS, 'tiny_relu', AlignmentPair('tiny_relu', 'test', build))


def test_float64_diagnosis_reports_an_undecidable_relu(monkeypatch, capsys):
    # 1.0 - 0.99999994 = 6e-8 (2**-24): within float32's error bound of a value of scale 1, so a
    # float32 run may land on either side; the tool must say so on every machine.
    _register_tiny_pair(monkeypatch, [1.0, -0.99999994])
    assert _diagnosis_tool().main(['tiny_relu', '--mode', 'eval']) == 0
    out = capsys.readouterr().out
    assert 'float32 cannot decide (float64 margin < 10x the float32 error bound): 1 of 1' in out
    assert 'relu#0 in <root>' in out and '6.0e-08' in out
    assert 'upstream of them (machine-dependent): 1 of 2 parameters and the input' in out


def test_float64_diagnosis_reports_no_flip_where_the_margin_holds(monkeypatch, capsys):
    _register_tiny_pair(monkeypatch, [1.0, -0.5])
    assert _diagnosis_tool().main(['tiny_relu', '--mode', 'eval']) == 0
    out = capsys.readouterr().out
    assert 'float32 cannot decide (float64 margin < 10x the float32 error bound): 0 of 1' in out
    assert 'none: every decision has its margin' in out
