#!/usr/bin/env bash
# Sets up what compiling clip_depth_ros's CUDA build needs (`--features cuda`)
# on a machine without a CUDA toolkit and without an NVIDIA driver, such as CI
# (Debian, x86_64): the CUDA 13.0 compiler, headers and libraries from the
# PyPI wheels, and a stand-in for the driver library libcuda.so.1.
#
#   scripts/setup-cuda.sh [--force]
#   . .cuda/env.sh
#   scripts/build-cuda.sh            # or cargo build --no-default-features --features cuda
#
# Steps (each is skipped when its outputs exist and its inputs did not change):
#   1. .venv-cuda/: a virtual environment with the pinned CUDA 13.0 wheels
#      (nvcc, nvvm, crt, cccl, cudart, nvrtc, cublas, curand). They all land
#      in site-packages/nvidia/cu13/{bin,include,lib,nvvm}.
#   2. .cuda/lib/: symlinks to the wheels' shared libraries under the names
#      the linker wants (libcublas.so, ...) and the loader wants (libcublas.so.13,
#      ...).
#   3. .cuda/stub/: libcuda.so.1 (and libcuda.so) compiled from
#      scripts/cuda-stub/libcuda_stub.c. It defines the driver API symbols the
#      binary references and fails every call with CUDA_ERROR_NO_DEVICE, so
#      the binary links, starts without a driver, and reports that no CUDA
#      device can be opened. See that file for the design.
#   4. .cuda/env.sh: the environment to source before cargo and before running
#      the CUDA binary.
#
# Link time vs run time (what .cuda/env.sh does):
#   - Linking: LIBRARY_PATH=.cuda/lib:.cuda/stub, so -lcublas, -lcuda, ... find
#     them. The binary records only sonames (libcuda.so.1, libcublas.so.13, ...)
#     and no rpath.
#   - Running: LD_LIBRARY_PATH gets .cuda/lib (the wheels' libraries). The stub
#     directory is appended ONLY when no real libcuda.so.1 is installed
#     (ld.so.cache, WSL, or LD_LIBRARY_PATH), because any LD_LIBRARY_PATH entry,
#     even the last, is searched before ld.so.cache and would hide the driver.
#     Override with CLIP_DEPTH_CUDA_STUB=yes|no (default auto) before sourcing.
#
# --force     redo every step
#
# Running the binary elsewhere (no rpath, so LD_LIBRARY_PATH must name them):
# it needs libcudart.so.13, libcublas.so.13 (which loads libcublasLt.so.13),
# libcurand.so.10 and the driver's libcuda.so.1 (never copy the stub to a GPU
# machine). libnvrtc is linked but dropped by --as-needed.
#
# Environment: CLIP_DEPTH_CUDA_PYTHON (Python 3 interpreter for the venv,
# default python3). CUDA_COMPUTE_CAP (GPU architecture the kernels are
# compiled for, default 90, which candle's build turns into sm_90a: Hopper
# only) is read when env.sh is sourced.
#
# Why 13.0: cudarc 0.19 (candle 0.11's CUDA layer) rejects toolkits newer than
# it knows, and PTX from a newer nvcc cannot be loaded by a 13.0 driver. The
# pins are those of NVIDIA's cuda-toolkit==13.0.2 metapackage (CUDA 13.0
# Update 2; its cuBLAS is 13.1.0.3, soname libcublas.so.13). Kernels are PTX,
# JIT-compiled by the driver on first use: running needs driver >= 580 (13.0).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" setup-cuda

FORCE=0
parse_flags "--force" "$@"

VENV="$ROOT/.venv-cuda"
CUDA_DIR="$ROOT/.cuda"
LIB_DIR="$CUDA_DIR/lib"
STUB_DIR="$CUDA_DIR/stub"
STAMP_DIR="$CUDA_DIR/stamps"
ENV_FILE="$CUDA_DIR/env.sh"
STUB_SRC="$ROOT/scripts/cuda-stub/libcuda_stub.c"
PYTHON="${CLIP_DEPTH_CUDA_PYTHON:-python3}"

REQUIREMENTS="$ROOT/scripts/cuda-requirements.txt"

# The shared libraries candle/cudarc link (-l names) with their sonames, and
# what libnvrtc loads by itself at run time.
LINK_LIBS='cublas:13 cublasLt:13 curand:10 nvrtc:13 cudart:13'
RUNTIME_ONLY_LIBS='libnvrtc-builtins.so.13.0'

# The cudarc version the stub's symbol list was generated from.
STUB_CUDARC_VERSION=0.19.10

START=$(date +%s)

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-aarch64) ;;
  *) die "only Linux x86_64/aarch64 is supported (the CUDA wheels are manylinux)" ;;
