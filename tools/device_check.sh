#!/usr/bin/env bash
# GPU checks on a machine with an NVIDIA GPU, nvcc, g++, torch + torchvision (CUDA) and pytest, but
# no Jittor / mmcv / mmdet / mmengine and no network: the device machine of this workplace.
#
#   tools/device_check.sh --prepare [CARRY_DIR]   here (network, set-up done): fill CARRY_DIR
#   tools/device_check.sh [CARRY_DIR]             there: run the checks
#   tools/device_check.sh --nvcc-only [CARRY_DIR] anywhere with nvcc, no GPU needed: the CUDA 13
#                                                 compile findings (see below)
#
# CARRY_DIR (default .devcarry in the repo root; git-excluded, never commit it) holds what that
# machine lacks:
#   whl/*.whl                numpy 1.26.4 (Jittor 1.3.11 requires numpy<2) and astunparse, cp312
#   jittor-1.3.11.0/         Jittor's source tree (jittor/, jittor_utils/), as scripts/setup.sh installs it
#   pyinclude/python3.12/    Python headers, used only when the machine has none (Jittor compiles its
#                            core against them at first import)
# It runs (1) an import of Jittor through jt_mm_plugins.runtime, timing the compilation of Jittor's
# core and CUDA libraries, then (2) tests/test_cuda_device.py with JTMM_REQUIRE_CUDA=1.
# Logs go to $OUT (default /tmp/jtmm_device_check): env.txt, import.log, pytest.log, junit.xml.
# The whole run keeps within JTMM_DEVICE_BUDGET_S seconds (default 440).
set -uo pipefail

