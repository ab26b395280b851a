#!/usr/bin/env bash
# Build dlib 20.0.1 from its PyPI source distribution against OpenBLAS, with AVX, and
# install it into the current Python environment (the one `$PYTHON` belongs to).
#
# Why: the prebuilt dlib-bin wheel (the project's quick laptop install) has no BLAS, so
# face embeddings cost about 4x more CPU. This build gives the same embeddings (max abs
# difference ~1e-7) and the same detection boxes; figures in docs/performance.md ("The dlib build").
#
# Usage (as root on Debian/Ubuntu, or with the build packages already installed):
#   infra/build-dlib.sh                          # build the wheel, install it, verify
#   WHEEL_DIR=/wheels INSTALL=0 infra/build-dlib.sh  # only build the wheel (and check the build log)
#
# Environment:
#   PYTHON        interpreter to build for and install into (default: python3)
#   WHEEL_DIR     where the wheel is written (default: ./dist-dlib)
#   INSTALL       1 = install the wheel into $PYTHON's environment and verify (default 1)
#   ARCH_FLAGS    compiler flags selecting the instruction set (default: -march=x86-64-v3,
#                 i.e. AVX2 + FMA, any x86-64 CPU since 2013-2015; the measured fastest).
#                 Use ARCH_FLAGS=-mavx for a CPU without AVX2 (the level dlib-bin has; its
#                 HOG detection was 2x slower in our build, see docs/performance.md ("The dlib build")).
#   JOBS          parallel compile jobs (default: nproc). About 1.2 GB RAM per job.
#
# How the options reach CMake. dlib 20.0.1's setup.py documents `--set NAME=VALUE` and
# `--no NAME`, but it parses them only after setuptools has parsed the command line, so
# `setup.py bdist_wheel --set ...` (and pip's --config-settings/--build-option) fails with
# "option --set not recognized". What does work, and is used here:
#   * every environment variable whose name starts with DLIB_ is passed to CMake as -DNAME=VALUE;
#   * CXXFLAGS/CFLAGS seed CMAKE_CXX_FLAGS/CMAKE_C_FLAGS (CMake's own rule);
#   * CMAKE_BUILD_PARALLEL_LEVEL sets make -jN; setup.py always builds CMAKE_BUILD_TYPE=Release.
# USE_AVX_INSTRUCTIONS has no DLIB_ prefix, so it cannot be set that way; dlib turns it on
# by itself when the *build host* can run AVX, and it adds exactly -mavx. We pass the
# instruction set ourselves (ARCH_FLAGS, default -march=x86-64-v3), so the result does not
# depend on the machine the image is built on. (ARCH_FLAGS deliberately has no DLIB_ prefix.)
set -euo pipefail

DLIB_VERSION=20.0.1
PYTHON=${PYTHON:-python3}
WHEEL_DIR=${WHEEL_DIR:-$PWD/dist-dlib}
INSTALL=${INSTALL:-1}
ARCH_FLAGS=${ARCH_FLAGS:--march=x86-64-v3}
JOBS=${JOBS:-$(nproc)}
BUILD_PACKAGES=(build-essential cmake pkg-config libopenblas-dev)

log() { printf '[build-dlib] %s\n' "$*" >&2; }

# 1. Debian build packages, only those missing.
missing=()
for pkg in "${BUILD_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing Debian packages: ${missing[*]} (run as root or install them first)"; exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# 2. Build the wheel from the pinned sdist. --no-binary dlib: never take a prebuilt dlib.
mkdir -p "$WHEEL_DIR"
build_log="$WHEEL_DIR/dlib-$DLIB_VERSION-build.log"
log "building dlib==$DLIB_VERSION (CXXFLAGS='$ARCH_FLAGS', $JOBS jobs); log: $build_log"
start=$(date +%s)
env \
    DLIB_USE_BLAS=ON \
    DLIB_USE_LAPACK=ON \
    DLIB_USE_CUDA=OFF \
    DLIB_NO_GUI_SUPPORT=ON \
    CXXFLAGS="$ARCH_FLAGS ${CXXFLAGS:-}" \
    CFLAGS="$ARCH_FLAGS ${CFLAGS:-}" \
    CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
    "$PYTHON" -m pip wheel --verbose --no-deps --no-cache-dir --no-binary dlib \
        "dlib==$DLIB_VERSION" --wheel-dir "$WHEEL_DIR" >"$build_log" 2>&1 \
    || { tail -40 "$build_log" >&2; log "build failed"; exit 1; }
log "built in $(( $(date +%s) - start )) s"

# The build log must show what we asked for; a silent fallback (no BLAS) is a failure.
grep -q 'Found OpenBLAS library\|Found BLAS and LAPACK via pkg-config\|Found Intel MKL' "$build_log" \
    || { log "CMake did not find a BLAS library (see $build_log)"; exit 1; }
grep -q 'DLIB WILL USE CUDA' "$build_log" && { log "CUDA was enabled (unexpected)"; exit 1; }
grep -m1 'Invoking CMake setup' "$build_log" >&2 || true

wheel=$(ls -t "$WHEEL_DIR"/dlib-"$DLIB_VERSION"-*.whl | head -1)
log "wheel: $wheel"

# 3. Install and verify. dlib-bin ships the same files (dlib/, _dlib_pybind11*.so): remove it
#    FIRST, because uninstalling it after installing dlib deletes dlib's files too.
if [ "$INSTALL" = 1 ]; then
    if "$PYTHON" -m pip show dlib-bin >/dev/null 2>&1; then
        log "removing dlib-bin (provides the same module)"
        "$PYTHON" -m pip uninstall -y dlib-bin
    fi
    "$PYTHON" -m pip install --no-deps --force-reinstall "$wheel"
    "$PYTHON" - <<'EOF'
import dlib, sys
flags = {k: getattr(dlib, k) for k in ("DLIB_USE_BLAS", "DLIB_USE_LAPACK", "DLIB_USE_CUDA", "USE_AVX_INSTRUCTIONS")}
print(f"[build-dlib] installed dlib {dlib.__version__}: {flags}", file=sys.stderr)
if dlib.__version__ != "20.0.1" or not dlib.DLIB_USE_BLAS or not dlib.USE_AVX_INSTRUCTIONS or dlib.DLIB_USE_CUDA:
    sys.exit("[build-dlib] verification failed: want 20.0.1 with DLIB_USE_BLAS, USE_AVX_INSTRUCTIONS, no CUDA")
EOF
fi