esac
command -v "$PYTHON" >/dev/null 2>&1 || die "Python not found: $PYTHON (set CLIP_DEPTH_CUDA_PYTHON)"
command -v cc >/dev/null 2>&1 || die "no C compiler (cc) for the libcuda stub: apt-get install gcc"
command -v g++ >/dev/null 2>&1 || die "no g++: nvcc needs it as host compiler: apt-get install g++"
[ -f "$STUB_SRC" ] || die "missing $STUB_SRC"

mkdir -p "$STAMP_DIR"

# --- 1. virtual environment with the wheels -----------------------------------
PY_ID="$("$PYTHON" -c 'import sys; print(sys.executable, sys.version)')"
VENV_HASH="$( (printf '%s\n' "$PY_ID"; cat "$REQUIREMENTS") | sha)"
[ -f "$STAMP_DIR/venv.sha256" ] || log "installing the CUDA 13.0 wheels (about 1 GB download on first run)"
ensure_venv "$VENV" "$PYTHON" "$STAMP_DIR/venv.sha256" "$VENV_HASH" "$REQUIREMENTS" || true

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
CU13="$SITE/nvidia/cu13"
[ -x "$CU13/bin/nvcc" ] || die "$CU13/bin/nvcc not found (rerun with --force)"
[ -f "$CU13/include/cuda_runtime.h" ] || die "$CU13/include/cuda_runtime.h not found (rerun with --force)"
NVCC_RELEASE="$("$CU13/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p')"
[ "$NVCC_RELEASE" = 13.0 ] || die "nvcc reports release '$NVCC_RELEASE', expected 13.0 (rerun with --force)"

# --- 2. library symlinks --------------------------------------------------------
# Relative links, rebuilt every run (cheap), so that they follow the venv.
rel_cu13_lib="$(realpath --relative-to="$LIB_DIR" -m "$CU13/lib")"
rm -rf "$LIB_DIR"
mkdir -p "$LIB_DIR"
for entry in $LINK_LIBS; do
  name="${entry%%:*}"; major="${entry##*:}"
  soname="lib$name.so.$major"
  [ -f "$CU13/lib/$soname" ] || die "$CU13/lib/$soname not found (rerun with --force)"
  ln -s "$rel_cu13_lib/$soname" "$LIB_DIR/$soname"
  ln -s "$soname" "$LIB_DIR/lib$name.so"
done
for soname in $RUNTIME_ONLY_LIBS; do
  [ -f "$CU13/lib/$soname" ] || die "$CU13/lib/$soname not found (rerun with --force)"
  ln -s "$rel_cu13_lib/$soname" "$LIB_DIR/$soname"
done
log "library links in $LIB_DIR"

# --- 3. the libcuda.so.1 stub ---------------------------------------------------
STUB_HASH="$( (cat "$STUB_SRC"; cc --version | head -1) | sha)"
STUB_STAMP="$STAMP_DIR/stub.sha256"
if stamp_matches "$STUB_STAMP" "$STUB_HASH" && [ -f "$STUB_DIR/libcuda.so.1" ] && [ -L "$STUB_DIR/libcuda.so" ]; then
  log "libcuda stub up to date ($STUB_DIR)"
else
  rm -rf "$STUB_DIR"
  mkdir -p "$STUB_DIR"
  cc -shared -fPIC -O2 -Wall -Wextra -Werror -Wl,-soname,libcuda.so.1 \
    -o "$STUB_DIR/libcuda.so.1" "$STUB_SRC"
  ln -s libcuda.so.1 "$STUB_DIR/libcuda.so"
  n="$(nm -D --defined-only "$STUB_DIR/libcuda.so.1" | grep -c ' T cu' || true)"
  [ "$n" -gt 500 ] || die "the stub defines only $n cu* functions"
  printf '%s\n' "$STUB_HASH" > "$STUB_STAMP"
  log "libcuda stub built ($n driver API functions, $STUB_DIR)"
fi
lock_cudarc="$(grep -A1 '^name = "cudarc"$' "$ROOT/Cargo.lock" 2>/dev/null | sed -n 's/^version = "\(.*\)"$/\1/p' || true)"
if [ -n "$lock_cudarc" ] && [ "$lock_cudarc" != "$STUB_CUDARC_VERSION" ]; then
  log "warning: Cargo.lock has cudarc $lock_cudarc, the stub's symbol list is from $STUB_CUDARC_VERSION;"
  log "         on 'undefined reference to cu...' link errors regenerate it (see $STUB_SRC)"
fi

