"""Speed and memory of Jittor components against their PyTorch references, in one process.

For each component (the alignment pairs of jt_mm_plugins/alignment/pairs.py) and the same input shapes,
three variants run one forward + backward step:

* ``pytorch``: the PyTorch reference (mmdet / open_clip module);
* ``jittor``: the bare Jittor module, no bridge (``jt.grad`` wrt inputs and parameters);
* ``bridged``: the Jittor module behind the torch bridge, as an mmdet config uses it.

Each variant is warmed up alone (Jittor compiles kernels on first use); then the timed steps alternate
between the variants, round by round, with synchronisation, and the median per variant is reported.

Peak memory is measured per variant in a fresh process of its own (``--memory-steps`` steps, 0 skips it):
the process builds the same models and inputs, then runs only that variant's steps, and reports the peak
resident set during those steps above the resident set just before them (the kernel's high-water mark
``ru_maxrss`` where the steps raised it, else a 1 ms sampler). A fresh process per variant keeps one
framework's allocator caches from hiding the other's memory, which an in-process reading cannot. The
header records the machine, threads, ``OMP_WAIT_POLICY`` and the load average when the run started:
numbers taken on a busy machine say so.

    python tools/benchmark.py                       # all components, real sizes
    python tools/benchmark.py clip_resnet --iters 20 --markdown bench.md
    python tools/benchmark.py --plot bench.png      # + the ratios against PyTorch as a picture
    python tools/benchmark.py --detector faster_rcnn_r18_demo   # + a whole-detector training step
"""
import argparse
import gc
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List

# OpenMP threads that spin-wait at barriers steal the CPU their stragglers need whenever another
# process shares the cores (6-8x slower steps on a 2-core machine, both frameworks); PASSIVE costs
# nothing measurable on an idle machine. libgomp reads it once, when torch loads it.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402

import jt_mm_plugins  # noqa: F401,E402
from jt_mm_plugins import runtime  # noqa: E402
from jt_mm_plugins.alignment import fresh_inputs, get_pair, leaves
from jt_mm_plugins.bridge import torch_to_jittor
from jt_mm_plugins.bridge.tensors import map_structure
from jt_mm_plugins.runtime import jt

_COMMON_SPEC = importlib.util.spec_from_file_location(
    'jt_mm_plugins_tools_common', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               '_common.py'))
common = importlib.util.module_from_spec(_COMMON_SPEC)
_COMMON_SPEC.loader.exec_module(common)