# Jittor 1.3.11's extern/cuda/inc/helper_cuda.h reads cudaDeviceProp::computeMode and ::clockRate,
# which CUDA 13 removed: with CUDA >= 13 every Jittor source that includes it (executor.cc, the
# allocators, ...) fails to compile. patch_helper_cuda FILE reads them as device attributes instead
# (idempotent). The main run applies it when nvcc is 13 or newer.
cuda_major() { "$1" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p'; }
# The nvcc to give Jittor: it looks for CUDA's lib64/ and include/ beside nvcc's folder, so a link
# or wrapper script elsewhere (this project's machine has /usr/local/bin/nvcc) sends it astray.
cuda_nvcc() {
    local c
    for c in "$(command -v nvcc)" /usr/local/cuda/bin/nvcc; do
        [[ -n "$c" ]] && c="$(readlink -f "$c")" && [[ -e "$(dirname "$c")/../lib64/libcudart.so" ]] \
            && { echo "$c"; return; }
    done
    command -v nvcc || echo /usr/local/cuda/bin/nvcc
}
patch_helper_cuda() {
    "${PYTHON:-python3}" - "$1" <<'PATCH'
import re, sys
path = sys.argv[1]
text = open(path).read()
if 'jtmm_cuda13_attr' not in text:
    lines, device = [], 'devID'
    for line in text.split('\n'):
        found = re.search(r'cudaGetDeviceProperties\(&deviceProp, (\w+)\)', line)
        device = found.group(1) if found else device
        for field, attr in (('computeMode', 'cudaDevAttrComputeMode'),
                            ('clockRate', 'cudaDevAttrClockRate')):
            line = line.replace(f'deviceProp.{field}', f'jtmm_cuda13_attr({attr}, {device})')
        lines.append(line)
    anchor = '#include <helper_string.h>\n'
    assert anchor in text, 'helper_cuda.h changed: review the CUDA 13 patch'
    text = '\n'.join(lines).replace(anchor, anchor + (
        '// jt-mm-plugins tools/device_check.sh: CUDA 13 removed these cudaDeviceProp fields.\n'
        'inline int jtmm_cuda13_attr(cudaDeviceAttr attr, int device) {\n'
        '  int value = 0;\n  cudaDeviceGetAttribute(&value, attr, device);\n  return value;\n}\n'), 1)
    open(path, 'w').write(text)
    print('patched for CUDA 13:', path)
PATCH
}

# --nvcc-only [CARRY_DIR]: what needs nvcc but no GPU. Compiles (1) Jittor's helper_cuda.h as Jittor
# does (-DHAS_CUDA -DIS_CUDA, C++14), as shipped and patched, and (2) CUDA's cub, which Jittor's cub
# ops include, in Jittor's C++14 and in C++17.
if [[ "${1:-}" == "--nvcc-only" ]]; then
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    JT="${2:-$ROOT/.devcarry}/jittor-1.3.11.0/jittor"
    NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
    TMP="$(mktemp -d)"
    echo "$("$NVCC" --version | tail -2 | head -1)"
    mkdir -p "$TMP/inc" && cp "$JT/extern/cuda/inc/"*.h "$TMP/inc/"
    printf '#include "helper_cuda.h"\nint main() { return 0; }\n' > "$TMP/helper.cu"
    printf '#include <cub/cub.cuh>\nint main() { return 0; }\n' > "$TMP/cub.cu"
    compile() {  # name, flags...
        local name=$1; shift
        if "$NVCC" -c "$@" -o "$TMP/out.o" > "$TMP/err" 2>&1; then echo "$name: compiles"
        else echo "$name: FAILS ($(grep -c 'error' "$TMP/err") error lines), first: $(grep -m1 'error' "$TMP/err")"; fi
    }
    FLAGS=(-std=c++14 -DHAS_CUDA -DIS_CUDA -I"$TMP/inc" -I"$JT/src")
    compile "helper_cuda.h as shipped" "${FLAGS[@]}" "$TMP/helper.cu"
    patch_helper_cuda "$TMP/inc/helper_cuda.h" > /dev/null
    compile "helper_cuda.h patched" "${FLAGS[@]}" "$TMP/helper.cu"
    compile "cub/cub.cuh with -std=c++14 (Jittor's)" -std=c++14 "$TMP/cub.cu"
    compile "cub/cub.cuh with -std=c++17" -std=c++17 "$TMP/cub.cu"
    rm -rf "$TMP"
    exit 0
fi

# --core-compile [CARRY_DIR]: compile Jittor's whole core with CUDA on, from a patched copy of the
# carried Jittor, in an empty HOME (the shared ~/.cache/jittor is not touched). Without a GPU the
# import then stops at Jittor's first CUDA call ("cudaErrorInsufficientDriver"): that is the
# expected end; a compile error is a finding. Minutes (5.5 on a loaded 2-core machine).
if [[ "${1:-}" == "--core-compile" ]]; then
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    TMP="$(mktemp -d)"
    cp -a "${2:-$ROOT/.devcarry}/jittor-1.3.11.0" "$TMP/jittor-src"
    patch_helper_cuda "$TMP/jittor-src/jittor/extern/cuda/inc/helper_cuda.h"
    mkdir -p "$TMP/home"
    (cd "$TMP" && HOME="$TMP/home" nvcc_path="$(cuda_nvcc)" \
        use_mkl=0 use_cutt=0 use_cutlass=0 use_nccl=0 use_mpi=0 conv_opt=1 \
        PYTHONPATH="$TMP/jittor-src" "${PYTHON:-$ROOT/.venv/bin/python}" -c 'import jittor') \
        > "$TMP/log" 2>&1
    echo "import rc=$?"
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/log" | grep -o 'Compiling jittor_core([0-9]*/[0-9]*) used: [0-9.]*s' | tail -1
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/log" | grep -i -E 'error|what\(\)|cuda key' | head -20
    rm -rf "$TMP"
    exit 0
fi

if [[ "${1:-}" == "--prepare" ]]; then
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    CARRY="${2:-$ROOT/.devcarry}"
    DEVPY=3.12  # the device machine's Python
    set -e
    mkdir -p "$CARRY/whl" "$CARRY/pyinclude"
    grep -qxF '/.devcarry/' "$ROOT/.git/info/exclude" 2>/dev/null || \
        { mkdir -p "$ROOT/.git/info"; echo '/.devcarry/' >> "$ROOT/.git/info/exclude"; }
    "$ROOT/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version "$DEVPY" \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$CARRY/whl" numpy==1.26.4 astunparse==1.6.3
    JT="$("$ROOT/.venv/bin/python" -c 'import jittor_utils, os; print(os.path.dirname(os.path.dirname(jittor_utils.__file__)))' 2>/dev/null | tail -1)"
    rm -rf "$CARRY/jittor-1.3.11.0" && mkdir -p "$CARRY/jittor-1.3.11.0"
    cp -a "$JT/jittor" "$JT/jittor_utils" "$JT"/jittor-*.dist-info "$CARRY/jittor-1.3.11.0/"
    find "$CARRY/jittor-1.3.11.0" -name __pycache__ -prune -exec rm -rf {} +
    # Headers of any Python $DEVPY.x (the ABI is the minor version's): pyenv's, or a system one.
    INC="$(ls -d /root/.pyenv/versions/$DEVPY.*/include/python$DEVPY /usr/include/python$DEVPY 2>/dev/null | head -1 || true)"
    [[ -n "$INC" ]] && cp -r "$INC" "$CARRY/pyinclude/" || echo "no Python $DEVPY headers found here: carrying none"
    du -sh "$CARRY"/*
    exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARRY="$(cd "${1:-$ROOT/.devcarry}" && pwd)" || { echo "no carry folder ${1:-.devcarry}" >&2; exit 2; }
OUT="${OUT:-/tmp/jtmm_device_check}"
PY="${PYTHON:-python3}"
SITE=/tmp/jtmm_site
SHIM=/tmp/jtmm_pyconfig
BUDGET="${JTMM_DEVICE_BUDGET_S:-440}"
START=$(date +%s)
mkdir -p "$OUT" "$SHIM"
export PYTHONUNBUFFERED=1
left() { local s=$(( BUDGET - ($(date +%s) - START) )); echo $(( s > 1 ? s : 1 )); }
log() { printf '[device_check %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - START ))" "$*"; }

# --- what the machine has ----------------------------------------------------------------------
{
    echo "date: $(date -u)"; echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    echo "nvcc: $(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>&1)"
    (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version) 2>&1 | tail -2
    echo "g++: $(g++ --version 2>&1 | head -1)"; echo "nproc: $(nproc)"
    echo "python: $(command -v "$PY") $("$PY" -VV 2>&1)"
    echo "python3-config --includes: $(python3-config --includes 2>&1)"
    ls /usr/include/python3.* -d 2>&1
    "$PY" -c 'import sysconfig; print("sysconfig include:", sysconfig.get_paths()["include"])'
    "$PY" -c 'import torch, torchvision, numpy; print("torch", torch.__version__, "cuda",
torch.version.cuda, torch.cuda.is_available(), "| torchvision", torchvision.__version__,
"| numpy", numpy.__version__)' 2>&1
    ls /usr/local/cuda/include/cudnn*.h /usr/include/cudnn*.h /usr/include/x86_64-linux-gnu/cudnn*.h \
        2>&1 | head -3
    "$PY" -m pip list 2>/dev/null | grep -i -E "^(pytest|pytest-timeout|cupy|nvidia-cudnn)" || true
} 2>&1 | tee "$OUT/env.txt"

# --- carried packages --------------------------------------------------------------------------
log "installing carried wheels into $SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$CARRY"/whl/*.whl || { log "FAILED: pip install of the carried wheels"; exit 3; }
JITTOR_SRC="${JTMM_JITTOR_SRC:-$CARRY/jittor-1.3.11.0}"  # JTMM_JITTOR_SRC: an installed Jittor instead
export PYTHONPATH="$SITE:$JITTOR_SRC:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

NVCC="$(cuda_nvcc)"
if [[ -z "${nvcc_path:-}" && "$NVCC" != "$(command -v nvcc)" ]]; then
    export nvcc_path="$NVCC"  # jt_mm_plugins.runtime would hand Jittor the nvcc on PATH
    log "the nvcc on PATH ($(command -v nvcc)) has no lib64/ beside it: nvcc_path=$nvcc_path"
fi
if [[ "$(cuda_major "$NVCC")" -ge 13 ]]; then
    if [[ -z "${JTMM_JITTOR_SRC:-}" ]]; then  # the carried copy; an installed Jittor is left as is
        patch_helper_cuda "$JITTOR_SRC/jittor/extern/cuda/inc/helper_cuda.h" || exit 6
    else
        log "CUDA >= 13: $JITTOR_SRC must carry the helper_cuda.h patch (patch_helper_cuda)"
    fi
fi

# Jittor asks python3.X-config for the include flags. Keep the one it finds when its headers exist
# (the flags are part of Jittor's cache keys); otherwise point it at headers that exist.
read -r PYVER PYEXE PYINC EXT_SUFFIX < <("$PY" -c 'import sys, sysconfig
print("%d.%d" % sys.version_info[:2], sys.executable, sysconfig.get_paths()["include"],
      sysconfig.get_config_var("EXT_SUFFIX"))')
PYCONFIG=""
for candidate in "$(dirname "$PYEXE")/python$PYVER-config" "$PYEXE-config" "/usr/bin/python$PYVER-config" \
        "/usr/local/bin/python$PYVER-config" "$(dirname "$PYEXE")/python3-config"; do  # Jittor's order
    [[ -f "$candidate" ]] && { PYCONFIG="$candidate"; break; }
done
FOUND_INC="$([[ -n "$PYCONFIG" ]] && "$PYCONFIG" --includes 2>/dev/null | sed 's/^-I\([^ ]*\).*/\1/')"
if [[ -n "$FOUND_INC" && -f "$FOUND_INC/Python.h" ]]; then
    log "Python headers: $FOUND_INC (from $PYCONFIG)"
else
    if [[ ! -f "$PYINC/Python.h" ]]; then
        log "no Python.h in $PYINC: using the carried headers $CARRY/pyinclude/python$PYVER"
        PYINC="$CARRY/pyinclude/python$PYVER"
        [[ -f "$PYINC/Python.h" ]] || { log "FAILED: no carried headers for Python $PYVER"; exit 4; }
    fi
    cat > "$SHIM/python$PYVER-config" <<EOF
#!/bin/sh
case "\$1" in
    --includes) echo "-I$PYINC -I$PYINC" ;;
    --extension-suffix) echo "$EXT_SUFFIX" ;;
    *) echo "python$PYVER-config shim of tools/device_check.sh: unsupported \$*" >&2; exit 1 ;;
