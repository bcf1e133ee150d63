"""Speed and memory of Jittor components against their PyTorch references, in one process.

For each component (the alignment pairs of jt_mm_plugins/alignment/pairs.py) and the same input shapes,
three variants run one forward + backward step:

* ``pytorch``: the PyTorch reference (mmdet / open_clip module);
* ``jittor``: the bare Jittor module, no bridge (``jt.grad`` wrt inputs and parameters);
* ``bridged``: the Jittor module behind the torch bridge, as an mmdet config uses it.

Each variant is warmed up alone (Jittor compiles kernels on first use); then the timed steps alternate
between the variants, round by round, with synchronisation, and the median per variant is reported.
Peak memory is the largest resident-set growth over the variant's warm-up steps, sampled every
millisecond by a background thread, from a baseline taken after ``gc.collect()`` and ``jt.gc()``.
Allocator caches make this an indication, not an exact figure: memory an earlier variant freed to a
cache is not counted again. The header records the machine, threads, ``OMP_WAIT_POLICY`` and the load
average when the run started: numbers taken on a busy machine say so.

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
import statistics
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
    """Context manager measuring the peak resident-set growth (bytes) while it is active."""

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

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.growth = max(self.peak - self.base, 0)


def _torch_step(module: torch.nn.Module, inputs: List) -> Callable[[], None]:
    xs = fresh_inputs(inputs)

    def step():
        module.zero_grad(set_to_none=True)
        outs = module(*xs)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        sum(o.float().mean() for o in outs).backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    return step


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


def _jittor_step(module, inputs: List) -> Callable[[], None]:
    xs = map_structure(torch_to_jittor, inputs)
    input_vars = []
    map_structure(input_vars.append, xs)
    return lambda: jittor_gradients(module, xs, input_vars)


def _time(steps: Dict[str, Callable[[], None]], warmup: int, iters: int, label: str) -> Dict:
    """Per variant: median step time and peak resident-set growth.

    Each variant first runs its warm-up steps alone (Jittor compiles kernels then), under a
    resident-set probe from a baseline taken after freeing what earlier variants left in Jittor's
    and Python's caches. The timed steps then alternate between the variants, round by round, so
    that a change in machine load hits every variant alike instead of whichever ran at the time.
    """
    peaks, times = {}, {variant: [] for variant in steps}
    for variant, step in steps.items():
        gc.collect()
        jt.gc()
        with PeakRSS() as mem:
            for _ in range(max(warmup, 1)):
                step()
        peaks[variant] = mem.growth
    for _ in range(iters):
        for variant, step in steps.items():
            start = time.perf_counter()
            step()
            times[variant].append(time.perf_counter() - start)
    result = {}
    for variant in steps:
        seconds = statistics.median(times[variant])
        result[variant] = {'median_s': seconds, 'peak_rss_mb': peaks[variant] / 2**20}
        print(f'  {label:<12} {variant:<8} median {seconds * 1e3:9.1f} ms   '
              f'peak +{peaks[variant] / 2**20:8.1f} MB', flush=True)
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


def benchmark_pair(name: str, size: str, warmup: int, iters: int, training: bool,
                   profile_top: int = 0) -> Dict:
    candidate, reference, inputs = get_pair(name).build(size, 0)
    candidate.train(training)
    reference.train(training)
    steps = {
        'pytorch': _torch_step(reference, inputs),
        'jittor': _jittor_step(candidate.jittor_module, inputs),
        'bridged': _torch_step(candidate, inputs),
    }
    result = {'component': name, 'size': size, 'shapes': [list(x.shape) for x in leaves(inputs)]}
    result.update(_time(steps, warmup, iters, name))
    result['bridge_overhead'] = result['bridged']['median_s'] / result['jittor']['median_s'] - 1
    result['jittor_vs_pytorch'] = result['jittor']['median_s'] / result['pytorch']['median_s']
    result['bridged_vs_pytorch'] = result['bridged']['median_s'] / result['pytorch']['median_s']
    if profile_top:
        kernels = jittor_kernel_profile(steps['jittor'])
        print(format_kernel_profile(name, kernels, profile_top), flush=True)
        result['jittor_kernels'] = kernels
    return result


# Component level: the alignment pairs that are one bridged Jittor module (the head and detector
# pairs compare losses through probes and are timed at the detector level below).
COMPONENTS = ('clip_resnet', 'fpn', 'resnet')

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
}


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


def benchmark_detector(name: str, warmup: int, iters: int, batch_size: int,
                       image_size: int) -> Dict:
    import copy
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    jittor_cfg, mmdet_cfg = DETECTOR_PAIRS[name]
    torch.manual_seed(0)
    reference = MODELS.build(Config.fromfile(mmdet_cfg).model)
    candidate = MODELS.build(Config.fromfile(jittor_cfg).model)
    candidate.load_state_dict(reference.state_dict(), strict=True)
    data = _detector_batch(reference, batch_size, image_size)
    result = {'component': f'detector: {name}', 'size': f'{batch_size}x3x{image_size}x{image_size}',
              'shapes': [list(data['inputs'].shape)]}

    def training_step(model):
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            losses = model.loss(data['inputs'], copy.deepcopy(data['data_samples']))
            model.parse_losses(losses)[0].backward()
        return step

    result.update(_time({'pytorch': training_step(reference), 'bridged': training_step(candidate)},
                        warmup, iters, name))
    result['bridged_vs_pytorch'] = result['bridged']['median_s'] / result['pytorch']['median_s']
    return result


def to_markdown(results: List[Dict], header: str) -> str:
    lines = [header, '',
             '| component | input shapes | PyTorch ms | Jittor ms | bridged ms | bridge overhead '
             '| Jittor / PyTorch | bridged / PyTorch | peak MB (PyTorch / Jittor / bridged) |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in results:
        shapes = ', '.join('x'.join(map(str, s)) for s in r['shapes'])
        if 'jittor' not in r:  # detector level: the whole detector runs in Jittor, bridged once
            lines.append(
                f"| {r['component']} | {shapes} | {r['pytorch']['median_s'] * 1e3:.1f} | - "
                f"| {r['bridged']['median_s'] * 1e3:.1f} | - | - | {r['bridged_vs_pytorch']:.2f}x "
                f"| {r['pytorch']['peak_rss_mb']:.0f} / - / {r['bridged']['peak_rss_mb']:.0f} |")
            continue
        lines.append(
            f"| {r['component']} | {shapes} | {r['pytorch']['median_s'] * 1e3:.1f} "
            f"| {r['jittor']['median_s'] * 1e3:.1f} | {r['bridged']['median_s'] * 1e3:.1f} "
            f"| {r['bridge_overhead'] * 100:+.1f}% | {r['jittor_vs_pytorch']:.2f}x "
            f"| {r['bridged_vs_pytorch']:.2f}x | {r['pytorch']['peak_rss_mb']:.0f} / "
            f"{r['jittor']['peak_rss_mb']:.0f} / {r['bridged']['peak_rss_mb']:.0f} |")
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
                        help=f'pair names (default: {", ".join(COMPONENTS)})')
    parser.add_argument('--size', choices=['small', 'large'], default='large')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--eval-mode', action='store_true',
                        help='modules in eval mode (default: train mode, as in training)')
    parser.add_argument('--detector', action='append', choices=sorted(DETECTOR_PAIRS), default=[],
                        help='also time a whole pure-Jittor detector training step (repeatable)')
    parser.add_argument('--detector-batch', type=int, default=2)
    parser.add_argument('--detector-image-size', type=int, default=256)
    parser.add_argument('--profile-jittor', type=int, default=0, metavar='N',
                        help='after timing, profile the bare Jittor step of each component with '
                             "Jittor's profiler and print its N most expensive kernels")
    parser.add_argument('--json', help='write the raw results here')
    parser.add_argument('--markdown', help='write the README table here')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='also draw the ratios against PyTorch per component here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    allocator_tuned = common.tune_cpu_allocator()
    args = parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.profile_jittor < 0:
        print('benchmark: --iters must be >= 1, --warmup and --profile-jittor >= 0',
              file=sys.stderr)
        return 2
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
              f'forward + backward; OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "unset")}; '
              f'glibc malloc keeps freed memory: {"yes" if allocator_tuned else "no"}; '
              f'load average at start {os.getloadavg()[0]:.2f}.')
    print(header, flush=True)
    results = [benchmark_pair(n, args.size, args.warmup, args.iters, not args.eval_mode,
                              args.profile_jittor) for n in names]
    results += [benchmark_detector(n, args.warmup, args.iters, args.detector_batch,
                                   args.detector_image_size) for n in args.detector]
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
