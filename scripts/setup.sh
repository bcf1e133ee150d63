#!/usr/bin/env bash
# One idempotent set-up of the whole stack into .venv (repo root).
#
# A second run on a machine that is already set up only checks a stamp and returns in seconds.
# Expensive artefacts are cached outside the repo:
#   ~/.cache/pip                          pip's own download cache (torch is ~6 GB installed)
#   $JTMM_CACHE/wheels/torch-<ver>/       the mmcv wheel built here (11-12 min to rebuild on 2 cores)
#   $JTMM_CACHE/jittor-<ver>/             Jittor itself (a fixed path keeps its compile cache shared)
#   ~/.cache/jittor                       Jittor's compiled core and ops
# Knobs (environment): JTMM_CACHE (default ~/.cache/jt_mm_plugins), JTMM_NO_SHARED_WHEELS=1 (ignore
# ../shared/wheels, to prove the cold path), JTMM_FORCE_SETUP=1 (ignore the stamp), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
JTMM_CACHE="${JTMM_CACHE:-$HOME/.cache/jt_mm_plugins}"
TORCH_VERSION="$(sed -n 's/^torch==//p' requirements.txt)"
MMCV_VERSION="$(sed -n 's/^mmcv==//p' requirements.txt)"
WHEEL_CACHE="$JTMM_CACHE/wheels/torch-$TORCH_VERSION"
STAMP="$VENV/.jtmm-setup-stamp"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
start=$(date +%s)

command -v g++ >/dev/null || die "g++ not found. Jittor compiles its kernels with g++ at run time: install it (Debian: apt-get install g++)."
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; set PYTHON=/path/to/python3.11"

