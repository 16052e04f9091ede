#!/usr/bin/env bash
# Training end to end, ending in real numbers: on a fresh machine, set up
# ROS 2 Jazzy from PyPI wheels, build, make synthetic street scenes with
# exact depth (clip_depth dataset synth), train the small test model on
# them (clip_depth train), evaluate it on held-out scenes (clip_depth eval:
# the metrics table), then run clip_depth_node with the trained weights on
# a synthetic camera stream and save demo-output/train/train_demo.png (RGB,
# exact depth, predicted depth, both point clouds from above).
#
# The scenes are synthetic and the model's image encoder is the RANDOM-
# WEIGHT test encoder (tests/fixtures/tiny_clip): only the decoder learns,
# so expect figures that beat always guessing a typical depth (printed
# alongside) but are not those of a trained CLIP. The pipeline is the one
# real data and weights take (docs/data.md).
#
#   scripts/demo-train.sh [--quick]     # --quick: fewer scenes and steps (a smoke run)
#
# Environment: OUT (default demo-output/train), COUNT (scenes, default
# 200), SIZE (default 160x120), EPOCHS (default 6).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" demo-train
QUICK=0
parse_flags "--quick" "$@"
cd "$ROOT"

OUT="${OUT:-demo-output/train}"
COUNT="${COUNT:-200}"
SIZE="${SIZE:-160x120}"
EPOCHS="${EPOCHS:-6}"
if [ "$QUICK" = 1 ]; then
  COUNT=40 EPOCHS=2
fi
W="${SIZE%x*}"
H="${SIZE#*x}"
TINY=tests/fixtures/tiny_clip
START=$(date +%s)

bash scripts/setup-ros.sh
# shellcheck disable=SC1091
. .ros/env.sh
cargo build --bin clip_depth --bin clip_depth_node
BIN=target/debug

rm -rf "$OUT"
mkdir -p "$OUT"
log "1/4 synthetic street scenes: $COUNT at $SIZE (20 % held out)"
"$BIN/clip_depth" dataset synth --out "$OUT/data" --count "$COUNT" --size "$SIZE" --seed 7 --kind street \
  --model-config "$TINY/config.yaml"

log "2/4 training the decoder ($EPOCHS epochs, batch 2, whole images)"
"$BIN/clip_depth" train --config "$OUT/data/config.yaml" --output-dir "$OUT/run" \
  --clip-weights "$TINY/clip/model.safetensors" --seed 1 \
  --set batch_size=2 --set epochs="$EPOCHS" --set learning_rate=0.003 --set use_ema=false \
  --set validate_epochs="$EPOCHS" --set input_width="$W" --set input_height="$H"

log "3/4 held-out scenes: metrics of the trained model"
"$BIN/clip_depth" eval --config "$OUT/run/config.yaml" --checkpoint "$OUT/run/last.safetensors" \
  --clip-config "$OUT/run/clip_config.json" --json "$OUT/eval.json" --visuals "$OUT/visuals" --count 4
"$BIN/clip_depth" eval --config "$OUT/run/config.yaml" --checkpoint "$OUT/run/last.safetensors" \
  --clip-config "$OUT/run/clip_config.json" --json "$OUT/eval_median_scaled.json" --median-scaling > /dev/null 2>&1
python - "$OUT" <<'EOF'
"""The trained model's AbsRel beside what trivial guesses score on the same scenes."""
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
out = Path(sys.argv[1])
data = out / 'data'
def depths(lst):
    for line in (data / lst).read_text().split('\n'):
        if line.strip():
            d = np.asarray(Image.open(data / line.split()[1].lstrip('/'))).astype(float) / 1000.0
            yield d[d > 0]
const = np.median(np.concatenate(list(depths('train.txt'))))
evals = list(depths('eval.txt'))
flat = np.mean([np.mean(np.abs(const - d) / d) for d in evals])
flat_true = np.mean([np.mean(np.abs(np.median(d) - d) / d) for d in evals])
ours = json.loads((out / 'eval.json').read_text())['metrics']['abs_rel']
ours_ms = json.loads((out / 'eval_median_scaled.json').read_text())['metrics']['abs_rel']
print(f'held-out AbsRel, {len(evals)} scenes                 metric   layout only (median-scaled)')
print(f'  trained decoder                        {ours:6.3f}   {ours_ms:6.3f}')
print(f'  every pixel at the training median     {flat:6.3f}        -   ({const:.2f} m)')
print(f'  every pixel at the scene\'s own median      -        {flat_true:6.3f}')
EOF

log "4/4 clip_depth_node with the trained weights on a synthetic camera stream"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 10 ))}"
"$BIN/clip_depth_node" --ros-args --params-file config/clip_depth.yaml \
  -p model_config:="$OUT/run/config.yaml" -p checkpoint:="$OUT/run/last.safetensors" \
  -p clip_config:="$OUT/run/clip_config.json" -p cloud_decimation:=1 2> "$OUT/node.log" &
NODE_PID=$!
trap 'kill -INT $NODE_PID 2>/dev/null || true' EXIT
python scripts/demo_train_stream.py --data "$OUT/data" --out "$OUT" --frames 4
kill -INT "$NODE_PID"
wait "$NODE_PID" || true
trap - EXIT
log "done in $(( $(date +%s) - START )) s: $OUT/train_demo.png, $OUT/eval.json, $OUT/visuals/, node log $OUT/node.log"
