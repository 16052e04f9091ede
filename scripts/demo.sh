#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up ROS 2 Jazzy from PyPI
# wheels, build clip_depth_node, run it on a sample camera stream and save
# the depth it publishes (demo-output/depth_colormap.png).
#
# The model is the RANDOM-WEIGHT test model in tests/fixtures/tiny_clip: the
# pipeline is real, the depth values are not. Pass your own with
#   MODEL_CONFIG=nyu.yaml CHECKPOINT=best.pt [CLIP_WEIGHTS=..] [CLIP_CONFIG=..] scripts/demo.sh [image.png]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" demo
cd "$ROOT"

IMAGE="${1:-tests/fixtures/images/scene_640x480.png}"
MODEL_CONFIG="${MODEL_CONFIG:-tests/fixtures/tiny_clip/config.yaml}"
CHECKPOINT="${CHECKPOINT:-tests/fixtures/tiny_clip/checkpoint.pt}"
CLIP_CONFIG="${CLIP_CONFIG-tests/fixtures/tiny_clip/clip_config.json}"
CLIP_WEIGHTS="${CLIP_WEIGHTS:-}"

bash scripts/setup-ros.sh
# shellcheck disable=SC1091
. .ros/env.sh
cargo build --bin clip_depth_node

export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 10 ))}"
mkdir -p demo-output
if [ "$CHECKPOINT" = tests/fixtures/tiny_clip/checkpoint.pt ]; then
  echo "demo: using the random-weight test model (tests/fixtures/tiny_clip): the depth is NOT meaningful"
fi
args=(--params-file config/clip_depth.yaml
  -p model_config:="$MODEL_CONFIG" -p checkpoint:="$CHECKPOINT" -p publish_colormap:=true)
[ -n "$CLIP_CONFIG" ] && args+=(-p clip_config:="$CLIP_CONFIG")
[ -n "$CLIP_WEIGHTS" ] && args+=(-p clip_weights:="$CLIP_WEIGHTS")
target/debug/clip_depth_node --ros-args "${args[@]}" 2> demo-output/node.log &
NODE_PID=$!
trap 'kill -INT $NODE_PID 2>/dev/null || true' EXIT

python scripts/sample_camera.py --image "$IMAGE" --frames 8 --rate 4 --out demo-output
kill -INT "$NODE_PID"
wait "$NODE_PID" || true
trap - EXIT
echo "demo: node log in demo-output/node.log"
