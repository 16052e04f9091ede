#!/usr/bin/env bash
# The project's test command (CI runs exactly this):
#   1. sets up ROS 2 Jazzy from PyPI wheels (idempotent, scripts/setup-ros.sh;
#      needs root or sudo for its Debian packages),
#   2. builds everything, runs the Rust tests (library, parity, loaders, CLI,
#      node units), the node built with its test hook (feature test-hooks),
#   3. compiles the CUDA build (toolkit from PyPI wheels, about 1 GB to
#      download and 9 minutes to build the first time; no GPU needed) and
#      checks that --device cuda:0 fails with one clear line without a driver,
#   4. runs the end-to-end tests of clip_depth_node against an rclpy peer.
#
# CLIP_DEPTH_SKIP_CUDA=1 skips step 3 (for a quick local run; CI keeps it).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test
cd "$ROOT"

command -v cargo >/dev/null || { log "cargo (Rust) is required"; exit 2; }

bash scripts/setup-ros.sh
# shellcheck disable=SC1091
. .ros/env.sh

# One feature set for every cargo test run, so nothing is built twice.
FEATURES=(--features test-hooks)

echo "== cargo test (library, parity with the PyTorch reference, loaders, CLI, node units)"
cargo test "${FEATURES[@]}" --all-targets

echo "== cargo test again on the portable CPU paths (as on a CPU without AVX-512)"
CLIP_DEPTH_NO_AVX512=1 cargo test "${FEATURES[@]}" --lib --test parity --test dtypes --test weights --test depthclip --test depthblip2

echo "== cargo build (no ROS): the library and CLI build without ROS"
cargo build --no-default-features --bin clip_depth

echo "== rosbag fixtures as the pinned rosbags writes them; bags clip_depth writes, read back by rosbags"
python tests/reference/make_bags.py --self-test target/debug/clip_depth

if [ "${CLIP_DEPTH_SKIP_CUDA:-0}" = 1 ]; then
  echo "== CUDA build skipped (CLIP_DEPTH_SKIP_CUDA=1)"
else
  echo "== CUDA build (compile only: no GPU here)"
  bash scripts/setup-cuda.sh
  bash scripts/build-cuda.sh
fi

echo "== end-to-end: clip_depth_node (with its test hook) and an rclpy peer"
export CLIP_DEPTH_ROS_REQUIRED=1
export CLIP_DEPTH_NODE_BIN="$ROOT/target/debug/clip_depth_node"
python -m pytest tests/ros -q -p no:cacheprovider
