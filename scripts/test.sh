#!/usr/bin/env bash
# The project's test command (CI runs exactly this):
#   1. sets up ROS 2 Jazzy from PyPI wheels (idempotent, scripts/setup-ros.sh),
#   2. builds everything, runs the Rust tests (library, parity, loaders, CLI),
#   3. compiles the CUDA build (toolkit from PyPI wheels; no GPU needed) and
#      checks that --device cuda:0 fails with one clear line without a driver,
#   4. runs the end-to-end tests of clip_depth_node against an rclpy peer.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

command -v cargo >/dev/null || { echo "test.sh: cargo (Rust) is required" >&2; exit 2; }

bash scripts/setup-ros.sh
# shellcheck disable=SC1091
. .ros/env.sh

echo "== cargo test (library, parity with the PyTorch reference, loaders, CLI, node units)"
cargo test --all-targets

echo "== cargo test again on the portable CPU paths (as on a CPU without AVX-512)"
CLIP_DEPTH_NO_AVX512=1 cargo test --lib --test parity --test dtypes --test weights

echo "== cargo build (no ROS): the library and CLI build without ROS"
cargo build --no-default-features --bin clip_depth

echo "== CUDA build (compile only: no GPU here)"
bash scripts/setup-cuda.sh
bash scripts/build-cuda.sh

echo "== end-to-end: clip_depth_node with an rclpy peer"
export CLIP_DEPTH_ROS_REQUIRED=1
export CLIP_DEPTH_NODE_BIN="$ROOT/target/debug/clip_depth_node"
python -m pytest tests/ros -q -p no:cacheprovider
