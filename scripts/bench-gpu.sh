#!/usr/bin/env bash
# GPU benchmark, ours and PyTorch's, in one command on a machine with an
# NVIDIA GPU, PyTorch and transformers (none of them needed to build).
#
#   scripts/bench-gpu.sh [BINARY] [OUTPUT_DIR]
#
# BINARY: the CUDA build of clip_depth (default dist/clip_depth), e.g. built
# elsewhere with `scripts/build-cuda.sh --release` and copied over; it needs
# the driver's libcuda.so.1 and the CUDA 13 runtime, cuBLAS, cuRAND and NVRTC
# libraries, which are looked up in the nvidia/cu13 wheels of `python3` when
# not already on LD_LIBRARY_PATH. OUTPUT_DIR (default bench-gpu/) receives
# the JSON reports. Both programs time the same full-size random weights
# (written once by `clip_depth random-checkpoint`), 640x480 frames, batches
# 1, 4 and 16, in f32, f16 and bf16, and print one comparison table.
# DEVICE, DTYPES, BATCHES and ITERS override those (DEVICE=cpu DTYPES=f32
# BATCHES=1 ITERS=1 is a quick dry run of the script on any machine).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" bench-gpu

BIN="${1:-$ROOT/dist/clip_depth}"
OUT_DIR="${2:-$ROOT/bench-gpu}"
PYTHON="${PYTHON:-python3}"
ITERS="${ITERS:-20}"
DEVICE="${DEVICE:-cuda:0}"
read -r -a DTYPES <<< "${DTYPES:-f32 f16 bf16}"
read -r -a BATCHES <<< "${BATCHES:-1 4 16}"
[ -x "$BIN" ] || { log "no executable at $BIN"; exit 2; }
mkdir -p "$OUT_DIR"

cu13="$("$PYTHON" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
if [ -n "$cu13" ] && [ -d "$cu13" ]; then
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$cu13"
fi
if ldd "$BIN" | grep -q 'not found'; then
  log "libraries missing for $BIN:"
  ldd "$BIN" | grep 'not found' >&2
  exit 2
fi
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; fi

WEIGHTS="$OUT_DIR/weights.safetensors"
[ -f "$WEIGHTS" ] || "$BIN" random-checkpoint --output "$WEIGHTS"
CONFIG="$OUT_DIR/config.yaml"
printf 'clip_model_name: openai/clip-vit-base-patch16\nmin_depth: 0.001\nmax_depth: 10.0\n' > "$CONFIG"

for dtype in "${DTYPES[@]}"; do
  "$BIN" bench --device "$DEVICE" --dtype "$dtype" --batch "${BATCHES[@]}" --iters "$ITERS" \
    --config "$CONFIG" --checkpoint "$WEIGHTS" --json > "$OUT_DIR/ours-$dtype.json"
  "$PYTHON" "$ROOT/tests/reference/bench_torch.py" --device "$DEVICE" --dtype "$dtype" --batch "${BATCHES[@]}" \
    --iters "$ITERS" --checkpoint "$WEIGHTS" --json > "$OUT_DIR/torch-$dtype.json"
done

"$PYTHON" - "$OUT_DIR" "${DTYPES[@]}" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print(f"{'dtype':<5} {'batch':>5} {'program':<8} {'pre':>7} {'encoder':>8} {'decoder':>8} {'resize':>7} {'total':>8} {'frames/s':>9} {'peak MiB':>9}")
for dtype in sys.argv[2:]:
    ours = json.loads((out / f"ours-{dtype}.json").read_text())
    torch = json.loads((out / f"torch-{dtype}.json").read_text())
    for o, t in zip(ours["results"], torch["results"]):
        s = o["stages_ms"]
        print(f"{dtype:<5} {o['batch']:>5} {'ours':<8} {s['preprocess']['median']:>7.2f} {s['encoder']['median']:>8.2f} "
              f"{s['decoder']['median']:>8.2f} {s['resize']['median']:>7.2f} {s['total']['median']:>8.2f} "
              f"{o['frames_per_s']:>9.1f} {o['peak_device_memory_mib'] or float('nan'):>9.0f}")
        s = t["stages"]
        fps = 1e3 * t["batch"] / s["total"]["median_ms"]
        print(f"{dtype:<5} {t['batch']:>5} {'pytorch':<8} {s['preprocess']['median_ms']:>7.2f} {s['encoder']['median_ms']:>8.2f} "
              f"{s['decoder']['median_ms']:>8.2f} {s['resize']['median_ms']:>7.2f} {s['total']['median_ms']:>8.2f} "
              f"{fps:>9.1f} {t['peak_device_memory_mib'] or float('nan'):>9.0f}")
PY
