"""tools/benchmark.py: what it measures (the same work in every variant), its outputs and errors.
Timings themselves are not asserted: they belong to benchmark runs, not tests."""
import importlib.util
import json
import os

import pytest
import torch

from jt_mm_plugins.alignment import get_pair
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.bridge.tensors import map_structure

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _benchmark_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool',
                                                  os.path.join(REPO, 'tools', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _benchmark_tool()


def test_bare_jittor_step_still_computes_every_gradient_after_the_bridge_replaced_vars():
    # The bridged step pushes changed torch values by replacing the Jittor parameter Vars; the
    # bare step must follow them, or Jittor silently skips the weight gradients (less work timed).
    candidate, _, inputs = get_pair('fpn').build('small', 0)
    candidate.train()
    xs = map_structure(torch_to_jittor, inputs)
    input_vars = []
    map_structure(input_vars.append, xs)
    names = {n for n, p in candidate.jittor_module.named_parameters()}
    first = bench.jittor_gradients(candidate.jittor_module, xs, input_vars)
    with torch.no_grad():
        for p in candidate.parameters():
            p.add_(0.01)
    bench._torch_step(candidate, inputs)()  # pushes the new values: new Vars
    second = bench.jittor_gradients(candidate.jittor_module, xs, input_vars)
    assert names <= set(second) and len(second) == len(names) + len(input_vars)
    for name in names:
        assert float(second[name].abs().max()) > 0, f'{name}: no gradient after the bridge step'
    # the step used the pushed values: the same inputs now give different gradients
    assert any(float((first[n] - second[n]).abs().max()) > 0 for n in names)


def test_component_run_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md, out_png = tmp_path / 'bench.json', tmp_path / 'bench.md', tmp_path / 'b.png'
    assert bench.main(['fpn', '--size', 'small', '--warmup', '1', '--iters', '2', '--memory-steps', '0',
                       '--json', str(out_json), '--markdown', str(out_md),
                       '--plot', str(out_png)]) == 0
    (result, ) = json.loads(out_json.read_text())
    assert result['component'] == 'fpn'
    for variant in ('pytorch', 'jittor', 'bridged'):
        assert result[variant]['median_s'] > 0 and 'peak_rss_mb' not in result[variant]
    assert result['jittor_vs_pytorch'] == pytest.approx(
        result['jittor']['median_s'] / result['pytorch']['median_s'])
    table = out_md.read_text()
    assert 'variants alternating' in table and 'OMP_WAIT_POLICY=' in table
    assert 'glibc malloc keeps freed memory: yes' in table
    assert table.count('\n| fpn |') == 1
    assert 'peak memory: not measured' in table and '| - / - / - | - / - |' in table
    assert 'fpn' in capsys.readouterr().out
    assert out_png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plot_draws_each_ratio_against_pytorch(tmp_path):
    component = {'component': 'fpn', 'jittor_vs_pytorch': 0.9, 'bridged_vs_pytorch': 0.95}
    detector = {'component': 'detector: gfl_r18_demo', 'bridged_vs_pytorch': 1.03}
    drawn = bench.plot_ratios([component, detector], 'Machine: x86_64; more', str(tmp_path / 'r.png'))
    assert drawn == {'fpn: Jittor': 0.9, 'fpn: bridged': 0.95, 'detector: gfl_r18_demo: bridged': 1.03}
    assert (tmp_path / 'r.png').stat().st_size > 5000


def test_jittor_kernel_profile_lists_the_step_kernels(tmp_path, capsys):
    out_json = tmp_path / 'bench.json'
    assert bench.main(['fpn', '--size', 'small', '--warmup', '1', '--iters', '1',
                       '--profile-jittor', '3', '--memory-steps', '0', '--json', str(out_json)]) == 0
    (result, ) = json.loads(out_json.read_text())
    kernels = result['jittor_kernels']
    assert kernels and all(k['ms'] >= 0 and k['calls'] >= 1 for k in kernels)
    assert [k['ms'] for k in kernels] == sorted((k['ms'] for k in kernels), reverse=True)
    # FPN is convolutions: forward and both backward convolutions run in oneDNN
    names = {k['kernel'].split('\u00ab')[0] for k in kernels}
    assert {'mkl_conv', 'mkl_conv_backward_x', 'mkl_conv_backward_w'} <= names
    out = capsys.readouterr().out
    assert 'fpn: Jittor kernels' in out and 'oneDNN (mkl_*)' in out
    assert len([line for line in out.splitlines() if line.startswith('    ') and ' ms  x' in line]) == 3


def test_detector_run_times_both_detectors(tmp_path):
    out_json = tmp_path / 'det.json'
    assert bench.main(['--detector', 'faster_rcnn_r18_demo', '--detector-batch', '1',
                       '--detector-image-size', '128', '--warmup', '1', '--iters', '1',
                       '--memory-steps', '0', '--json', str(out_json)]) == 0
    (result, ) = json.loads(out_json.read_text())
    assert result['component'] == 'detector: faster_rcnn_r18_demo'
    assert result['shapes'] == [[1, 3, 128, 128]]
    assert result['bridged_vs_pytorch'] == pytest.approx(
        result['bridged']['median_s'] / result['pytorch']['median_s'])


def test_peak_rss_sees_memory_touched_inside_the_block():
    import mmap
    with bench.PeakRSS() as mem:
        # 64 MB of fresh pages, written so that they are resident (a malloc'ed block could reuse
        # pages the allocator keeps resident from earlier tests, which the RSS rightly ignores)
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        block.close()
    assert 60 * 2**20 < mem.growth < 200 * 2**20


def test_peak_memory_is_measured_in_a_fresh_process_per_variant():
    args = bench.parse_args(['fpn', '--size', 'small', '--memory-steps', '1'])
    result = {'component': 'fpn', 'shapes': [[1]], 'pytorch': {'median_s': 1.0},
              'jittor': {'median_s': 1.0}, 'bridged': {'median_s': 1.0},
              'bridge_overhead': 0.0, 'jittor_vs_pytorch': 1.0, 'bridged_vs_pytorch': 1.0}
    probes = []
    real_probe = bench.fresh_process_peak_memory

    def probe(kind, name, variant, args):
        probes.append((kind, name, variant))
        if variant == 'jittor':  # one real child process; the others as stand-ins
            return real_probe(kind, name, variant, args)
        return {'peak_mb': 10.0}

    bench.fresh_process_peak_memory = probe
    try:
        bench.add_peak_memory(result, 'component', 'fpn', args)
    finally:
        bench.fresh_process_peak_memory = real_probe
    assert probes == [('component', 'fpn', v) for v in ('pytorch', 'jittor', 'bridged')]
    jittor_mb = result['jittor']['peak_rss_mb']
    assert jittor_mb > 0  # the Jittor step allocates its activations and gradients
    assert result['jittor_memory_vs_pytorch'] == pytest.approx(jittor_mb / 10.0)
    assert result['bridged_memory_vs_pytorch'] == pytest.approx(1.0)
    row = bench.to_markdown([result], 'h').splitlines()[-1]
    assert row.endswith(f'| 10 / {jittor_mb:.0f} / 10 | {jittor_mb / 10:.2f}x / 1.00x |')


def test_a_failing_memory_probe_names_itself():
    args = bench.parse_args(['fpn', '--size', 'small', '--memory-steps', '1'])
    with pytest.raises(RuntimeError, match=r'memory probe of fpn \(no_such_variant\) failed'):
        bench.fresh_process_peak_memory('component', 'fpn', 'no_such_variant', args)


@pytest.mark.parametrize('name', sorted(bench.DETECTOR_PAIRS))
def test_every_detector_pair_is_the_same_detector_twice(name):
    """Each timed pair builds, and the PyTorch twin's weights load strictly into the Jittor one."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    jittor_cfg, mmdet_cfg = (os.path.join(REPO, p) for p in bench.DETECTOR_PAIRS[name])
    reference = MODELS.build(Config.fromfile(mmdet_cfg).model)
    candidate = MODELS.build(Config.fromfile(jittor_cfg).model)
    candidate.load_state_dict(reference.state_dict(), strict=True)


@pytest.mark.parametrize('argv, message', [
    (['no_such_component'], 'no_such_component'),
    (['fpn', '--iters', '0'], '--iters must be >= 1'),
    (['fpn', '--profile-jittor', '-1'], '--profile-jittor and --memory-steps >= 0'),
    (['fpn', '--memory-steps', '-1'], '--profile-jittor and --memory-steps >= 0'),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert bench.main(argv) == 2
    assert message in capsys.readouterr().err


def test_allocator_setting_can_be_switched_off(monkeypatch):
    assert bench.common.tune_cpu_allocator() is True
    monkeypatch.setenv('JTMM_GLIBC_MALLOC_DEFAULTS', '1')
    assert bench.common.tune_cpu_allocator() is False


@pytest.mark.parametrize('name', sorted(bench.TWIN_BUILDERS))
def test_every_twin_builder_gives_the_jittor_detectors_losses(name, monkeypatch):
    """A detector timed against a PyTorch twin assembled from the alignment references: the twin's
    weights load strictly into the Jittor detector and, on one small batch (two 64-px images, six
    boxes each, train mode), both give the same losses (1e-4 relative). Compared in float64 on both
    sides: in float32 an assignment (DSLA's dynamic k, TAL's top-k) can flip with the thread count
    or the CPU (NanoDet-Plus's loss_dfl 0.5586 vs 0.5710 with OMP_NUM_THREADS=1 did), which is
    rounding, not a twin defect; the float32 decisions are margin-checked in the components' own
    tests (test_nanodet_plus_head.py, test_effide_head.py)."""
    import copy
    monkeypatch.chdir(REPO)
    reference, candidate = bench.build_detector_twins(name)
    data = bench._detector_batch(candidate, 2, 64)
    for sample in data['data_samples']:
        sample.gt_instances.bboxes = sample.gt_instances.bboxes.double()
    losses = []
    for model in (reference, candidate):
        model.double().train()
        losses.append(model.loss(data['inputs'].double(), copy.deepcopy(data['data_samples'])))
    assert set(losses[0]) == set(losses[1]) and len(losses[0]) >= 3
    for key, value in losses[0].items():
        assert losses[1][key].dtype == torch.float64, key
        assert float(losses[1][key]) == pytest.approx(float(value), rel=1e-4), key
    assert float(bench.total_loss(candidate, losses[1])) == pytest.approx(
        float(bench.total_loss(reference, losses[0])), rel=1e-4)


def test_a_twin_option_the_reference_does_not_build_is_named():
    from jt_mm_plugins.alignment.nanodet_reference import RefNanoDetPlus
    from mmengine.config import Config
    model = Config.fromfile(os.path.join(REPO, bench.TWIN_BUILDERS['nanodet_plus_demo'][0])).model
    model.neck['extra_option'] = 1
    with pytest.raises(ValueError, match=r"neck options \['extra_option'\]"):
        RefNanoDetPlus.from_config(model)
    model.neck.pop('extra_option')
    model.bbox_head['norm_cfg'] = dict(type='GN', num_groups=8)  # the reference head builds BN
    with pytest.raises(ValueError, match=r"bbox_head norm_cfg type 'GN' not built"):
        RefNanoDetPlus.from_config(model)