class PeakRSS:
    """Context manager measuring the peak resident-set growth (bytes) while it is active: the
    process's high-water mark (``ru_maxrss``) if the block raised it, else the largest of the
    resident sets sampled every ``interval`` seconds by a background thread."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.page = os.sysconf('SC_PAGE_SIZE')

    def _rss(self) -> int:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    @staticmethod
    def _high_water() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._high_water_before = self._high_water()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        # One last reading: a block shorter than the sampler's interval (a small step on a loaded
        # machine) may end before the thread's first sample, with the memory still held by the
        # allocators' caches, and need not raise a high-water mark set by the imports.
        self.peak = max(self.peak, self._rss())
        high_water = self._high_water()
        if high_water > self._high_water_before:
            self.peak = max(self.peak, high_water)
        self.growth = max(self.peak - self.base, 0)


def _torch_step(module: torch.nn.Module, inputs: List,
                forward_only: bool = False) -> Callable[[], None]:
    xs = fresh_inputs(inputs)

    def forward():  # (inference latency: no graph, no backward)
        with torch.no_grad():
            module(*xs)

    def step():
        module.zero_grad(set_to_none=True)
        outs = module(*xs)
        if isinstance(outs, dict):  # a loss probe: its losses
            outs = [v for k, v in outs.items() if 'loss' in k]
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        sum(o.float().mean() for o in outs).backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    return forward if forward_only else step


def jittor_gradients(module, xs, input_vars: List) -> Dict[str, 'jt.Var']:
    """One bare-Jittor forward + backward: gradients of the outputs' mean wrt every trainable
    parameter (by name) and every input (``input.<i>``), computed and synchronised.

    Parameters are looked up at every call: the bridged variant of the same module replaces its
    parameter Vars when torch-side values change, and a stale list would make Jittor skip every
    weight gradient (it only warns "doesn't have gradient") and so time less work.
    """
    params = {n: p for n, p in module.named_parameters() if not p.is_stop_grad()}
    outs = module(*xs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    loss = sum(o.float32().mean() for o in outs)
    grads = jt.grad(loss, list(params.values()) + input_vars)
    jt.sync(grads)
    jt.sync_all(True)
    names = list(params) + [f'input.{i}' for i in range(len(input_vars))]
    return dict(zip(names, grads))


def _jittor_forward(module, xs) -> None:
    """One bare-Jittor forward without a graph, every output computed."""
    from jt_mm_plugins.bridge.tensors import flatten_structure
    with jt.no_grad():
        jt.sync(flatten_structure(module(*xs), lambda v: isinstance(v, jt.Var)))
    jt.sync_all(True)


def _jittor_step(module, inputs: List, forward_only: bool = False) -> Callable[[], None]:
    xs = map_structure(torch_to_jittor, inputs)
    if forward_only:
        return lambda: _jittor_forward(module, xs)
    input_vars = []
    map_structure(input_vars.append, xs)
    # Gradients w.r.t. float inputs only (a boolean padding mask has none).
    input_vars = [v for v in input_vars if str(v.dtype).startswith('float')]
    return lambda: jittor_gradients(module, xs, input_vars)


def _time(steps: Dict[str, Callable[[], None]], warmup: int, iters: int, label: str) -> Dict:
    """Per variant: the median step time.

    Each variant first runs its warm-up steps alone (Jittor compiles kernels then). The timed steps
    then alternate between the variants, round by round, so that a change in machine load hits every
    variant alike instead of whichever ran at the time.
    """
    times = {variant: [] for variant in steps}
    for step in steps.values():
        for _ in range(warmup):
            step()
    for _ in range(iters):
        for variant, step in steps.items():
            start = time.perf_counter()
            step()
            times[variant].append(time.perf_counter() - start)
    result = {}
    for variant in steps:
        seconds = statistics.median(times[variant])
        result[variant] = {'median_s': seconds}
        print(f'  {label:<12} {variant:<8} median {seconds * 1e3:9.1f} ms', flush=True)
    return result


MEMORY_PROBE_TAG = 'benchmark-memory-probe: '


def probe_peak_memory(kind: str, name: str, variant: str, args) -> Dict:
    """In this process (meant to be a fresh one): build the pair or detector as the timing run
    does, then run ``args.memory_steps`` steps of ``variant`` alone under ``PeakRSS``."""
    if kind == 'component':
        steps, _ = pair_steps(name, args.size, not args.eval_mode, args.forward_only)
    else:
        steps, _ = detector_steps(name, args.detector_batch, args.detector_image_size)
    step = steps[variant]
    del steps  # the other variants' closures (their inputs) are not part of this variant's memory
    gc.collect()
    jt.gc()
    with PeakRSS() as mem:
        for _ in range(args.memory_steps):
            step()
    return {'peak_mb': mem.growth / 2**20, 'before_mb': mem.base / 2**20}


def fresh_process_peak_memory(kind: str, name: str, variant: str, args) -> Dict:
    """``probe_peak_memory`` in a new Python process; a failure names the probe and shows its end."""
    command = [sys.executable, os.path.abspath(__file__), '--memory-probe', f'{kind}:{name}:{variant}',
               '--size', args.size, '--memory-steps', str(args.memory_steps),
               '--detector-batch', str(args.detector_batch),
               '--detector-image-size', str(args.detector_image_size)]
    command += ['--eval-mode'] if args.eval_mode else []
    command += ['--forward-only'] if args.forward_only else []
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MEMORY_PROBE_TAG)]
    if done.returncode != 0 or not lines:
        tail = '\n'.join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(f'benchmark: the memory probe of {name} ({variant}) failed '
                           f'(exit {done.returncode}):\n{tail}')
    result = json.loads(lines[-1][len(MEMORY_PROBE_TAG):])
    print(f'  {name:<12} {variant:<8} peak +{result["peak_mb"]:8.1f} MB (fresh process, '
          f'{args.memory_steps} steps)', flush=True)
    return result


def add_peak_memory(result: Dict, kind: str, name: str, args) -> Dict:
    """Peak memory of each timed variant of ``result``, a fresh process each, and the ratios."""
    if args.memory_steps <= 0:
        return result
    for variant in ('pytorch', 'jittor', 'bridged'):
        if variant in result:
            result[variant]['peak_rss_mb'] = fresh_process_peak_memory(kind, name, variant,
                                                                       args)['peak_mb']
    pytorch_mb = max(result['pytorch']['peak_rss_mb'], 1e-3)
    for variant in ('jittor', 'bridged'):
        if variant in result:
            result[f'{variant}_memory_vs_pytorch'] = result[variant]['peak_rss_mb'] / pytorch_mb
    return result


def jittor_kernel_profile(step: Callable[[], None], repeats: int = 3) -> List[Dict]:
    """Jittor's profiler over ``repeats`` calls of a (warmed-up) step: one entry per kernel with its
    time per step in ms and its calls per step, most expensive first. oneDNN kernels are the
    ``mkl_*`` ones (their ``relay`` wrappers are left out of the totals by Jittor itself)."""
    with jt.profile_scope(warmup=0, rerun=0) as report:
        for _ in range(repeats):
            step()
    header, rows = report[0], report[1:]
    total = header.index('TotalTime')
    kernels = [{'kernel': row[0].split('\n')[0], 'ms': float(row[total]) / repeats / 1e6,
                'calls': int(row[header.index('Count')]) // repeats} for row in rows]
    return sorted(kernels, key=lambda k: -k['ms'])


def format_kernel_profile(name: str, kernels: List[Dict], top: int) -> str:
    total = sum(k['ms'] for k in kernels)
    onednn = sum(k['ms'] for k in kernels if k['kernel'].startswith('mkl_'))
    lines = [f'  {name}: Jittor kernels {total:.1f} ms per step, oneDNN (mkl_*) '
             f'{onednn:.1f} ms ({onednn / max(total, 1e-9):.0%})']
    lines += [f'    {k["ms"]:8.1f} ms  x{k["calls"]:<4d} {k["kernel"][:110]}' for k in kernels[:top]]
    return '\n'.join(lines)


def pair_steps(name: str, size: str, training: bool, forward_only: bool = False):
    """The three variants' step functions of an alignment pair, and the input shapes (a
    ``MODE_PAIRS`` entry: ``pytorch`` is its mixed-mode reference, ``bridged`` its pure-Jittor
    candidate, no bare-Jittor variant)."""
    candidate, reference, inputs = get_pair(name).build(size, 0)
    candidate.train(training)
    reference.train(training)
    steps = {'pytorch': _torch_step(reference, inputs, forward_only)}
    if name not in MODE_PAIRS:
        steps['jittor'] = _jittor_step(candidate.jittor_module, inputs, forward_only)
    steps['bridged'] = _torch_step(candidate, inputs, forward_only)
    return steps, [list(x.shape) for x in leaves(inputs)]


def benchmark_pair(name: str, size: str, warmup: int, iters: int, training: bool,
                   profile_top: int = 0, forward_only: bool = False) -> Dict:
    steps, shapes = pair_steps(name, size, training, forward_only)
    label = f'{name} (vs mixed mode)' if name in MODE_PAIRS else name
    result = {'component': label, 'size': size, 'shapes': shapes}
    result.update(_time(steps, warmup, iters, name))
    result['bridged_vs_pytorch'] = result['bridged']['median_s'] / result['pytorch']['median_s']
    if name in MODE_PAIRS:
        return result
    result['bridge_overhead'] = result['bridged']['median_s'] / result['jittor']['median_s'] - 1
    result['jittor_vs_pytorch'] = result['jittor']['median_s'] / result['pytorch']['median_s']
    if profile_top:
        kernels = jittor_kernel_profile(steps['jittor'])
        print(format_kernel_profile(name, kernels, profile_top), flush=True)
        result['jittor_kernels'] = kernels
    return result


# Component level: the alignment pairs that are one bridged Jittor module (the head and detector
# pairs compare losses through probes and are timed at the detector level below).
COMPONENTS = ('clip_resnet', 'fpn', 'resnet', 'shufflenet_v2', 'ghost_pan', 'detr_encoder',
              'detr_decoder', 'efficient_rep')

# Pairs without a PyTorch twin whose reference is the same model in mixed mode (mmdet's modules
# holding the same Jittor parts): one training step of the summed losses; in the tables the
# "PyTorch" column is the mixed mode, "bridged" the pure-Jittor one (no bare-Jittor variant).
# unidetector_roi_head_modes: CLIPResLayer + BBoxHeadCLIPPartitioned (forward, cosine classifier,
# federated and box losses, backward), JittorStandardRoIHead vs mmdet's StandardRoIHead
# (MetaStandardRoIHead; assignment, sampling, RoI bookkeeping in torch), same Jittor RoI extractor.
# (The pair unidetector_roi_head is the same RoI head against its PyTorch twin, a regular entry.)
MODE_PAIRS = ('unidetector_roi_head_modes', )

# Detector level: one training step (loss + backward) of a detector with Jittor parts against its
# all-PyTorch twin (same architecture, weights, batch). (jittor config, PyTorch config) pairs:
DETECTOR_PAIRS = {
    'faster_rcnn_r18_demo': ('configs/demo/faster_rcnn_r18_fpn_demo_jittor.py',
                             'configs/demo/faster_rcnn_r18_fpn_demo_mmdet.py'),
    # mixed mode: CLIPResNet + JittorFPN in Jittor, mmdet heads; twin all PyTorch
    'faster_rcnn_clip_mixed_demo': ('configs/demo/faster_rcnn_clip_rn_jittor_fpn_demo.py',
                                    'configs/demo/faster_rcnn_clip_rn_fpn_demo_torch.py'),
    # one-stage: JittorGFL (all Jittor), and mmdet's GFL holding the Jittor GFL head (mixed)
    'gfl_r18_demo': ('configs/demo/gfl_r18_fpn_demo_jittor.py',
                     'configs/demo/gfl_r18_fpn_demo_mmdet.py'),
    'gfl_r18_jittor_head_demo': ('configs/demo/gfl_r18_fpn_jittor_head_demo.py',
                                 'configs/demo/gfl_r18_fpn_demo_mmdet.py'),
    # DETR: JittorDETR (all Jittor) against mmdet's DETR
    'detr_r18_demo': ('configs/demo/detr_r18_demo_jittor.py', 'configs/demo/detr_r18_demo_mmdet.py'),
}
# Detectors without an mmdet twin: (jittor config, 'module:Class' of a PyTorch twin assembled from
# the alignment references). The class's ``from_config(model_cfg)`` builds the twin with the Jittor
# detector's parameter names (its state dict loads strictly into it); its ``loss(inputs,
# data_samples)`` returns a dict of losses as mmdet's detectors do.
TWIN_BUILDERS = {
    # NanoDet-Plus-m (3 classes): torchvision trunk, the spec's GhostPAN, head, aux head, AGM losses
    'nanodet_plus_demo': ('configs/demo/nanodet-plus_demo_jittor.py',
                          'jt_mm_plugins.alignment.nanodet_reference:RefNanoDetPlus'),
    # Gold-YOLO-N (3 classes): yolov6detect's EfficientRep / Detect / ComputeLoss, torch RepGD neck
    'gold_yolo_n_demo': ('configs/demo/gold_yolo_n_demo_jittor.py',
                         'jt_mm_plugins.alignment.repgd_reference:TorchGoldYOLO'),
}


def build_detector_twins(name: str):
    """``(reference, candidate)`` of a ``DETECTOR_PAIRS`` or ``TWIN_BUILDERS`` entry: the PyTorch
    detector and the one with Jittor parts, its weights loaded (strictly) from the reference."""
    import importlib
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    torch.manual_seed(0)
    if name in TWIN_BUILDERS:
        jittor_cfg, twin = TWIN_BUILDERS[name]
        module, cls = twin.split(':')
        reference = getattr(importlib.import_module(module), cls).from_config(
            Config.fromfile(jittor_cfg).model)
    else:
        jittor_cfg, mmdet_cfg = DETECTOR_PAIRS[name]
        reference = MODELS.build(Config.fromfile(mmdet_cfg).model)
    candidate = MODELS.build(Config.fromfile(jittor_cfg).model)
    candidate.load_state_dict(reference.state_dict(), strict=True)
    return reference, candidate


def total_loss(model, losses: Dict) -> torch.Tensor:
    """mmengine's ``parse_losses`` total where the model has it, else the sum of the ``loss*``
    entries (what it sums)."""
    if hasattr(model, 'parse_losses'):
        return model.parse_losses(losses)[0]
    return sum(value for key, value in losses.items() if 'loss' in key)


def _detector_batch(model, batch_size: int, image_size: int):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(0)
    images, samples = [], []
    for _ in range(batch_size):
        shape = (image_size, image_size)
        sample = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape,
                                             scale_factor=(1., 1.)))
        gt = InstanceData()
        corners = torch.rand(6, 2, generator=generator) * image_size * 0.7
        gt.bboxes = torch.cat([corners, corners + image_size * 0.25], dim=1)
        gt.labels = torch.randint(0, 3, (6, ), generator=generator)
        sample.gt_instances = gt
        samples.append(sample)
        images.append((torch.rand(3, *shape, generator=generator) * 255).to(torch.uint8))
    return model.data_preprocessor({'inputs': images, 'data_samples': samples}, True)


def detector_steps(name: str, batch_size: int, image_size: int):
    """Training-step functions of a detector pair (``pytorch``: the all-PyTorch twin, ``bridged``:
    the one with Jittor parts, its weights loaded from the twin) and the batch shape."""
    import copy
    reference, candidate = build_detector_twins(name)
    data = _detector_batch(candidate, batch_size, image_size)

    def training_step(model):
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            losses = model.loss(data['inputs'], copy.deepcopy(data['data_samples']))
            total_loss(model, losses).backward()
        return step

    steps = {'pytorch': training_step(reference), 'bridged': training_step(candidate)}
    return steps, [list(data['inputs'].shape)]


def benchmark_detector(name: str, warmup: int, iters: int, batch_size: int,
                       image_size: int) -> Dict:
    steps, shapes = detector_steps(name, batch_size, image_size)
    result = {'component': f'detector: {name}', 'size': f'{batch_size}x3x{image_size}x{image_size}',
              'shapes': shapes}
    result.update(_time(steps, warmup, iters, name))
    result['bridged_vs_pytorch'] = result['bridged']['median_s'] / result['pytorch']['median_s']
    return result


def _memory_cells(r: Dict) -> str:
    """'peak MB (PyTorch / Jittor / bridged)' and 'memory vs PyTorch' cells ('-' where not measured)."""
    def mb(variant):
        value = r.get(variant, {}).get('peak_rss_mb')
        return '-' if value is None else f'{value:.0f}'

    def ratio(variant):
        value = r.get(f'{variant}_memory_vs_pytorch')
        return '-' if value is None else f'{value:.2f}x'

    return (f"{mb('pytorch')} / {mb('jittor')} / {mb('bridged')} "
            f"| {ratio('jittor')} / {ratio('bridged')}")


def to_markdown(results: List[Dict], header: str) -> str:
    lines = [header, '',
             '| component | input shapes | PyTorch ms | Jittor ms | bridged ms | bridge overhead '
             '| Jittor / PyTorch | bridged / PyTorch | peak MB, fresh process (PyTorch / Jittor / '
             'bridged) | peak memory vs PyTorch (Jittor / bridged) |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in results:
        shapes = ', '.join('x'.join(map(str, s)) for s in r['shapes'])
        if 'jittor' not in r:  # detector level (the whole detector in Jittor, bridged once) or a
            # MODE_PAIRS entry (no bare-Jittor variant)
            lines.append(
                f"| {r['component']} | {shapes} | {r['pytorch']['median_s'] * 1e3:.1f} | - "
                f"| {r['bridged']['median_s'] * 1e3:.1f} | - | - | {r['bridged_vs_pytorch']:.2f}x "
                f"| {_memory_cells(r)} |")
            continue
        lines.append(
            f"| {r['component']} | {shapes} | {r['pytorch']['median_s'] * 1e3:.1f} "
            f"| {r['jittor']['median_s'] * 1e3:.1f} | {r['bridged']['median_s'] * 1e3:.1f} "
            f"| {r['bridge_overhead'] * 100:+.1f}% | {r['jittor_vs_pytorch']:.2f}x "
            f"| {r['bridged_vs_pytorch']:.2f}x | {_memory_cells(r)} |")
    return '\n'.join(lines)


def plot_ratios(results: List[Dict], header: str, out_file: str) -> Dict[str, float]:
    """Draw the speed ratios against PyTorch per component (Jittor alone and bridged; detectors:
    bridged) as bars around the 1.0 line into ``out_file``. Returns the drawn ratios by label."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display needed
    import matplotlib.pyplot as plt

    drawn = {}
    for r in results:
        if 'jittor_vs_pytorch' in r:
            drawn[f"{r['component']}: Jittor"] = r['jittor_vs_pytorch']
        drawn[f"{r['component']}: bridged"] = r['bridged_vs_pytorch']
    labels = list(drawn)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.6))
    y = range(len(labels))
    ax.barh(y, [drawn[k] for k in labels], height=0.6,
            color=['tab:green' if drawn[k] <= 1.0 else 'tab:orange' for k in labels])
    ax.axvline(1.0, color='black', linewidth=1)
    for i, k in zip(y, labels):
        ax.text(drawn[k], i, f' {drawn[k]:.2f}x', va='center', fontsize=8)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('time / PyTorch time (median step; < 1 is faster than PyTorch)')
    ax.set_title(header.split(';')[0] + ', ' + time.strftime('%Y-%m-%d'), fontsize=8)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return drawn


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Jittor vs PyTorch component benchmark')
    parser.add_argument('components', nargs='*',
                        help=f'pair names (default: {", ".join(COMPONENTS)}; also '
                             f'{", ".join(MODE_PAIRS)}: pure vs mixed mode)')
    parser.add_argument('--size', choices=['small', 'large'], default='large')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--eval-mode', action='store_true',
                        help='modules in eval mode (default: train mode, as in training)')
    parser.add_argument('--forward-only', action='store_true',
                        help='time the forward alone, without a graph (inference latency; use '
                             'with --eval-mode), e.g. nanodet_plus at batch 1')
    parser.add_argument('--detector', action='append', default=[],
                        choices=sorted({**DETECTOR_PAIRS, **TWIN_BUILDERS}),
                        help='also time a whole pure-Jittor detector training step (repeatable)')
    parser.add_argument('--detector-batch', type=int, default=2)
    parser.add_argument('--detector-image-size', type=int, default=256)
    parser.add_argument('--profile-jittor', type=int, default=0, metavar='N',
                        help='after timing, profile the bare Jittor step of each component with '
                             "Jittor's profiler and print its N most expensive kernels")
    parser.add_argument('--memory-steps', type=int, default=3, metavar='N',
                        help='peak memory of each variant over N steps, in a fresh process each '
                             '(0: do not measure memory)')
    parser.add_argument('--memory-probe', metavar='KIND:NAME:VARIANT', help=argparse.SUPPRESS)
    parser.add_argument('--json', help='write the raw results here')
    parser.add_argument('--markdown', help='write the README table here')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='also draw the ratios against PyTorch per component here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    allocator_tuned = common.tune_cpu_allocator()
    args = parse_args(argv)
    if args.iters < 1 or min(args.warmup, args.profile_jittor, args.memory_steps) < 0:
        print('benchmark: --iters must be >= 1, --warmup, --profile-jittor and --memory-steps >= 0',
              file=sys.stderr)
        return 2
    if args.memory_probe:  # the child process of fresh_process_peak_memory
        kind, name, variant = args.memory_probe.split(':')
        print(MEMORY_PROBE_TAG + json.dumps(probe_peak_memory(kind, name, variant, args)), flush=True)
        return 0
    try:
        names = [get_pair(n).name for n in (args.components or
                                            ([] if args.detector else list(COMPONENTS)))]
    except KeyError as e:
        print(f'benchmark: {e.args[0]}', file=sys.stderr)
        return 2
    header = (f'Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
              f'torch threads {torch.get_num_threads()}; {runtime.describe()}; '
              f'{time.strftime("%Y-%m-%d")}; median of {args.iters} steps after {args.warmup} '
              f'warm-up, variants alternating; {"eval" if args.eval_mode else "train"} mode; '
              f'{"forward only" if args.forward_only else "forward + backward"}; OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "unset")}; '
              f'glibc malloc keeps freed memory: {"yes" if allocator_tuned else "no"}; '
              f'load average at start {os.getloadavg()[0]:.2f}; peak memory: '
              + (f'{args.memory_steps} steps per variant in a fresh process each.'
                 if args.memory_steps else 'not measured.'))
    print(header, flush=True)
    results = [add_peak_memory(benchmark_pair(n, args.size, args.warmup, args.iters,
                                              not args.eval_mode, args.profile_jittor,
                                              args.forward_only),
                               'component', n, args) for n in names]
    results += [add_peak_memory(benchmark_detector(n, args.warmup, args.iters, args.detector_batch,
                                                   args.detector_image_size),
                                'detector', n, args) for n in args.detector]
    table = to_markdown(results, header)
    print('\n' + table)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(table + '\n')
    if args.plot:
        plot_ratios(results, header, args.plot)
        print(f'benchmark: plot written to {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