esac
EOF
    chmod +x "$SHIM/python$PYVER-config"
    export python_config_path="$SHIM/python$PYVER-config"
    log "Python headers: $PYINC (python$PYVER-config ${PYCONFIG:-not found}: shim $python_config_path)"
fi

# --- (1) Jittor's first import: core + CUDA libraries compile here -----------------------------
import_jittor() {
    timeout "$(left)" "$PY" - <<'EOF'
import sys, time
sys.path.insert(0, 'tests')
start = time.time()
import test_cuda_device as checks  # imports jt_mm_plugins.runtime, hence Jittor
from jt_mm_plugins import runtime
jt = runtime.jt
print(f'JTMM import of Jittor (core + CUDA libraries compiled): {time.time() - start:.1f} s')
print('JTMM', runtime.describe(), '| jt.has_cuda', jt.has_cuda, '| use_cuda', jt.flags.use_cuda,
      '| cuda_archs', list(jt.flags.cuda_archs), '| nvcc_flags', jt.flags.nvcc_flags)
for lib in ('cub', 'cublas', 'cudnn', 'curand'):
    print('JTMM', lib, 'loaded:', getattr(jt.compile_extern, lib + '_ops', None) is not None)
sys.exit(0 if checks.CUDA else 5)
EOF
}
log "importing Jittor (first import compiles its core and CUDA libraries)"
: > "$OUT/import.log"
for attempt in 1 2 3; do
    import_jittor > /tmp/jtmm_import_attempt.log 2>&1
    rc=$?
    tee -a "$OUT/import.log" < /tmp/jtmm_import_attempt.log
    grep -q 'JTMM import of Jittor' /tmp/jtmm_import_attempt.log && break
    if grep -q 'please rerun your command' /tmp/jtmm_import_attempt.log; then
        log "Jittor rebuilt jit_utils and asks for a rerun"
    elif grep -qi cudnn /tmp/jtmm_import_attempt.log && [[ -z "${conv_opt:-}" ]]; then
        # Jittor 1.3.11 aborts when it finds no cuDNN 7/8 (libcudnn_ops_infer.so); conv_opt=1 makes
        # it skip cuDNN (and cuFFT, cuSPARSE) and use its own convolution.
        log "import failed on cuDNN (rc=$rc): retrying with conv_opt=1"
        export conv_opt=1
    else
        break
    fi
done
log "import rc=$rc"

# --- (2) the GPU tests ---------------------------------------------------------------------------
TIMEOUT_ARGS=()
"$PY" -c 'import pytest_timeout' 2>/dev/null && TIMEOUT_ARGS=(--timeout=150)
log "running tests/test_cuda_device.py ($(left) s left)"
JTMM_REQUIRE_CUDA=1 timeout "$(left)" "$PY" -m pytest tests/test_cuda_device.py -v -rA \
    -p no:cacheprovider --durations=0 "${TIMEOUT_ARGS[@]}" --junitxml="$OUT/junit.xml" 2>&1 \
    | tee "$OUT/pytest.log"
rc=${PIPESTATUS[0]}
log "pytest rc=$rc (conv_opt=${conv_opt:-unset})"
exit "$rc"
