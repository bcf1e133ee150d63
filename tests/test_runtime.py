"""jt_mm_plugins.runtime: offline, oneDNN, device choice, clear errors."""
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(code: str, env_update=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_update or {}))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_import_attempts_no_network_connection():
    """Every socket connection attempt raises; importing the whole package must still succeed."""
    result = _run_python('''
        import socket
        attempts = []
        def refuse(self, address, *a, **k):
            attempts.append(address)
            raise OSError(f'network access attempted: {address}')
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = lambda address, *a, **k: refuse(None, address)
        import jt_mm_plugins
        from jt_mm_plugins.runtime import jt
        x = jt.array([1.0, 2.0])
        assert float((x * 2).sum().item()) == 6.0
        print('ATTEMPTS', attempts)
    ''')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'ATTEMPTS []' in result.stdout


def test_onednn_is_active_on_this_machine():
    if not os.path.exists('/usr/include/dnnl.h'):
        pytest.fail('libdnnl-dev is not installed: run scripts/setup.sh (as root) first')
    from jt_mm_plugins import runtime
    assert runtime.onednn_active
    assert 'oneDNN=on' in runtime.describe()
    # Jittor compiled its oneDNN ops: the mkl conv op is registered.
    from jt_mm_plugins.runtime import jt
    assert jt.compile_extern.mkl_ops is not None


def test_jittor_device_follows_torch():
    import torch
    from jt_mm_plugins import runtime
    assert bool(runtime.jt.flags.use_cuda) == (torch.cuda.is_available() and runtime.cuda_active)
    if not torch.cuda.is_available():
        assert os.environ.get('nvcc_path', '') == '' or not runtime.cuda_active


def test_optional_downloads_are_off_by_default():
    from jt_mm_plugins import runtime  # noqa: F401
    for flag in ('use_cutt', 'use_cutlass', 'use_nccl', 'use_mpi'):
        assert os.environ[flag] == '0'


def test_missing_gxx_gives_a_clear_error():
    result = _run_python('''
        import jt_mm_plugins.runtime
    ''', env_update={'cc_path': 'definitely-not-a-compiler-xyz'})
    assert result.returncode != 0
    assert 'g++ was not found' in result.stderr


def test_missing_onednn_warns_loudly(tmp_path):
    """With oneDNN unavailable, importing warns that CPU convolution is ~100x slower."""
    result = _run_python('''
        import warnings
        warnings.simplefilter('always')
        import jt_mm_plugins.runtime as r
        r.ONEDNN_HEADER = '/nonexistent/dnnl.h'
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            r._configure_environment()
        print('WARNED', any('100x slower' in str(w.message) for w in caught))
        print('USE_MKL', __import__('os').environ['use_mkl'])
    ''', env_update={'use_mkl': '1'})
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'WARNED True' in result.stdout and 'USE_MKL 0' in result.stdout


def test_import_prints_nothing_where_jittor_is_compiled():
    """Quiet by default: no Jittor start-up lines; Jittor's logging is back on after the import."""
    result = _run_python('''
        import jt_mm_plugins
        from jt_mm_plugins.runtime import jt, jittor_core_compiled
        import jittor_utils
        assert jittor_core_compiled()
        assert jt.flags.log_silent == 0 and jittor_utils.LOG.log_silent == 0
    ''')
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == '' and result.stderr == '', (result.stdout + result.stderr)[-2000:]


def test_first_import_on_a_machine_announces_the_compilation(tmp_path, monkeypatch, capsys):
    """Where no compiled core exists (an empty Jittor cache), nothing is silenced and a notice says
    why the import takes minutes."""
    import jt_mm_plugins.runtime as runtime
    monkeypatch.setenv('JITTOR_HOME', str(tmp_path))
    monkeypatch.delenv('log_silent', raising=False)
    assert not runtime.jittor_core_compiled()
    assert runtime._silence_jittor_import() is False
    assert 'log_silent' not in os.environ
    assert "compiling Jittor's core" in capsys.readouterr().err
    monkeypatch.setenv('log_silent', '0')  # the user's own choice is left alone
    monkeypatch.delenv('JITTOR_HOME')
    assert runtime._silence_jittor_import() is False and os.environ['log_silent'] == '0'


