"""Jittor's process-wide environment, configured before Jittor is imported.

Every module of this package that needs Jittor imports it through here (``from jt_mm_plugins.runtime
import jt``), so whichever import comes first configures Jittor the same way:

* **No downloads, ever.** Jittor 1.3 downloads oneDNN, cutt, cutlass, NCCL and even a CUDA toolkit at
  import when it does not find them. Here oneDNN comes from Debian's ``libdnnl-dev`` (linked where
  Jittor looks), the other extras are switched off unless the user set their flags, and CUDA is used
  only through a local ``nvcc``.
* **No silent slowness.** Without oneDNN, Jittor's CPU convolutions are about 100x slower: we warn.
* **Same device as torch.** Jittor runs on CUDA exactly when ``torch.cuda.is_available()`` and a local
  nvcc exists; otherwise ``nvcc_path=""`` keeps Jittor from probing CUDA (it crashes without a GPU).

* **Quiet import.** Where Jittor's core is already compiled, importing prints nothing (Jittor's
  ``[i ...]`` start-up lines are hidden; ``log_silent`` is switched back off right after the import, so
  kernel-compilation progress and Jittor's warnings still show later). Where the core is not compiled
  yet, a one-line notice says so and Jittor's own progress is shown.

* **Python's signal handling.** Jittor's SIGCHLD and SIGINT handlers are replaced by Python's
  (see :func:`_restore_signal_handlers`).

Flags the user already set in the environment win over these defaults.
"""
import glob
import os
import shutil
import sys
import sysconfig
import warnings
from importlib import metadata

import torch  # torch first: its MKL/OpenMP runtime then wins any symbol clash with Jittor's.

ONEDNN_HEADER = '/usr/include/dnnl.h'
ONEDNN_LIBRARY_CANDIDATES = ('/usr/lib/x86_64-linux-gnu/libdnnl.so.2',
                             '/usr/lib/aarch64-linux-gnu/libdnnl.so.2', '/usr/lib/libdnnl.so.2')
# The folder name Jittor 1.3.x expects for its oneDNN (it downloads dnnl 2.2.0 there otherwise).
JITTOR_DNNL_DIR = 'dnnl_lnx_2.2.0_cpu_gomp'
_OPTIONAL_DOWNLOADS = ('use_cutt', 'use_cutlass', 'use_nccl', 'use_mpi')

onednn_active = False
cuda_active = False


class JittorEnvironmentError(RuntimeError):
    """Jittor cannot run here; the message says what to install."""


def _jittor_home() -> str:
    # Mirrors jittor_utils.home() without importing it (that import reads flags we have yet to set).
    return os.path.abspath(os.environ.get('JITTOR_HOME', os.path.expanduser('~')))


def _find_onednn_library():
    return next((p for p in ONEDNN_LIBRARY_CANDIDATES if os.path.exists(p)), None)


def link_system_onednn() -> bool:
    """Point Jittor's oneDNN folder at the system oneDNN. Returns whether oneDNN is usable."""
    lib = _find_onednn_library()
    if not (os.path.exists(ONEDNN_HEADER) and lib):
        return False
    root = os.path.join(_jittor_home(), '.cache', 'jittor', 'mkl', JITTOR_DNNL_DIR)
    os.makedirs(os.path.join(root, 'lib'), exist_ok=True)
    links = {os.path.join(root, 'include'): os.path.dirname(ONEDNN_HEADER),
             os.path.join(root, 'lib', 'libmkldnn.so'): lib}
    for link, target in links.items():
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            if not os.path.islink(link):
                # A real download from an earlier plain Jittor install: leave it, it works too.
                continue
            os.remove(link)
        os.symlink(target, link)
    return True


CUDA_HOME_CANDIDATES = ('/usr/local/cuda', )


