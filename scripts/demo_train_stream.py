#!/usr/bin/env python3
"""A synthetic camera for the training demo: publishes held-out scenes of a
``clip_depth dataset synth`` folder (sensor_msgs/Image + CameraInfo with the
scenes' exact intrinsics) to a running clip_depth_node, one at a time,
collects the depth image and point cloud it sends back for each, scores
them against the exact depth, and saves one picture per scene row: RGB,
ground truth, predicted depth (one colour scale), and both point clouds
seen from above (ground truth grey, prediction coloured).

    python scripts/demo_train_stream.py --data DIR --out demo-output/train [--frames 4]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from PIL import Image as PILImage
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests' / 'ros'))
from ros_messages import backproject, cloud_xyz, depth_to_metres, make_camera_info, make_header, make_image, wait_for_subscription  # noqa: E402

# Anchors of a perceptual map from near (dark violet) to far (yellow).
ANCHORS = np.array([[48, 18, 59], [70, 107, 227], [40, 188, 235], [50, 241, 151], [164, 252, 60], [237, 208, 58], [250, 120, 30]], float)


def colorize(depth, near, far):
    t = np.clip((depth - near) / max(far - near, 1e-6), 0, 1) * (len(ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(ANCHORS) - 2)
    f = (t - i)[..., None]
    rgb = ANCHORS[i] * (1 - f) + ANCHORS[i + 1] * f
    rgb[~(np.isfinite(depth) & (depth > 0))] = 30
    return rgb.astype(np.uint8)


def top_view(gt_xyz, pred_xyz, far, size=240):
    """Points seen from above: x to the right, z (forward) up the picture,
    the camera at the bottom centre; 2x2 dots."""
    img = np.full((size, size, 3), 250, np.uint8)
    half = far * 0.3

    def plot(xyz, colour):
        ok = np.isfinite(xyz).all(1) & (xyz[:, 2] > 0)
        x, z = xyz[ok, 0], xyz[ok, 2]
        u = ((x + half) / (2 * half) * (size - 1)).round().astype(int)
        v = (size - 1 - z / far * (size - 1)).round().astype(int)
        keep = (u >= 0) & (u < size - 1) & (v >= 0) & (v < size - 1)
        u, v, z = u[keep], v[keep], z[keep]
        paint = colorize(z, 0, far) if colour is None else colour
        for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):
            img[v + dv, u + du] = paint

    plot(gt_xyz, (170, 170, 170))
    plot(pred_xyz, None)
    img[size - 4:, size // 2 - 3:size // 2 + 4] = (200, 0, 0)
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', required=True, type=Path, help='a dataset written by clip_depth dataset synth')
    ap.add_argument('--out', type=Path, default=Path('demo-output/train'))
    ap.add_argument('--frames', type=int, default=4)
    ap.add_argument('--max-depth', type=float, help='colour scale and top view range (default: the dataset max_depth)')
    ap.add_argument('--timeout', type=float, default=60.0, help='seconds to wait for each frame')
    args = ap.parse_args()

    summary = json.loads((args.data / 'summary.json').read_text())
    k = summary['intrinsics']
    far = args.max_depth or summary['max_depth']
    lines = [ln.split() for ln in (args.data / 'eval.txt').read_text().splitlines() if ln.strip()][:args.frames]
    args.out.mkdir(parents=True, exist_ok=True)

    rclpy.init()
    node = Node('demo_train_camera')
    pub_image = node.create_publisher(Image, 'image', qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, 'camera_info', qos_profile_sensor_data)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    got = {'depth': {}, 'points': {}}

    def keep(kind):
        return lambda m: got[kind].__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m)

    node.create_subscription(Image, 'depth/image', keep('depth'), reliable)
    node.create_subscription(PointCloud2, 'points', keep('points'), reliable)
    wait_for_subscription(node, pub_image, 30.0)

    rows, scores = [], []
    for n, (rgb_rel, depth_rel, _) in enumerate(lines):
        rgb = np.asarray(PILImage.open(args.data / rgb_rel.lstrip('/')).convert('RGB'))
        gt = np.asarray(PILImage.open(args.data / depth_rel.lstrip('/'))).astype(float) / 1000.0
        h, w, _ = rgb.shape
        key = None
        # Resend until the node answers (the first frames may precede its start-up).
        for attempt in range(int(args.timeout)):
            msg = make_image(rgb, header=make_header(node.get_clock().now().to_msg(), 'camera_color_optical_frame'))
            info = make_camera_info(w, h, header=msg.header, fx=k['fx'], fy=k['fy'], cx=k['cx'], cy=k['cy'])
            pub_info.publish(info)
            pub_image.publish(msg)
            key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            until = time.monotonic() + 1.0
            while time.monotonic() < until and not (key in got['depth'] and key in got['points']):
                rclpy.spin_once(node, timeout_sec=0.02)
            if key in got['depth'] and key in got['points']:
                break
        if key not in got['depth']:
            print(f'demo_train_stream: no depth from the node for scene {n}', file=sys.stderr)
            return 1
        d = got['depth'][key]
        pred = depth_to_metres(d)
        valid = (gt > 0) & np.isfinite(pred) & (pred > 0)
        abs_rel = float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid])) if valid.any() else float('nan')
        scores.append(abs_rel)
        print(f'scene {rgb_rel}: node depth {d.width}x{d.height} {d.encoding}, AbsRel {abs_rel:.3f} against the exact depth')
        gt_xyz = np.stack(backproject(gt, info, decimation=2), -1).reshape(-1, 3)
        top = top_view(gt_xyz, cloud_xyz(got['points'][key]), far)
        scale = max(1, 240 // h)
        panels = [np.kron(p, np.ones((scale, scale, 1), np.uint8)) for p in (rgb, colorize(gt, 0, far), colorize(pred, 0, far))]
        hh = panels[0].shape[0]
        top = np.asarray(PILImage.fromarray(top).resize((hh, hh), PILImage.NEAREST))
        gap = np.full((hh, 6, 3), 255, np.uint8)
        rows.append(np.concatenate([panels[0], gap, panels[1], gap, panels[2], gap, top], 1))
    picture = np.concatenate([np.concatenate([r, np.full((6, r.shape[1], 3), 255, np.uint8)], 0) for r in rows], 0)
    path = args.out / 'train_demo.png'
    PILImage.fromarray(picture).save(path)
    print(f'{len(scores)} held-out scenes through clip_depth_node: mean AbsRel {np.mean(scores):.3f}')
    print(f'wrote {path}: RGB | exact depth | predicted depth (0 .. {far:g} m) | clouds from above (grey: exact, colour: predicted)')
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