def test_only_the_unactionable_stack_messages_are_dropped():
    import logging

    from jt_mm_plugins.utils.log_filters import (UNACTIONABLE_MESSAGES,
                                                 drop_unactionable_messages)
    logger = logging.getLogger('jt_mm_plugins.test_log_filters')
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger.addHandler(Collect())
    drop_unactionable_messages(logger)
    drop_unactionable_messages(logger)
    assert len(logger.filters) == 1
    for prefix, _ in UNACTIONABLE_MESSAGES:
        logger.warning(prefix + ' Please use io functions ...')
    logger.warning('"file_client_args" will be deprecated in future.')  # actionable: a user's config
    assert seen == ['"file_client_args" will be deprecated in future.']


def test_a_child_killed_by_a_signal_does_not_end_the_importing_process():
    """Jittor's SIGCHLD handler would "quick exit" this process; runtime puts Python's back."""
    result = _run_python('''
        import signal, subprocess
        import jt_mm_plugins
        child = subprocess.Popen(['sleep', '30'])
        child.send_signal(signal.SIGKILL)
        child.wait()
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            print('KEYBOARD INTERRUPT RAISED')
        print('STILL ALIVE', child.returncode)
    ''')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'KEYBOARD INTERRUPT RAISED' in result.stdout and 'STILL ALIVE -9' in result.stdout
    assert 'quick exit' not in result.stderr


def test_nvcc_is_the_one_with_the_toolkit_beside_it(tmp_path):
    """A wrapper nvcc on PATH without lib64/ around it is passed over for a real toolkit's."""
    import jt_mm_plugins.runtime as runtime
    wrapper = tmp_path / 'usr_local' / 'bin' / 'nvcc'
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text('#!/bin/sh\n')
    toolkit = tmp_path / 'cuda-13.0'
    (toolkit / 'bin').mkdir(parents=True)
    (toolkit / 'lib64').mkdir()
    (toolkit / 'bin' / 'nvcc').write_text('')
    assert runtime.find_cuda_toolkit_nvcc(str(wrapper), [str(toolkit)]) == str(toolkit / 'bin' / 'nvcc')
    assert runtime.find_cuda_toolkit_nvcc(str(toolkit / 'bin' / 'nvcc'), []) == \
        str(toolkit / 'bin' / 'nvcc')
    assert runtime.find_cuda_toolkit_nvcc(str(wrapper), []) is None
    assert runtime.find_cuda_toolkit_nvcc('', [str(tmp_path / 'nowhere')]) is None  # '': no PATH nvcc


def test_kernel_cache_key_does_not_depend_on_the_virtual_environment(tmp_path):
    # Jittor's compile command (part of each kernel's cache key) starts with its Python: the venv's
    # own python would make every clone recompile every kernel. The launcher is venv-independent
    # and runs Jittor's compiler wrapper's imports.
    from jt_mm_plugins import runtime
    jt = runtime.jt
    launcher = jt.flags.python_path
    assert os.path.dirname(launcher) == jt.flags.cache_path
    assert not launcher.startswith(sys.prefix), launcher
    out = subprocess.run([launcher, '-c', 'import jittor_utils, sys; print(sys.prefix)'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == sys.base_prefix  # the base interpreter, not this venv
    # Same interpreter and Jittor: same launcher; another Jittor: another one, both in place.
    again = runtime.compiler_python_launcher(str(tmp_path), sys.executable, '/opt/jittor-a')
    assert again == runtime.compiler_python_launcher(str(tmp_path), sys.executable, '/opt/jittor-a')
    other = runtime.compiler_python_launcher(str(tmp_path), sys.executable, '/opt/jittor-b')
    assert other != again and os.access(again, os.X_OK) and os.access(other, os.X_OK)
