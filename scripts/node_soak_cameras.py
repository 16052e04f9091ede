#!/usr/bin/env python3
"""Several cameras, one node or one node each: a benchmark.

For each camera count N (default 1, 2, 4) it streams N cameras at a fixed
rate (default 30 Hz, 640x480 rgb8, each with its camera_info) for a while
and measures, first with ONE clip_depth_node serving all N cameras
(`cameras: [cam0, ...]`, batched forward passes), then with N separate
single-camera nodes on the same topics (N = 1: one node, measured once):

- per camera: frames processed per second, latency from the image stamp
  (median / p95, from each camera's DepthStats), mean batch size;
- in total: frames processed per second, and the resident memory of the
  node(s) (sum of VmRSS, sampled every 0.5 s: mean and peak).

The model is SPACE-CLIP with ViT-B/16-sized random weights (written once
with `clip_depth random-checkpoint`, the official decoder settings): the
depth is meaningless, the cost is the real one.

    . .ros/env.sh
    cargo build --release --bin clip_depth_node --bin clip_depth
    python scripts/node_soak_cameras.py --cameras 1 2 4 --seconds 20

Prints a table and writes it as JSON (--json). Inputs are reliable QoS:
best-effort samples of 900 KB are lost on the loopback with Fast DDS's
default socket buffers (see tests/ros/README.md), which would measure the
transport, not the node.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from clip_depth_msgs.msg import DepthStats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests' / 'ros'))
from ros_messages import make_camera_info, make_stamp, pattern_image  # noqa: E402

MODEL_YAML = """\
# ViT-B/16 SPACE-CLIP with the official decoder settings (random weights).
clip_model_name: "openai/clip-vit-base-patch16"
main_path_indices: [12, 9, 6, 3]
structural_path_indices: [2, 1, 0]
film_param_hidden_dim: 256
decoder_channels: [256, 128, 64, 32]
decoder_dropout: 0.1
use_film: true
use_structural_pathway: true
use_multiscale_supervision: true
input_height: 480
input_width: 640
min_depth: 0.001
max_depth: 10.0
"""


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def reliable(depth: int) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


class Run:
    """Node process(es) for one configuration."""

    def __init__(self, args, model: dict, cameras: list, shared: bool):
        self.procs = []
        common = ['-p', f'model_config:={model["config"]}', '-p', f'checkpoint:={model["checkpoint"]}',
                  '-p', f'device:={args.device}', '-p', 'input_reliability:=reliable',
                  '-p', f'cloud_decimation:={args.cloud_decimation}',
                  '-p', f'batch_window_ms:={args.batch_window_ms}']
        env = dict(os.environ, RCUTILS_COLORIZED_OUTPUT='0')
        if shared:
            names = '[' + ', '.join(cameras) + ']'
            argv = [args.node_bin, '--ros-args', *common, '-p', f'cameras:={names}']
            self.stats_topics = {c: f'/clip_depth/{c}/stats' for c in cameras}
            self.procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        else:
            self.stats_topics = {}
            for c in cameras:
                argv = [args.node_bin, '--ros-args', *common, '-r', f'__ns:=/{c}']
                self.stats_topics[c] = f'/{c}/clip_depth/stats'
                self.procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE))

    def rss(self) -> float:
        return sum(rss_mib(p.pid) for p in self.procs)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def measure(args, node: Node, model: dict, n: int, shared: bool) -> dict:
    cameras = [f'cam{i}' for i in range(n)]
    run = Run(args, model, cameras, shared)
    width, height = args.size
    rgb = pattern_image(width, height)
    pubs = {c: (node.create_publisher(Image, f'/{c}/image', reliable(2)),
                node.create_publisher(CameraInfo, f'/{c}/camera_info', reliable(2))) for c in cameras}
    stats = {c: [] for c in cameras}
    lock = threading.Lock()
    measuring = threading.Event()

    def on_stats(cam):
        def cb(msg):
            if measuring.is_set():
                with lock:
                    stats[cam].append(msg)
        return cb

    subs = [node.create_subscription(DepthStats, run.stats_topics[c], on_stats(c), reliable(50)) for c in cameras]

    # Wait for every node to be up and subscribed (model loading takes seconds).
    deadline = time.monotonic() + 120
    while any(p.get_subscription_count() < 1 for p, _ in pubs.values()):
        if not run.alive() or time.monotonic() > deadline:
            err = b''.join(p.stderr.read() or b'' for p in run.procs if p.poll() is not None)
            run.stop()
            raise SystemExit(f'node(s) did not come up: {err.decode(errors="replace")[-2000:]}')
        time.sleep(0.1)

    base = Image(height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3,
                 data=rgb.tobytes())
    info = make_camera_info(width, height)

    def publish_all():
        stamp = make_stamp()
        for i, c in enumerate(cameras):
            header = Header(stamp=stamp, frame_id=f'{c}_optical_frame')
            info.header = header
            base.header = header
            pubs[c][1].publish(info)
            pubs[c][0].publish(base)

    period = 1.0 / args.rate
    t0 = time.monotonic()
    warm_until = t0 + args.warmup
    end = warm_until + args.seconds
    next_at = t0
    rss = []
    next_rss = t0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= warm_until and not measuring.is_set():
            measuring.set()
        if now >= next_at:
            publish_all()
            next_at += period
            if next_at < now:           # cannot keep up: no burst
                next_at = now + period
        if measuring.is_set() and now >= next_rss:
            rss.append(run.rss())
            next_rss += 0.5
        time.sleep(max(0.0, min(next_at, next_rss if measuring.is_set() else next_at) - time.monotonic()))
    measuring.clear()
    ok = run.alive()
    run.stop()
    for s in subs:
        node.destroy_subscription(s)
    for p, q in pubs.values():
        node.destroy_publisher(p)
        node.destroy_publisher(q)
    if not ok:
        raise SystemExit('a node exited during the run')

    per_camera = {}
    for c in cameras:
        msgs = stats[c]
        lat = sorted(m.latency_ms for m in msgs)
        per_camera[c] = {
            'processed_hz': len(msgs) / args.seconds,
            'latency_median_ms': statistics.median(lat) if lat else float('nan'),
            'latency_p95_ms': lat[int(0.95 * (len(lat) - 1))] if lat else float('nan'),
            'mean_batch': statistics.mean(m.batch_size for m in msgs) if msgs else float('nan'),
        }
    return {
        'cameras': n,
        'mode': 'one node' if shared else f'{n} nodes',
        'per_camera': per_camera,
        'total_processed_hz': sum(v['processed_hz'] for v in per_camera.values()),
        'rss_mean_mib': float(np.mean(rss)) if rss else float('nan'),
        'rss_peak_mib': float(np.max(rss)) if rss else float('nan'),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cameras', type=int, nargs='+', default=[1, 2, 4])
    ap.add_argument('--rate', type=float, default=30.0, help='frames per second per camera')
    ap.add_argument('--seconds', type=float, default=20.0, help='measured time per configuration')
    ap.add_argument('--warmup', type=float, default=5.0, help='streaming before measuring [s]')
    ap.add_argument('--size', default='640x480')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--cloud-decimation', type=int, default=2)
    ap.add_argument('--batch-window-ms', type=float, default=0.0)
    ap.add_argument('--node-bin', default=str(ROOT / 'target' / 'release' / 'clip_depth_node'))
    ap.add_argument('--clip-depth-bin', default=str(ROOT / 'target' / 'release' / 'clip_depth'))
    ap.add_argument('--model-dir', type=Path, default=None,
                    help='where the random model is written (kept; default: a temporary folder)')
    ap.add_argument('--json', type=Path, default=None, help='also write the results here')
    args = ap.parse_args()
    w, h = args.size.lower().split('x')
    args.size = (int(w), int(h))
    for binary in (args.node_bin, args.clip_depth_bin):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f'{binary} not found: cargo build --release --bin clip_depth_node --bin clip_depth')

    tmp = None
    model_dir = args.model_dir
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix='clip_depth_soak_')
        model_dir = Path(tmp.name)
    model_dir.mkdir(parents=True, exist_ok=True)
    model = {'config': model_dir / 'model.yaml', 'checkpoint': model_dir / 'vit_b16_random.safetensors'}
    model['config'].write_text(MODEL_YAML)
    if not model['checkpoint'].is_file():
        print('writing the ViT-B/16-sized random checkpoint ...', flush=True)
        subprocess.run([args.clip_depth_bin, 'random-checkpoint', '--config', str(model['config']),
                        '--output', str(model['checkpoint'])], check=True)

    rclpy.init()
    node = Node('clip_depth_soak_cameras')
    spin = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spin.start()
    results = []
    try:
        for n in args.cameras:
            for shared in ([True] if n == 1 else [True, False]):
                print(f'{n} camera(s), {"one node" if shared else f"{n} nodes"}: '
                      f'{args.warmup:.0f} s warm-up + {args.seconds:.0f} s at {args.rate:.0f} Hz ...', flush=True)
                results.append(measure(args, node, model, n, shared))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if tmp is not None:
            tmp.cleanup()

    print()
    print(f'{args.size[0]}x{args.size[1]} rgb8 at {args.rate:.0f} Hz per camera, device {args.device}, '
          f'ViT-B/16-sized SPACE-CLIP, cloud decimation {args.cloud_decimation}, '
          f'batch_window_ms {args.batch_window_ms:g}')
    print(f'{"cameras":>7}  {"mode":<9} {"per camera [Hz]":<22} {"total [Hz]":>10} '
          f'{"latency med/p95 [ms]":>21} {"batch":>5} {"RSS mean/peak [MiB]":>20}')
    for r in results:
        pc = r['per_camera'].values()
        rates = ' '.join(f'{v["processed_hz"]:.2f}' for v in pc)
        med = statistics.median(v['latency_median_ms'] for v in pc)
        p95 = max(v['latency_p95_ms'] for v in pc)
        batch = statistics.mean(v['mean_batch'] for v in pc)
        print(f'{r["cameras"]:>7}  {r["mode"]:<9} {rates:<22} {r["total_processed_hz"]:>10.2f} '
              f'{med:>10.0f} / {p95:<8.0f} {batch:>5.2f} {r["rss_mean_mib"]:>9.0f} / {r["rss_peak_mib"]:<8.0f}')
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()
