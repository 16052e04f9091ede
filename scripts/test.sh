#!/usr/bin/env bash
# The project's test command (CI runs exactly this):
#   1. sets up ROS 2 Jazzy from PyPI wheels (idempotent, scripts/setup-ros.sh;
#      needs root or sudo for its Debian packages), and, alongside, the CUDA
#      13.0 wheels (scripts/setup-cuda.sh, about 1 GB the first time),
#   2. builds the library, both binaries (the node with its test hook,
#      feature test-hooks) and every test once,
#   3. starts the CUDA compile check in the background at the lowest CPU
#      priority (scripts/build-cuda.sh --check-only: every CUDA path compiled
#      in a build without ROS, then checks that --device cuda:0 fails with one
#      clear line without a driver), so that it takes the cores the tests
#      leave idle,
#   4. runs the Rust tests (library, parity, loaders, training, CLI, node
#      units), again on each portable CPU path the host has besides its best,
#      and the rosbag fixtures' round trip through the pinned rosbags,
#   5. runs the end-to-end tests of clip_depth_node against an rclpy peer,
#   6. waits for the CUDA check, and prints each section's time.
#
# CLIP_DEPTH_SKIP_CUDA=1 skips the CUDA steps (for a quick local run; CI keeps them).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test
cd "$ROOT"

command -v cargo >/dev/null || { log "cargo (Rust) is required"; exit 2; }

# --- section timing -------------------------------------------------------------
SECTIONS=()
SECTION_NAME=""
SECTION_START=0
RUN_START=$(date +%s)
section() {
  end_section
  SECTION_NAME="$1"
  SECTION_START=$(date +%s)
  echo "== $1"
}
end_section() {
  if [ -n "$SECTION_NAME" ]; then
    SECTIONS+=("$(( $(date +%s) - SECTION_START ))|$SECTION_NAME")
    SECTION_NAME=""
  fi
}
# The table, also when a step fails (then the failing section is last).
print_times() {
  local status=$?
  end_section
  echo "== time per section (s)"
  local entry
  for entry in ${SECTIONS[@]+"${SECTIONS[@]}"}; do
    printf '%6s  %s\n' "${entry%%|*}" "${entry#*|}"
  done
  printf '%6s  %s\n' "$(( $(date +%s) - RUN_START ))" "total (wall clock; background work overlaps)"
  return "$status"
}
# A failed run leaves no background build behind.
stop_background() {
  if [ -n "${CUDA_PID:-}" ] && kill -0 "$CUDA_PID" 2>/dev/null; then
    kill -- "-$CUDA_PID" 2>/dev/null || kill "$CUDA_PID" 2>/dev/null || true
  fi
}
trap 'print_times; status=$?; stop_background; exit $status' EXIT

# A fresh build in CI: incremental compilation only costs time there.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

CUDA=1
[ "${CLIP_DEPTH_SKIP_CUDA:-0}" = 1 ] && CUDA=0
mkdir -p target
CUDA_LOG="$ROOT/target/cuda-check.log"

section "setup: ROS 2 from PyPI (and the CUDA wheels alongside)"
if [ "$CUDA" = 1 ]; then
  # Mostly a download: it overlaps the ROS setup and the build.
  bash scripts/setup-cuda.sh > "$ROOT/target/setup-cuda.log" 2>&1 &
  SETUP_CUDA_PID=$!
fi
bash scripts/setup-ros.sh
# shellcheck disable=SC1091
. .ros/env.sh

# One feature set for every cargo test run, so nothing is built twice.
FEATURES=(--features test-hooks)

section "build: library, binaries and tests (one profile, one feature set)"
cargo test "${FEATURES[@]}" --all-targets --no-run

if [ "$CUDA" = 1 ]; then
  section "CUDA check started in the background (log: target/cuda-check.log)"
  if ! wait "$SETUP_CUDA_PID"; then
    cat "$ROOT/target/setup-cuda.log" >&2
    die "scripts/setup-cuda.sh failed"
  fi
  # Lowest priority: it takes what the tests leave idle. Its own target
  # directory (target/cuda), so the two builds never wait for each other.
  setsid nice -n 19 bash scripts/build-cuda.sh --check-only > "$CUDA_LOG" 2>&1 &
  CUDA_PID=$!
fi

section "cargo test: library, parity with the PyTorch reference, loaders, training, CLI, node units"
cargo test "${FEATURES[@]}" --all-targets

# The portable paths the host can run besides the one the first run took.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  section "cargo test again on the portable CPU paths (as on a CPU without AVX-512)"
  CLIP_DEPTH_NO_AVX512=1 cargo test "${FEATURES[@]}" --lib --test parity --test dtypes --test weights --test depthclip --test depthblip2
else
  echo "== (no AVX-512 on this CPU: the run above already took the portable paths)"
fi

section "rosbag fixtures as the pinned rosbags writes them; bags clip_depth writes, read back by rosbags"
python tests/reference/make_bags.py --self-test target/debug/clip_depth

section "end-to-end: clip_depth_node (with its test hook) and an rclpy peer"
export CLIP_DEPTH_ROS_REQUIRED=1
export CLIP_DEPTH_NODE_BIN="$ROOT/target/debug/clip_depth_node"
python -m pytest tests/ros -q -p no:cacheprovider

if [ "$CUDA" = 1 ]; then
  section "CUDA check: waiting for the background build and its checks"
  if wait "$CUDA_PID"; then
    tail -n 8 "$CUDA_LOG"
  else
    tail -n 60 "$CUDA_LOG" >&2
    die "the CUDA check failed (full log: $CUDA_LOG)"
  fi
else
  echo "== CUDA check skipped (CLIP_DEPTH_SKIP_CUDA=1)"
fi
end_section