def find_cuda_toolkit_nvcc(path_nvcc=None, cuda_homes=None):
    """The nvcc Jittor should use: one with the toolkit's ``lib64/`` beside its ``bin/``.

    Jittor loads ``libcudart`` from ``<nvcc>/../../lib64``; an ``nvcc`` found on ``PATH`` may be a
    wrapper script (e.g. ``/usr/local/bin/nvcc``) with no toolkit around it, which sends Jittor to
    a libcudart that does not exist. ``$CUDA_HOME`` / ``$CUDA_PATH`` and ``/usr/local/cuda`` are
    tried after the one on ``PATH``; ``None`` when no candidate has ``lib64/``.
    """
    candidates = [path_nvcc if path_nvcc is not None else shutil.which('nvcc')]
    homes = cuda_homes if cuda_homes is not None else (
        [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')] + list(CUDA_HOME_CANDIDATES))
    candidates += [os.path.join(home, 'bin', 'nvcc') for home in homes if home]
    for nvcc in candidates:
        if nvcc and os.path.isfile(nvcc):
            toolkit = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
            if os.path.isdir(os.path.join(toolkit, 'lib64')):
                return os.path.realpath(nvcc)
    return None


def _configure_environment():
    global onednn_active
    if shutil.which(os.environ.get('cc_path', 'g++')) is None:
        raise JittorEnvironmentError(
            'g++ was not found on PATH. Jittor compiles its kernels with g++ at run time: install it '
            '(Debian/Ubuntu: apt-get install g++) or point the cc_path environment variable at a C++ '
            'compiler.')
    for flag in _OPTIONAL_DOWNLOADS:
        os.environ.setdefault(flag, '0')

    if os.environ.get('use_mkl', '1') == '1':
        onednn_active = link_system_onednn()
        if not onednn_active:
            os.environ['use_mkl'] = '0'  # otherwise Jittor tries to download oneDNN and crashes offline
    if not onednn_active:
        warnings.warn(
            'jt_mm_plugins: oneDNN is not available to Jittor, so its CPU convolutions will be about '
            '100x slower (ResNet-50 step ~60 s instead of ~0.6 s). Install it as root with '
            '"apt-get install libdnnl-dev" (or run scripts/setup.sh) and restart Python.',
            RuntimeWarning, stacklevel=3)

    if 'nvcc_path' not in os.environ:
        nvcc = find_cuda_toolkit_nvcc()
        if torch.cuda.is_available() and nvcc:
            os.environ['nvcc_path'] = nvcc
        else:
            if torch.cuda.is_available():
                warnings.warn('jt_mm_plugins: torch sees a GPU but no nvcc was found, so Jittor runs '
                              'on the CPU. Install the CUDA toolkit or set nvcc_path.', RuntimeWarning,
                              stacklevel=3)
            # An empty path disables CUDA in Jittor, and also stops it downloading its own toolkit.
            os.environ['nvcc_path'] = ''


def jittor_core_compiled() -> bool:
    """Whether a compiled Jittor core for this Jittor and Python exists in Jittor's cache (so
    importing Jittor compiles nothing big). A heuristic: it does not check the compiler version."""
    try:
        version = metadata.version('jittor')
    except metadata.PackageNotFoundError:
        return False
    pattern = os.path.join(_jittor_home(), '.cache', 'jittor', f'jt{version.rsplit(".", 1)[0]}',
                           '*', f'py{sys.version.split()[0]}', '*', '*', '*', '*',
                           'jittor_core' + sysconfig.get_config_var('EXT_SUFFIX'))
    return bool(glob.glob(pattern))


def _silence_jittor_import() -> bool:
    """Hide Jittor's start-up log for the import; returns whether it did (to undo it after)."""
    if 'log_silent' in os.environ:  # the user's choice wins
        return False
    if not jittor_core_compiled():
        print('jt_mm_plugins: compiling Jittor\'s core for this machine (first import here, a few '
              'minutes)...', file=sys.stderr, flush=True)
        return False
    os.environ['log_silent'] = '1'
    return True


_silenced = False
if 'jittor' in sys.modules:
    # Too late to configure; at least say so instead of failing obscurely later.
    warnings.warn('jt_mm_plugins.runtime was imported after jittor: the offline/oneDNN/device '
                  'settings could not be applied. Import jt_mm_plugins before jittor.',
                  RuntimeWarning)
else:
    _configure_environment()
    _silenced = _silence_jittor_import()

import jittor as jt  # noqa: E402  (must follow the configuration above)


def _restore_signal_handlers() -> None:
    """Undo two of the C-level signal handlers Jittor installs at import.

    Its SIGCHLD handler ends this process ("Caught SIGCHLD ... quick exit") whenever any child dies of
    a signal: meant for Jittor's own dataset workers, which this package does not use, it takes down
    a trainer whose launcher, test or tool process loses a child. Its SIGINT handler exits at once
    instead of raising KeyboardInterrupt, so Ctrl-C skips mmengine's and pytest's clean-up. Python's
    own handlers are put back (Jittor keeps its crash handlers: SIGSEGV, SIGBUS, ...).
    """
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if os.environ.get('JPY_PARENT_PID') is None:  # Jittor leaves SIGINT alone under Jupyter
        signal.signal(signal.SIGINT, signal.default_int_handler)


_restore_signal_handlers()


def compiler_python_launcher(cache_path: str, base_python: str, jittor_root: str) -> str:
    """A launcher for the Python that runs Jittor's compiler wrapper, at a path that does not depend
    on the virtual environment; written once into ``cache_path``, returned.

    Jittor starts every kernel's compile command with its Python (``python utils/asm_tuner.py
    --cc_path=g++ ...``) and that command is part of the kernel's cache key (``<kernel>.so.key``).
    With ``sys.executable`` there, every virtual environment (a second clone, CI's checkout) misses
    the whole kernel cache and recompiles each kernel, overwriting the other environment's: a fresh
    clone's test run compiled ~1400 kernels that a warm cache already held. The launcher runs the
    base interpreter with Jittor's folder on ``PYTHONPATH`` (all ``asm_tuner.py`` imports); its name
    carries a hash of its content, so environments with the same interpreter and Jittor share one
    launcher, and others get their own.
    """
    import hashlib
    script = ('#!/bin/sh\n'
              '# written by jt_mm_plugins.runtime: runs Jittor\'s compiler wrapper (see there)\n'
              f'PYTHONPATH="{jittor_root}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{base_python}" "$@"\n')
    digest = hashlib.sha256(script.encode()).hexdigest()[:12]
    path = os.path.join(cache_path, f'jt_mm_python_{digest}')
    if not os.path.isfile(path):
        tmp = f'{path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            f.write(script)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)  # atomic: concurrent processes write the same content
    return path


def _share_kernel_cache_across_environments() -> None:
    base_python = os.path.realpath(getattr(sys, '_base_executable', None) or sys.executable)
    jittor_root = os.path.dirname(os.path.dirname(os.path.abspath(jt.__file__)))
    try:
        jt.flags.python_path = compiler_python_launcher(jt.flags.cache_path, base_python,
                                                        jittor_root)
    except OSError as err:  # a read-only cache: Jittor still works, each venv compiles its own
        warnings.warn(f'jt_mm_plugins: could not write the compiler launcher into '
                      f'{jt.flags.cache_path} ({err}); kernels compiled from this virtual '
                      'environment are not shared with others.', RuntimeWarning, stacklevel=2)


_share_kernel_cache_across_environments()

if _silenced:  # back to Jittor's default: compile progress and warnings show from here on
    os.environ.pop('log_silent')
    jt.flags.log_silent = 0
    import jittor_utils  # noqa: E402
    jittor_utils.LOG.log_silent = 0

if jt.has_cuda and torch.cuda.is_available():
    jt.flags.use_cuda = 1
    cuda_active = True


def describe() -> str:
    """One line on how Jittor is configured, for logs and bug reports."""
    return (f'jittor {jt.__version__}: device={"cuda" if cuda_active else "cpu"}, '
            f'oneDNN={"on" if onednn_active else "OFF (slow CPU convolution)"}, '
            f'torch {torch.__version__}')


def warmup() -> None:
    """Compile the kernels every detector needs once, so later runs start fast."""
    import numpy as np
    x = jt.array(np.random.rand(2, 3, 32, 32).astype('float32'))
    conv = jt.nn.Conv2d(3, 8, 3, padding=1)
    y = jt.nn.relu(conv(x))
    y = jt.nn.pool(y, 2, 'maximum') + jt.nn.pool(y, 2, 'mean')
    loss = (y.reshape(2, -1) @ jt.ones((y.shape[1] * y.shape[2] * y.shape[3], 4))).sum()
    jt.sync(jt.grad(loss, [x, conv.weight]))