# --- 4. .cuda/env.sh --------------------------------------------------------------
tmp_env="$(mktemp "$CUDA_DIR/env.sh.XXXXXX")"
{
  cat <<'EOF'
# Environment for building and running clip_depth_ros's CUDA build with the
# CUDA 13.0 wheels. Written by scripts/setup-cuda.sh; edits are overwritten.
# Source it from sh, bash or zsh:  . .cuda/env.sh
#
# CLIP_DEPTH_CUDA_STUB=auto|yes|no (set before sourcing; default auto): whether
# to append the libcuda.so.1 stub to LD_LIBRARY_PATH; auto does so only when
# no NVIDIA driver library is installed. CUDA_COMPUTE_CAP defaults to 90.

EOF
  print_exports CLIP_DEPTH_CUDA_ROOT "$ROOT" CLIP_DEPTH_CUDA_LIB "$LIB_DIR" CLIP_DEPTH_CUDA_STUB_DIR "$STUB_DIR"
  cat <<'EOF'

# The toolkit: nvcc on PATH (found first by candle-kernels' build), CUDA_ROOT
# for cudarc (it adds CUDA_ROOT/lib as link search path and reads the version
# from nvcc). Other toolkit variables are cleared so a system toolkit of
# another version cannot slip into the link.
EOF
  print_exports CUDA_ROOT "$CU13"
  cat <<'EOF'
unset CUDA_HOME CUDA_PATH CUDA_TOOLKIT_ROOT_DIR CUDARC_CUDA_VERSION NVCC
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

EOF
  print_path_helper
  printf '\n'
} > "$tmp_env"
cat >> "$tmp_env" <<'EOF'
_clip_depth_path PATH prepend : "$CUDA_ROOT/bin"
# Link time: -lcublas, -lcublasLt, -lcurand, -lnvrtc, -lcudart, -lcuda.
_clip_depth_path LIBRARY_PATH prepend : "$CLIP_DEPTH_CUDA_STUB_DIR"
_clip_depth_path LIBRARY_PATH prepend : "$CLIP_DEPTH_CUDA_LIB"
# Run time: the wheels' libraries (the binary has no rpath).
_clip_depth_path LD_LIBRARY_PATH prepend : "$CLIP_DEPTH_CUDA_LIB"

# Is a real driver library (libcuda.so.1) installed? Prints yes or nothing.
# (No pipe into grep -q: under pipefail an early exit would read as "absent".)
_clip_depth_cuda_driver() {
  _clip_depth_cuda_cache="$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)"
  case "$_clip_depth_cuda_cache" in
    *"libcuda.so.1 "*) unset _clip_depth_cuda_cache; echo yes; return ;;
  esac
  unset _clip_depth_cuda_cache
  if [ -e /usr/lib/wsl/lib/libcuda.so.1 ]; then echo yes; return; fi
  printf '%s\n' "${LD_LIBRARY_PATH:-}" | tr ':' '\n' | while IFS= read -r _d; do
    if [ -n "$_d" ] && [ "$_d" != "$CLIP_DEPTH_CUDA_STUB_DIR" ] && [ -e "$_d/libcuda.so.1" ]; then
      echo yes; break
    fi
  done
}

case "${CLIP_DEPTH_CUDA_STUB:-auto}" in
  yes|1) CLIP_DEPTH_CUDA_STUB_ACTIVE=1 ;;
  no|0) CLIP_DEPTH_CUDA_STUB_ACTIVE=0 ;;
  *) if [ -n "$(_clip_depth_cuda_driver)" ]; then
       CLIP_DEPTH_CUDA_STUB_ACTIVE=0
     else
       CLIP_DEPTH_CUDA_STUB_ACTIVE=1
     fi ;;
esac
export CLIP_DEPTH_CUDA_STUB_ACTIVE
if [ "$CLIP_DEPTH_CUDA_STUB_ACTIVE" = 1 ]; then
  # No driver: let the binary start and fail cleanly when it opens a device.
  _clip_depth_path LD_LIBRARY_PATH append : "$CLIP_DEPTH_CUDA_STUB_DIR"
else
  # A driver: make sure the stub does not shadow it (e.g. env.sh sourced twice).
  LD_LIBRARY_PATH="$(printf '%s' "$LD_LIBRARY_PATH" | tr ':' '\n' | { grep -v -x -F "$CLIP_DEPTH_CUDA_STUB_DIR" || true; } | paste -sd: -)"
  export LD_LIBRARY_PATH
fi
unset -f _clip_depth_path _clip_depth_cuda_driver
EOF
mv "$tmp_env" "$ENV_FILE"

log "done in $(( $(date +%s) - START ))s; now: . .cuda/env.sh"
