#!/usr/bin/env bash
# Compiles the CUDA build of the clip_depth CLI and smoke-tests it.
#
#   scripts/setup-cuda.sh             # once: CUDA 13.0 wheels, .cuda/env.sh
#   scripts/build-cuda.sh [--no-check] [cargo build options, e.g. --release]
#   scripts/build-cuda.sh --check-only   # what CI runs: a compile check
#
# Runs, with .cuda/env.sh sourced:
#   cargo build --no-default-features --features cuda --bin clip_depth
# with CARGO_TARGET_DIR defaulting to target/cuda (so the CPU build in target/
# is neither invalidated nor locked), then checks the binary on the tiny
# fixture model:
#   - it links libcuda.so.1 by soname and has no rpath;
#   - `infer --device cuda:0`: without an NVIDIA driver (the libcuda stub in
#     use) it must exit 2 with exactly one stderr line that mentions CUDA;
#     with a driver it must succeed;
#   - `infer --device cpu` must succeed.
#
# --no-check    build only
# --check-only  compile every CUDA path as fast as possible (profile
#               cuda-check: nothing optimised; candle's kernels compiled with
#               nvcc -G, which skips device optimisation), then the smoke
#               checks. The binary is for the checks only, never for a GPU.
#
# A first build takes about 9 minutes on 2 idle cores, 6 of them nvcc compiling
# candle's kernels (candle-kernels' build script); later builds seconds.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" build-cuda

CHECK=1
CARGO_ARGS=()
PROFILE_DIR=debug
expect_profile=0
for arg in "$@"; do
  if [ "$expect_profile" = 1 ]; then
    expect_profile=0
    [ "$arg" = dev ] && PROFILE_DIR=debug || PROFILE_DIR="$arg"
    CARGO_ARGS+=("$arg"); continue
  fi
  case "$arg" in
    --no-check) CHECK=0 ;;
    --check-only) PROFILE_DIR=cuda-check; CARGO_ARGS+=(--profile cuda-check); export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }-G" ;;
    -h|--help) usage; exit 0 ;;
    --release|-r) PROFILE_DIR=release; CARGO_ARGS+=("$arg") ;;
    --profile) expect_profile=1; CARGO_ARGS+=("$arg") ;;
    --profile=*) p="${arg#--profile=}"; [ "$p" = dev ] && PROFILE_DIR=debug || PROFILE_DIR="$p"; CARGO_ARGS+=("$arg") ;;
    *) CARGO_ARGS+=("$arg") ;;
  esac
done

[ -f "$ROOT/.cuda/env.sh" ] || die "no .cuda/env.sh: run scripts/setup-cuda.sh first"
# shellcheck disable=SC1091
. "$ROOT/.cuda/env.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cuda}"
cd "$ROOT"

START=$(date +%s)
log "cargo build --no-default-features --features cuda --bin clip_depth ${CARGO_ARGS[*]:-} (CARGO_TARGET_DIR=$CARGO_TARGET_DIR, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
cargo build --no-default-features --features cuda --bin clip_depth ${CARGO_ARGS[@]+"${CARGO_ARGS[@]}"}
log "built in $(( $(date +%s) - START ))s"

BIN="$CARGO_TARGET_DIR/$PROFILE_DIR/clip_depth"
[ -x "$BIN" ] || die "built binary not found at $BIN"
log "binary: $BIN"
[ "$CHECK" = 1 ] || exit 0

# --- checks -----------------------------------------------------------------------
FAILED=0
fail() { printf 'build-cuda: FAIL: %s\n' "$*" >&2; FAILED=1; }
ok() { printf 'build-cuda: ok: %s\n' "$*" >&2; }

dyn="$(readelf -d "$BIN")"
if printf '%s\n' "$dyn" | grep -q 'NEEDED.*\[libcuda\.so\.1\]'; then
  ok "links libcuda.so.1 by soname"
else
  fail "the binary does not link libcuda.so.1 (NEEDED: $(printf '%s\n' "$dyn" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' '))"
fi
if printf '%s\n' "$dyn" | grep -q -E 'RPATH|RUNPATH'; then
  fail "the binary has an rpath; it could shadow the real driver library"
else
  ok "no rpath"
fi

FIX="$ROOT/tests/fixtures/tiny_clip"
IMAGE="$ROOT/tests/fixtures/images/scene_224.png"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
infer() {
  # $1: device; stdout and stderr to $TMP/<device>.{out,err}; returns the exit code.
  local rc=0
  "$BIN" infer --config "$FIX/config.yaml" --checkpoint "$FIX/checkpoint.pt" \
    --clip-config "$FIX/clip_config.json" --input "$IMAGE" \
    --output "$TMP/depth-$1.npy" --device "$1" \
    > "$TMP/$1.out" 2> "$TMP/$1.err" || rc=$?
  return "$rc"
}

rc=0; infer cuda:0 || rc=$?
if [ "$CLIP_DEPTH_CUDA_STUB_ACTIVE" = 1 ]; then
  lines="$(wc -l < "$TMP/cuda:0.err")"
  if [ "$rc" = 2 ] && [ "$lines" = 1 ] && grep -q 'CUDA' "$TMP/cuda:0.err"; then
    ok "--device cuda:0 without a driver: exit 2, one line: $(cat "$TMP/cuda:0.err")"
  else
    fail "--device cuda:0 without a driver: expected exit 2 and one stderr line mentioning CUDA, got exit $rc and $lines lines:"
    sed 's/^/    /' "$TMP/cuda:0.err" >&2
  fi
else
  if [ "$rc" = 0 ]; then
    ok "--device cuda:0 with a driver: $(paste -sd' ' "$TMP/cuda:0.out")"
  else
    fail "--device cuda:0 with a driver: exit $rc:"
    sed 's/^/    /' "$TMP/cuda:0.err" >&2
  fi
fi

rc=0; infer cpu || rc=$?
if [ "$rc" = 0 ]; then
  ok "--device cpu: $(paste -sd' ' "$TMP/cpu.out")"
else
  fail "--device cpu: exit $rc:"
  sed 's/^/    /' "$TMP/cpu.err" >&2
fi

[ "$FAILED" = 0 ] || exit 1
log "all checks passed in $(( $(date +%s) - START ))s"
