"""tools/align.py: the alignment table users run, and its exit status."""
import importlib.util
import os

import pytest

from jt_mm_plugins.alignment import ALIGNMENT_PAIRS, compare_modules, get_pair

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _align_tool():
    spec = importlib.util.spec_from_file_location('align_tool', os.path.join(REPO, 'tools',
                                                                               'align.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_required_pairs_are_registered():
    assert {'clip_resnet', 'fpn', 'resnet', 'rpn_head', 'roi_head', 'faster_rcnn'} <= set(
        ALIGNMENT_PAIRS)


@pytest.mark.parametrize('name', ['clip_resnet', 'fpn', 'rpn_head', 'roi_head'])
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


def test_unknown_pair_is_named(capsys):
    assert _align_tool().main(['no_such_pair']) == 2
    assert 'no_such_pair' in capsys.readouterr().err


def test_compare_reports_every_parameter_group():
    candidate, reference, inputs = get_pair('fpn').build('small', 0)
    rows = compare_modules(candidate, reference, inputs, training=True)
    groups = {r.name.split(' ')[0] for r in rows if r.kind == 'param grad'}
    assert groups == {'lateral_convs', 'fpn_convs'}
    assert all(r.ok for r in rows)