# The stamp covers everything that decides the environment's content.
want_stamp="$(cat requirements.txt requirements-test.txt scripts/setup.sh setup.py | sha256sum | cut -c1-16)"
if [[ -z "${JTMM_FORCE_SETUP:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
    # Cheap sanity check: the package imports with Jittor configured (compile cache already warm).
    if "$PY" -c "import jt_mm_plugins" >/dev/null 2>&1; then
        log "environment up to date ($VENV); $(( $(date +%s) - start ))s"
        exit 0
    fi
    log "stamp matches but 'import jt_mm_plugins' fails: repairing"
fi

# A full install writes ~7 GB into .venv (torch alone ~6 GB); pip's "No space left on device" in the
# middle of it leaves a broken venv, so check first and say what is needed.
need_gb=8
free_gb=$(( $(df -Pk "$ROOT" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
if [[ ! -f "$STAMP" && "$free_gb" -lt "$need_gb" ]]; then
    die "only ${free_gb} GB free on the disk holding $ROOT; a fresh set-up needs about ${need_gb} GB (torch ~6 GB in .venv). Free some space (old clones, work_dirs/, /tmp) and rerun."
fi

if [[ ! -x "$PY" ]]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)
# This machine's pip config names local mirrors that lack some packages; pip warns once per package.
exec 2> >(grep --line-buffered -v "is ignored: it is neither a file nor a directory" >&2)
"${PIP[@]}" -q "pip>=23" wheel

log "installing torch==$TORCH_VERSION and torchvision (large download the first time)"
"${PIP[@]}" -q "torch==$TORCH_VERSION" "$(grep '^torchvision==' requirements.txt)" "numpy<2" \
    "$(grep '^setuptools' requirements.txt)"

# --- mmcv with its C++ ops -------------------------------------------------------------------------
FIND_LINKS=(--find-links "$WHEEL_CACHE")
if [[ -z "${JTMM_NO_SHARED_WHEELS:-}" && -d "$ROOT/../shared/wheels" ]]; then
    FIND_LINKS+=(--find-links "$ROOT/../shared/wheels")
fi
mkdir -p "$WHEEL_CACHE"
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
    if ! "${PIP[@]}" -q --no-index --no-deps "${FIND_LINKS[@]}" "mmcv==$MMCV_VERSION" 2>/dev/null; then
        log "no cached mmcv $MMCV_VERSION wheel: building it from source (about 12 minutes on 2 cores)"
        build_dir="$(mktemp -d)"
        # mmcv's setup.py needs a setuptools older than the >=77 that torch requires: build with
        # one, then restore requirements.txt's.
        "${PIP[@]}" -q "setuptools<70"
        # --no-build-isolation: mmcv's metadata step imports torch, which only this venv has.
        "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$build_dir" \
            "mmcv==$MMCV_VERSION"
        tar -xzf "$build_dir"/mmcv-*.tar.gz -C "$build_dir"
        src="$(find "$build_dir" -maxdepth 1 -type d -name 'mmcv-*' | head -n1)"
        # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes older standards.
        sed -i 's/-std=c++14/-std=c++20/g; s/-std=c++17/-std=c++20/g' "$src/setup.py"
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_CACHE" "$src"
        rm -rf "$build_dir"
        "${PIP[@]}" -q "$(grep '^setuptools' requirements.txt)"
        "${PIP[@]}" -q --no-index --no-deps --find-links "$WHEEL_CACHE" "mmcv==$MMCV_VERSION"
        log "mmcv wheel cached in $WHEEL_CACHE"
    fi
fi

# --- Jittor, at a fixed path outside the repo ------------------------------------------------------
# Jittor keys its compile cache (~/.cache/jittor/...) on the location of its own source files. Inside
# each clone's .venv it would recompile its core and every kernel once per clone (tens of minutes on
# 2 cores); installed once under $JTMM_CACHE and put on the venv's path with a .pth file, every clone
# shares one warm cache.
JITTOR_VERSION="$(sed -n 's/^jittor==//p' requirements.txt)"
JITTOR_SITE="$JTMM_CACHE/jittor-$JITTOR_VERSION"
if [[ ! -f "$JITTOR_SITE/jittor/__init__.py" ]]; then
    log "installing jittor==$JITTOR_VERSION into $JITTOR_SITE (shared by every clone)"
    rm -rf "$JITTOR_SITE.tmp.$$"
    "${PIP[@]}" -q --no-deps --target "$JITTOR_SITE.tmp.$$" "jittor==$JITTOR_VERSION"
    rm -rf "$JITTOR_SITE" && mv "$JITTOR_SITE.tmp.$$" "$JITTOR_SITE"
fi
SITE_PACKAGES="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ -d "$SITE_PACKAGES/jittor" ]]; then
    "$PY" -m pip uninstall -y -q jittor  # a per-venv copy would shadow the shared one
fi
echo "$JITTOR_SITE" > "$SITE_PACKAGES/jt_mm_plugins_shared_jittor.pth"

log "installing the rest of requirements.txt"
grep -v '^jittor==' requirements.txt > "$VENV/requirements-without-jittor.txt"
"${PIP[@]}" -q "${FIND_LINKS[@]}" -r "$VENV/requirements-without-jittor.txt" tqdm pillow astunparse
"${PIP[@]}" -q --no-deps --no-build-isolation -e .
"${PIP[@]}" -q --no-deps -r requirements-test.txt  # test-only references (see the file)
"$PY" -c "import jittor_utils, sys; assert jittor_utils.__file__.startswith('$JITTOR_SITE'), \
    f'jittor is imported from {jittor_utils.__file__}, not the shared $JITTOR_SITE'" || \
    die "the shared Jittor install is shadowed; remove other jittor copies from $VENV"

# --- oneDNN for Jittor's CPU convolutions ----------------------------------------------------------
if [[ ! -e /usr/include/dnnl.h ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian's libdnnl-dev (oneDNN) for Jittor"
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -q libdnnl-dev >/dev/null 2>&1) || \
        (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libdnnl-dev >/dev/null) || \
            log "WARNING: apt-get install libdnnl-dev failed"
    fi
fi
if [[ ! -e /usr/include/dnnl.h ]]; then
    cat >&2 <<'EOF'
########################################################################################
# WARNING: oneDNN (Debian package libdnnl-dev) is not installed and could not be installed.
# Jittor's CPU convolutions will be about 100x slower (ResNet-50 step: ~60 s instead of ~0.6 s).
# Install it as root:  apt-get install libdnnl-dev   then run this set-up again.
########################################################################################
EOF
fi
# Linking oneDNN where Jittor looks is done by jt_mm_plugins.runtime at import (also for users who
# installed the package without this script); the warm-up below triggers it and compiles Jittor's core.
log "warming Jittor's compile cache (first time: several minutes)"
"$PY" -m jt_mm_plugins --warmup

echo "$want_stamp" > "$STAMP"
log "done in $(( $(date +%s) - start ))s"
