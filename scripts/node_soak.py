#!/usr/bin/env python3
"""Soak and measure a running clip_depth_node: publish N camera frames at a
fixed rate, then report the node's per-stage latency (medians from ~/stats),
its frame counters and its resident memory over time.

    python scripts/node_soak.py --pid <node pid> --frames 1000 --rate 30

--info-offset-ms shifts every camera_info stamp away from its image's, as a
driver that stamps them separately does, so exact-stamp pairing never
succeeds (the latency then shows whether the node waits for it).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from PIL import Image as PILImage
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from clip_depth_msgs.msg import DepthStats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_camera import camera_info  # noqa: E402
from ros_messages import stamp_plus  # noqa: E402  (on the path through sample_camera)


def rss_mib(pid):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return float('nan')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--pid', type=int, required=True, help="the node's process id")
    ap.add_argument('--image', type=Path, default=Path('tests/fixtures/images/scene_640x480.png'))
    ap.add_argument('--frames', type=int, default=1000)
    ap.add_argument('--rate', type=float, default=30.0)
    ap.add_argument('--node', default='/clip_depth')
    ap.add_argument('--info-offset-ms', type=float, default=0.0,
                    help='camera_info stamp minus image stamp (0: identical stamps)')
    args = ap.parse_args()

    rgb = np.asarray(PILImage.open(args.image).convert('RGB'))
    height, width, _ = rgb.shape
    rclpy.init()
    node = Node('clip_depth_soak')
    pub_image = node.create_publisher(Image, 'image', qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, 'camera_info', qos_profile_sensor_data)
    stats = []
    node.create_subscription(DepthStats, f'{args.node}/stats', stats.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    time.sleep(1.0)  # discovery
    memory = [(0, rss_mib(args.pid))]
    start = time.monotonic()
    for i in range(args.frames):
        msg = Image()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = 'camera_optical_frame'
        msg.width, msg.height, msg.encoding, msg.step = width, height, 'rgb8', width * 3
        msg.data = rgb.tobytes()
        info = camera_info(width, height, msg.header)
        if args.info_offset_ms:
            info.header = Header(stamp=stamp_plus(msg.header.stamp, int(args.info_offset_ms * 1e6)),
                                 frame_id=msg.header.frame_id)
        pub_info.publish(info)
        pub_image.publish(msg)
        deadline = start + (i + 1) / args.rate
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=max(0.0, deadline - time.monotonic()))
        if (i + 1) % max(1, args.frames // 10) == 0:
            memory.append((i + 1, rss_mib(args.pid)))
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not stats:
        print('no stats received', file=sys.stderr)
        return 1
    last = stats[-1]
    print(f'published {args.frames} frames {width}x{height} at {args.rate:g} Hz in {time.monotonic() - start:.1f} s')
    print(f'node: received {last.frames_received}, processed {last.frames_processed}, '
          f'dropped stale {last.frames_dropped_stale}, skipped {last.frames_skipped_invalid}')
    fields = ['decode_ms', 'preprocess_ms', 'encoder_ms', 'decoder_ms', 'postprocess_ms', 'cloud_ms',
              'total_ms', 'latency_ms']
    print('median over processed frames: ' + ', '.join(
        f'{f[:-3]} {statistics.median(getattr(s, f) for s in stats):.2f}' for f in fields) + ' (ms)')
    latency = sorted(s.latency_ms for s in stats)
    print(f'latency from the image stamp: median {statistics.median(latency):.1f} ms, '
          f'90th percentile {latency[int(0.9 * (len(latency) - 1))]:.1f} ms over {len(latency)} frames')
    overhead = [s.decode_ms + s.preprocess_ms + s.postprocess_ms + s.cloud_ms for s in stats]
    print(f'node overhead around the model (decode + preprocess + postprocess + cloud): '
          f'median {statistics.median(overhead):.2f} ms')
    print('resident memory (MiB) after N frames: ' + ', '.join(f'{n}: {m:.0f}' for n, m in memory))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
