"""Writes the rosbag2 fixtures of tests/rosbag.rs with an independent,
third-party rosbag2 implementation (the ``rosbags`` package: its own MCAP
and sqlite3 writers and its own CDR serialiser), and the dataset
``clip_depth dataset from-bag`` must make from each, computed here:

- registered depth: the recorded depth itself, in millimetres;
- unregistered depth: re-projected into the colour camera by this file's
  own numpy forward warp (intrinsics from P, the /tf_static chain composed
  as 4x4 matrices, nearest pixel by floor(x + 0.5), nearest surface by
  ``np.minimum.at``);
- colour: the pixels written (JPEG frames: as Pillow decodes them).

Cases (``tests/fixtures/bags/<case>/``: ``bag/`` and ``expected.json`` with
``expected/*.png``): MCAP and sqlite3 storage; raw images in several
encodings (row padding, bgr8, mono8); compressed colour (PNG, JPEG);
compressedDepth (16UC1 and 32FC1, with the plugin's header and inverse-depth
quantisation); registered and unregistered depth; with and without
/tf_static; zstd chunk and per-message compression; stamps off by a few
milliseconds, a depth frame too far off, a truncated message.

    python tests/reference/make_bags.py [--out tests/fixtures/bags]
    python tests/reference/make_bags.py --check-bag BAG   # what a bag holds, read by rosbags
    python tests/reference/make_bags.py --self-test target/debug/clip_depth   # CI

Needs ``rosbags`` (pinned in scripts/ros-requirements.txt), numpy, Pillow.
Deterministic: re-running writes the same pixels and stamps.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
INFO = 'sensor_msgs/msg/CameraInfo'
TF = 'tf2_msgs/msg/TFMessage'

T0 = 1_712_345_678_000_000_000
PERIOD = 100_000_000
MS = 1_000_000


# --- messages -----------------------------------------------------------------


def header(stamp: int, frame: str):
    return T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
        frame_id=frame,
    )


def image_msg(stamp, frame, encoding, array, step_pad=0, bigendian=False):
    h, w = array.shape[:2]
    row = array.reshape(h, -1).view(np.uint8).reshape(h, -1)
    if step_pad:
        row = np.concatenate([row, np.full((h, step_pad), 0xEE, np.uint8)], axis=1)
    return T[IMAGE](
        header=header(stamp, frame), height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
        step=row.shape[1], data=np.ascontiguousarray(row).reshape(-1),
    )


def compressed_msg(stamp, frame, fmt, data: bytes):
    return T[COMPRESSED](header=header(stamp, frame), format=fmt, data=np.frombuffer(data, np.uint8))


def camera_info_msg(stamp, frame, w, h, k, p):
    roi = T['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T[INFO](
        header=header(stamp, frame), height=h, width=w, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.array(k, float), r=np.eye(3).reshape(-1), p=np.array(p, float),
        binning_x=0, binning_y=0, roi=roi,
    )


def tf_msg(edges):
    out = []
    for parent, child, t, q in edges:
        out.append(T['geometry_msgs/msg/TransformStamped'](
            header=header(T0, parent), child_frame_id=child,
            transform=T['geometry_msgs/msg/Transform'](
                translation=T['geometry_msgs/msg/Vector3'](x=t[0], y=t[1], z=t[2]),
                rotation=T['geometry_msgs/msg/Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3]),
            ),
        ))
    return T[TF](transforms=out)


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    if array.dtype == np.uint16:
        PILImage.fromarray(array.astype(np.uint16)).save(buf, format='PNG')
    else:
        PILImage.fromarray(array).save(buf, format='PNG')
    return buf.getvalue()


def jpeg_bytes(rgb) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='JPEG', quality=95)
    return buf.getvalue()


def compressed_depth(depth, encoding):
    """image_transport's compressedDepth plugin: 12-byte header (int32
    format, float32 quantisation A, B) + 16-bit PNG. 32FC1 is stored as
    inverse depth v = A / d + B (float32, truncated; 0 beyond depth_max or
    NaN) with the plugin's defaults depth_quantization 100, depth_max 10.
    Returns the payload and the depth a decoder recovers (metres, float32)."""
    if encoding == '16UC1':
        mm = depth.copy()
        mm[mm > 10000] = 0
        return struct.pack('<iff', 0, 0.0, 0.0) + png_bytes(mm), mm
    q = np.float32(100.0)
    a = np.float32(q * (q + np.float32(1.0)))
    b = np.float32(np.float32(1.0) - a / np.float32(10.0))
    with np.errstate(invalid='ignore', divide='ignore'):
        inv = a / depth.astype(np.float32) + b
        v = np.where(depth < np.float32(10.0), inv, 0).astype(np.float32)
    v = np.trunc(np.nan_to_num(v, nan=0.0)).astype(np.uint16)
    with np.errstate(divide='ignore'):
        decoded = np.where(v > 0, a / (v.astype(np.float32) - b), np.float32(np.nan)).astype(np.float32)
    return struct.pack('<iff', 0, float(a), float(b)) + png_bytes(v), decoded


# --- scene content --------------------------------------------------------------


def colour_image(w, h, k):
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    r = (u * 6 + k * 17) % 256
    g = (v * 8 + k * 5) % 256
    b = ((u + v) * 4 + 40 * (u // 8 % 2)) % 256
    return np.stack([r, g, b], -1).astype(np.uint8)


def depth_metres(w, h, k):
    """A slanted surface with ripples, a nearer box, and a few holes."""
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    z = 1.8 + 0.6 * v / h + 0.15 * np.sin(u * 0.4) + 0.05 * k
    box = (u >= w * 0.3) & (u < w * 0.6) & (v >= h * 0.25) & (v < h * 0.6)
    z[box] = 0.9 + 0.01 * u[box]
    z[:2, :2] = np.nan
    return z.astype(np.float32)


def to_mm(metres):
    """What a 16-bit depth PNG stores: floor(d * 1000 + 0.5), 0 for none."""
    d = metres.astype(np.float64)
    ok = np.isfinite(d) & (d > 0)
    mm = np.where(ok, np.floor(np.where(ok, d, 0) * 1000.0 + 0.5), 0)
    mm[(mm < 1) | (mm > 65535)] = 0
    return mm.astype(np.uint16)


# --- reference re-projection ----------------------------------------------------


def quat_matrix(t, q):
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    m = np.eye(4)
    m[:3, :3] = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    m[:3, 3] = t
    return m


def tf_between(edges, target, source):
    """Matrix taking source-frame points to the target frame."""
    parent = {child: (par, quat_matrix(t, q)) for par, child, t, q in edges}

    def chain(frame):
        m = np.eye(4)
        while frame in parent:
            par, e = parent[frame]
            m = e @ m
            frame = par
        return frame, m

    rs, ms = chain(source)
    rt, mt = chain(target)
    assert rs == rt
    return np.linalg.inv(mt) @ ms


def intrinsics(p):
    return p[0], p[5], p[2], p[6]


def reproject(depth_m, p_depth, p_colour, size_colour, m):
    fx, fy, cx, cy = intrinsics(p_depth)
    h, w = depth_m.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth_m.astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok], v[ok], z[ok]
    pts = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z, np.ones_like(z)])
    c = m @ pts
    front = c[2] > 0
    c = c[:, front]
    fx2, fy2, cx2, cy2 = intrinsics(p_colour)
    pu = np.floor(fx2 * c[0] / c[2] + cx2 + 0.5)
    pv = np.floor(fy2 * c[1] / c[2] + cy2 + 0.5)
    wc, hc = size_colour
    inside = (pu >= 0) & (pv >= 0) & (pu < wc) & (pv < hc)
    zbuf = np.full(wc * hc, np.inf)
    np.minimum.at(zbuf, (pv[inside] * wc + pu[inside]).astype(np.int64), c[2][inside])
    zbuf[np.isinf(zbuf)] = 0
    return zbuf.reshape(hc, wc)


# --- cases ----------------------------------------------------------------------

OPTICAL = (-0.5, 0.5, -0.5, 0.5)  # camera body (x fwd, y left, z up) -> optical (x right, y down, z fwd)


def qmul(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def small_turn(ax, ay, az):
    """Quaternion of small rotations about x, then y, then z (radians)."""
    qx = (np.sin(ax / 2), 0.0, 0.0, np.cos(ax / 2))
    qy = (0.0, np.sin(ay / 2), 0.0, np.cos(ay / 2))
    qz = (0.0, 0.0, np.sin(az / 2), np.cos(az / 2))
    return qmul(qz, qmul(qy, qx))


RIG = [
    ('base_link', 'camera_link', (0.12, 0.0, 0.45), small_turn(0.0, 0.0, 0.05)),
    ('camera_link', 'camera_color_optical_frame', (0.0, -0.015, 0.0), qmul(small_turn(0.0, 0.01, 0.0), OPTICAL)),
    ('camera_link', 'camera_depth_optical_frame', (0.002, 0.035, 0.001), qmul(small_turn(0.004, -0.02, 0.01), OPTICAL)),
]

COLOUR_P = [34.0, 0.0, 19.6, 0.0, 0.0, 34.5, 14.2, 0.0, 0.0, 0.0, 1.0, 0.0]
COLOUR_K = [35.0, 0.0, 19.5, 0.0, 35.0, 14.5, 0.0, 0.0, 1.0]
DEPTH_P = [28.0, 0.0, 15.3, 0.0, 0.0, 29.0, 11.7, 0.0, 0.0, 0.0, 1.0, 0.0]
DEPTH_K = [30.0, 0.0, 15.5, 0.0, 30.0, 11.5, 0.0, 0.0, 1.0]


class Case:
    def __init__(self, out: Path, name: str, storage, version=9, compression=None):
        self.dir = out / name
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / 'expected').mkdir(parents=True)
        self.writer = Writer(self.dir / 'bag', version=version, storage_plugin=storage)
        if compression:
            self.writer.set_compression(compression, CompressionFormat.ZSTD)
        self.writer.open()
        self.conns = {}
        self.expected = {'pairs': [], 'skipped': {}, 'args': [], 'exit': 0, 'topics': {}}

    def write(self, topic, msgtype, log_time, msg=None, raw=None):
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=TS)
            if topic.endswith(('image_raw', 'compressed', 'compressedDepth')):
                self.expected['topics']['rgb' if '/color/' in topic else 'depth'] = topic
        data = raw if raw is not None else TS.serialize_cdr(msg, msgtype)
        self.writer.write(self.conns[topic], log_time, data)

    def expect(self, stamp, rgb, depth_mm, focal, jpeg=False):
        base = f'expected/{stamp}'
        PILImage.fromarray(rgb).save(self.dir / f'{base}_rgb.png')
        PILImage.fromarray(depth_mm.astype(np.uint16)).save(self.dir / f'{base}_depth.png')
        self.expected['pairs'].append({'stamp_ns': stamp, 'rgb': f'{base}_rgb.png', 'depth': f'{base}_depth.png',
                                       'focal': focal, 'jpeg': jpeg})

    def close(self, **extra):
        self.writer.close()
        self.expected.update(extra)
        (self.dir / 'expected.json').write_text(json.dumps(self.expected, indent=1) + '\n')


def case_mcap_registered_raw(out):
    """MCAP; raw colour in several encodings; 16UC1 depth registered."""
    c = Case(out, 'mcap_registered_raw', StoragePlugin.MCAP)
    w, h, frame = 32, 24, 'camera_color_optical_frame'
    p = [30.0, 0, 15.5, 0, 0, 30.0, 11.5, 0, 0, 0, 1, 0]
    encodings = ['rgb8', 'bgr8', 'mono8', 'rgba8', 'rgb8', 'rgb8', 'bgra8', 'rgb8']
    for k in range(8):
        stamp = T0 + k * PERIOD
        rgb = colour_image(w, h, k)
        enc = encodings[k]
        if enc == 'bgr8':
            arr, shown = rgb[..., ::-1].copy(), rgb
        elif enc == 'mono8':
            arr = rgb[..., 1].copy()
            shown = np.repeat(arr[..., None], 3, -1)
        elif enc == 'rgba8':
            arr, shown = np.concatenate([rgb, np.full((h, w, 1), 200, np.uint8)], -1), rgb
        elif enc == 'bgra8':
            arr, shown = np.concatenate([rgb[..., ::-1], np.full((h, w, 1), 7, np.uint8)], -1), rgb
        else:
            arr, shown = rgb, rgb
        msg = image_msg(stamp, frame, enc, arr, step_pad=4 if enc == 'bgr8' else 0)
        raw = None
        if k == 5:
            raw = TS.serialize_cdr(msg, IMAGE)[:60]  # a message cut short
        c.write('/camera/color/image_raw', IMAGE, stamp + 1 * MS, msg, raw)
        c.write('/camera/color/camera_info', INFO, stamp + 1 * MS, camera_info_msg(stamp, frame, w, h, [30.0, 0, 15.5, 0, 30.0, 11.5, 0, 0, 1], p))
        offset = {2: 4 * MS, 4: 25 * MS}.get(k, 0)
        mm = to_mm(depth_metres(w, h, k))
        c.write('/camera/depth/image_raw', IMAGE, stamp + offset + 3 * MS, image_msg(stamp + offset, frame, '16UC1', mm))
        if k == 4:
            c.expected['skipped']['no depth frame within 10 ms'] = 1
        elif k == 5:
            c.expected['skipped']['colour frame does not decode'] = 1
        else:
            c.expect(stamp, shown, mm, 30.0)
    c.close(registration='AsRecorded')


def case_sqlite_compressed_registered(out):
    """sqlite3; PNG and JPEG colour; compressedDepth 16UC1; transport topic names."""
    c = Case(out, 'sqlite_compressed_registered', StoragePlugin.SQLITE3, version=8)
    w, h, frame = 32, 24, 'cam_optical'
    p = [29.0, 0, 16.0, 0, 0, 29.0, 12.0, 0, 0, 0, 1, 0]
    for k in range(5):
        stamp = T0 + k * PERIOD
        rgb = colour_image(w, h, k + 3)
        if k % 2 == 0:
            data, fmt, shown, jpeg = png_bytes(rgb), 'rgb8; png compressed rgb8', rgb, False
        else:
            data, fmt, jpeg = jpeg_bytes(rgb), 'bgr8; jpeg compressed bgr8', True
            shown = np.asarray(PILImage.open(io.BytesIO(data)).convert('RGB'))
        c.write('/cam/color/image_raw/compressed', COMPRESSED, stamp + MS, compressed_msg(stamp, frame, fmt, data))
        c.write('/cam/color/camera_info', INFO, stamp + MS, camera_info_msg(stamp, frame, w, h, [29.0, 0, 16, 0, 29.0, 12, 0, 0, 1], p))
        mm = to_mm(depth_metres(w, h, k))
        payload, stored = compressed_depth(mm, '16UC1')
        c.write('/cam/depth/image_raw/compressedDepth', COMPRESSED, stamp + 2 * MS,
                compressed_msg(stamp, frame, '16UC1; compressedDepth png', payload))
        c.expect(stamp, shown, stored, 29.0, jpeg)
    c.close(registration='AsRecorded')


def unregistered(out, name, storage, depth_kind, with_tf=True, compression=None, depth_offset=0):
    c = Case(out, name, storage, compression=compression)
    (wc, hc), (wd, hd) = (40, 30), (32, 24)
    if with_tf:
        c.write('/tf_static', TF, T0 - 50 * MS, tf_msg(RIG))
    m = tf_between(RIG, 'camera_color_optical_frame', 'camera_depth_optical_frame')
    for k in range(4):
        stamp = T0 + k * PERIOD
        rgb = colour_image(wc, hc, k)
        c.write('/camera/color/image_raw', IMAGE, stamp + MS, image_msg(stamp, 'camera_color_optical_frame', 'rgb8', rgb))
        c.write('/camera/color/camera_info', INFO, stamp + MS, camera_info_msg(stamp, 'camera_color_optical_frame', wc, hc, COLOUR_K, COLOUR_P))
        dstamp = stamp + depth_offset
        metres = depth_metres(wd, hd, k)
        dframe = 'camera_depth_optical_frame'
        if depth_kind == '32FC1':
            msg, recovered = image_msg(dstamp, dframe, '32FC1', metres), metres
            c.write('/camera/depth/image_raw', IMAGE, dstamp + 2 * MS, msg)
        else:
            payload, recovered = compressed_depth(metres, '32FC1')
            c.write('/camera/depth/image_raw/compressedDepth', COMPRESSED, dstamp + 2 * MS,
                    compressed_msg(dstamp, dframe, '32FC1; compressedDepth png', payload))
        c.write('/camera/depth/camera_info', INFO, dstamp + 2 * MS, camera_info_msg(dstamp, dframe, wd, hd, DEPTH_K, DEPTH_P))
        c.expect(stamp, rgb, to_mm(reproject(recovered, DEPTH_P, COLOUR_P, (wc, hc), m)), COLOUR_P[0])
    c.expected['args'] = ['--min-valid', '0.1']
    if with_tf:
        c.close(registration='Reprojected')
    else:
        c.expected['pairs'] = []
        c.close(registration=None, exit=2, error_contains='tf_static')


def case_sqlite_message_zstd_32f(out):
    """sqlite3 with per-message zstd; 32FC1 depth registered."""
    c = Case(out, 'sqlite_message_zstd_32f', StoragePlugin.SQLITE3, compression=CompressionMode.MESSAGE)
    w, h, frame = 24, 18, 'cam'
    for k in range(3):
        stamp = T0 + k * PERIOD
        rgb = colour_image(w, h, k)
        metres = depth_metres(w, h, k)
        c.write('/cam/color/image_raw', IMAGE, stamp + MS, image_msg(stamp, frame, 'rgb8', rgb))
        c.write('/cam/color/camera_info', INFO, stamp + MS, camera_info_msg(stamp, frame, w, h, [20.0, 0, 12, 0, 20.0, 9, 0, 0, 1], [0] * 12))
        c.write('/cam/depth/image_raw', IMAGE, stamp + 2 * MS, image_msg(stamp, frame, '32FC1', metres))
        c.expect(stamp, rgb, to_mm(metres), 20.0)
    c.close(registration='AsRecorded')


def write_all(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    case_mcap_registered_raw(out)
    case_sqlite_compressed_registered(out)
    unregistered(out, 'mcap_unregistered_tf', StoragePlugin.MCAP, '32FC1', compression=CompressionMode.STORAGE)
    unregistered(out, 'sqlite_unregistered_compressed32', StoragePlugin.SQLITE3, 'compressedDepth', depth_offset=3 * MS)
    unregistered(out, 'mcap_unregistered_no_tf', StoragePlugin.MCAP, '32FC1', with_tf=False)
    case_sqlite_message_zstd_32f(out)


def bag_contents(path: Path):
    """Topic counts, image sizes and frames of a bag, read by rosbags."""
    from rosbags.highlevel import AnyReader

    counts, sizes, frames = {}, {}, {}
    with AnyReader([path], default_typestore=TS) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.msgtype == IMAGE:
                assert len(msg.data) == msg.step * msg.height, conn.topic
                sizes[conn.topic] = [int(msg.width), int(msg.height), msg.encoding]
                frames[conn.topic] = msg.header.frame_id
            if conn.msgtype == INFO:
                sizes[conn.topic] = [int(msg.width), int(msg.height)]
            if conn.msgtype == TF:
                frames[conn.topic] = sorted(t.child_frame_id for t in msg.transforms)
    return {'counts': counts, 'sizes': sizes, 'frames': frames}


def check_bag(path: Path):
    print(json.dumps(bag_contents(path), sort_keys=True))


def self_test(clip_depth: Path):
    """CI: (1) the committed fixtures are exactly what this script writes
    with the pinned rosbags; (2) bags written by ``clip_depth dataset synth
    --bag`` are read by rosbags with every message intact."""
    import filecmp
    import subprocess
    import tempfile

    committed = Path(__file__).resolve().parents[1] / 'fixtures' / 'bags'
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / 'bags'
        write_all(fresh)
        names = sorted(p.relative_to(fresh) for p in fresh.rglob('*') if p.is_file())
        have = sorted(p.relative_to(committed) for p in committed.rglob('*') if p.is_file())
        assert names == have, f'fixture files differ: {sorted(set(names) ^ set(have))}'
        stale = [str(n) for n in names if not filecmp.cmp(fresh / n, committed / n, shallow=False)]
        assert not stale, f'committed fixtures differ from what make_bags.py writes now: {stale} (re-run it)'
        print(f'{len(names)} fixture files match what rosbags writes')
        for unregistered in (False, True):
            out, bag = Path(tmp) / f'synth_{unregistered}', Path(tmp) / f'bag_{unregistered}'
            cmd = [str(clip_depth), 'dataset', 'synth', '--out', str(out), '--count', '3', '--size', '40x30', '--bag', str(bag)]
            subprocess.run(cmd + (['--unregistered'] if unregistered else []), check=True, capture_output=True)
            got = bag_contents(bag)
            want_depth = [32, 24, '16UC1'] if unregistered else [40, 30, '16UC1']
            depth_frame = 'camera_depth_optical_frame' if unregistered else 'camera_color_optical_frame'
            assert got['counts'] == {'/tf_static': 1, '/camera/color/image_raw': 3, '/camera/color/camera_info': 3,
                                     '/camera/depth/image_raw': 3, '/camera/depth/camera_info': 3}, got
            assert got['sizes']['/camera/color/image_raw'] == [40, 30, 'rgb8'], got
            assert got['sizes']['/camera/depth/image_raw'] == want_depth, got
            assert got['sizes']['/camera/depth/camera_info'] == want_depth[:2], got
            assert got['frames']['/camera/depth/image_raw'] == depth_frame, got
            assert got['frames']['/tf_static'] == ['camera_color_optical_frame', 'camera_depth_optical_frame'], got
            # The dataset's colour frames are the bag's.
            with __import__('rosbags.highlevel', fromlist=['AnyReader']).AnyReader([bag], default_typestore=TS) as r:
                conns = [c for c in r.connections if c.topic == '/camera/color/image_raw']
                for k, (conn, _, raw) in enumerate(r.messages(connections=conns)):
                    msg = r.deserialize(raw, conn.msgtype)
                    rgb = np.asarray(PILImage.open(out / 'rgb' / f'{k:06}.png').convert('RGB'))
                    assert np.array_equal(np.asarray(msg.data).reshape(30, 40, 3), rgb), k
            print(f'clip_depth synth bag ({"unregistered" if unregistered else "registered"}) read back by rosbags: {got["counts"]}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=Path(__file__).resolve().parents[1] / 'fixtures' / 'bags')
    ap.add_argument('--check-bag', type=Path, help='print what a bag holds, read with rosbags')
    ap.add_argument('--self-test', type=Path, metavar='CLIP_DEPTH', help='check the committed fixtures and bags the given clip_depth binary writes')
    args = ap.parse_args()
    if args.check_bag:
        check_bag(args.check_bag)
    elif args.self_test:
        self_test(args.self_test)
    else:
        write_all(args.out)


if __name__ == '__main__':
    sys.exit(main())
