"""tools/align.py --plot: the worst errors per pair and mode against their tolerances."""
import importlib.util
import os

from jt_mm_plugins.alignment import DiffRow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location('align_tool', os.path.join(REPO, 'tools', 'align.py'))
align = importlib.util.module_from_spec(spec)
spec.loader.exec_module(align)

PNG = b'\x89PNG\r\n\x1a\n'


def test_plot_draws_the_worst_row_of_each_kind_against_its_own_tolerance(tmp_path):
    rows = [DiffRow('output', 'out0', 2e-6, 1e-3, 1e-4), DiffRow('output', 'out1', 5e-5, 1e-3, 1e-4),
            DiffRow('param grad', 'conv', 1e-3, 4e-4, 1e-3),
            DiffRow('input grad', 'x', 1e-3, 5e-3, 1e-1),  # larger, but farther from its tolerance
            DiffRow('param grad', 'bn', 1.0, 0.5, 1e-3, compared=False)]  # float32 cannot decide it
    failing = [DiffRow('output', 'out', 3e-4, 1.0, 1e-4)]
    drawn = align.plot_alignment([('fpn', 'eval', rows), ('rpn', 'train', failing)],
                                 str(tmp_path / 'a.png'))
    assert drawn == {'fpn eval output': (5e-5, 1e-4), 'fpn eval gradient': (4e-4, 1e-3),
                     'rpn train output': (3e-4, 1e-4)}
    assert (tmp_path / 'a.png').read_bytes()[:8] == PNG


def test_align_plot_option_writes_the_picture(tmp_path, capsys):
    out = tmp_path / 'align.png'
    assert align.main(['fpn', '--mode', 'eval', '--plot', str(out)]) == 0
    assert f'align: plot written to {out}' in capsys.readouterr().out
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5000
