#!/usr/bin/env python3
"""A sample camera for clip_depth_node: publishes one image file as a camera
stream (sensor_msgs/Image + CameraInfo with matching stamps) and saves what
the node sends back: the depth picture, the depth image, and its stats.

    python scripts/sample_camera.py --image scene.png --frames 10 --out demo-output
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from PIL import Image as PILImage
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from clip_depth_msgs.msg import DepthStats

# The message builders of the end-to-end tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests' / 'ros'))
from ros_messages import make_camera_info, make_header, make_image, wait_for_subscription  # noqa: E402


def camera_info(width, height, header):
    """A plausible pinhole camera: 60 degree horizontal field of view."""
    return make_camera_info(width, height, header=header, fx=width / (2.0 * np.tan(np.radians(30.0))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--image', required=True, type=Path)
    ap.add_argument('--frames', type=int, default=10)
    ap.add_argument('--rate', type=float, default=5.0, help='frames per second')
    ap.add_argument('--out', type=Path, default=Path('demo-output'))
    ap.add_argument('--node', default='/clip_depth', help="the depth node's name (for ~/stats)")
    ap.add_argument('--timeout', type=float, default=120.0)
    args = ap.parse_args()

    rgb = np.asarray(PILImage.open(args.image).convert('RGB'))
    height, width, _ = rgb.shape
    args.out.mkdir(parents=True, exist_ok=True)

    rclpy.init()
    node = Node('sample_camera')
    pub_image = node.create_publisher(Image, 'image', qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, 'camera_info', qos_profile_sensor_data)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    got = {'stats': []}
    node.create_subscription(Image, 'depth/colormap', lambda m: got.__setitem__('colormap', m), reliable)
    node.create_subscription(Image, 'depth/image', lambda m: got.__setitem__('depth', m), reliable)
    node.create_subscription(PointCloud2, 'points', lambda m: got.__setitem__('points', m), reliable)
    node.create_subscription(DepthStats, f'{args.node}/stats', lambda m: got['stats'].append(m), reliable)

    wait_for_subscription(node, pub_image, 15.0)
    start = time.monotonic()
    sent = 0
    next_send = start
    while time.monotonic() - start < args.timeout:
        now = time.monotonic()
        if sent < args.frames and now >= next_send:
            msg = make_image(rgb, header=make_header(node.get_clock().now().to_msg()))
            pub_info.publish(camera_info(width, height, msg.header))
            pub_image.publish(msg)
            sent += 1
            next_send = now + 1.0 / args.rate
        rclpy.spin_once(node, timeout_sec=0.02)
        if sent >= args.frames and got['stats'] and 'colormap' in got and 'depth' in got:
            # let the last frame's outputs arrive
            if got['stats'][-1].frames_received >= args.frames and time.monotonic() > next_send:
                break

    if 'colormap' not in got or 'depth' not in got:
        print('sample_camera: no depth received from the node', file=sys.stderr)
        return 1
    cm = got['colormap']
    bgr = np.frombuffer(bytes(cm.data), np.uint8).reshape(cm.height, cm.width, 3)
    PILImage.fromarray(bgr[:, :, ::-1].copy()).save(args.out / 'depth_colormap.png')
    d = got['depth']
    depth = np.frombuffer(bytes(d.data), '<f4').reshape(d.height, d.width)
    np.save(args.out / 'depth.npy', depth)
    finite = depth[np.isfinite(depth)]
    print(f'sent {sent} frames of {width}x{height}; depth {d.width}x{d.height} {d.encoding}, '
          f'{finite.min():.2f} .. {finite.max():.2f} m')
    if 'points' in got:
        p = got['points']
        xyz = np.frombuffer(bytes(p.data), '<f4').reshape(-1, p.point_step // 4)[:, :3]
        print(f'cloud {p.width}x{p.height}, {np.isfinite(xyz[:, 2]).sum()} valid points')
    s = got['stats'][-1]
    print(f'node stats (last frame): received {s.frames_received}, processed {s.frames_processed}, '
          f'dropped stale {s.frames_dropped_stale}, skipped {s.frames_skipped_invalid}')
    print('  per stage ms: decode {:.1f}  preprocess {:.1f}  encoder {:.1f}  decoder {:.1f}  '
          'postprocess {:.1f}  cloud {:.1f}  | total {:.1f}, latency from stamp {:.1f}'.format(
              s.decode_ms, s.preprocess_ms, s.encoder_ms, s.decoder_ms, s.postprocess_ms,
              s.cloud_ms, s.total_ms, s.latency_ms))
    print(f'wrote {args.out / "depth_colormap.png"} and {args.out / "depth.npy"}')
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
