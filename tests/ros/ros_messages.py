"""Message builders and readers for the end-to-end tests of clip_depth_node
(and the scripts that drive a node by hand): QoS profiles, stamped headers,
Image / CompressedImage / CameraInfo from numpy arrays, and the independent
numpy readers of what the node publishes (depth in metres, back-projection,
PointCloud2 records). No test harness here: see conftest.py.

Needs rclpy and the message packages (.ros/env.sh sourced).
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

DEFAULT_FRAME_ID = 'camera_optical_frame'

# --------------------------------------------------------------------------
# QoS profiles
# --------------------------------------------------------------------------

def qos_reliable(depth: int = 10) -> 'QoSProfile':
    """Reliable, volatile, keep-last: reaches reliable and best-effort subscribers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def qos_best_effort(depth: int = 10) -> 'QoSProfile':
    """Best effort (like SensorDataQoS): matches reliable and best-effort publishers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


# --------------------------------------------------------------------------
# Message builders
# --------------------------------------------------------------------------

def make_stamp(seconds: Optional[float] = None) -> 'Time':
    """builtin_interfaces/Time from seconds (default: wall-clock now)."""
    if seconds is None:
        seconds = time.time()
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp: Optional['Time'] = None, frame_id: str = DEFAULT_FRAME_ID) -> 'Header':
    return Header(stamp=stamp if stamp is not None else make_stamp(), frame_id=frame_id)


def pattern_image(width: int, height: int) -> 'np.ndarray':
    """A deterministic HxWx3 uint8 RGB image with gradients and a square."""
    ys, xs = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    img[..., 1] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    img[..., 2] = 128
    img[height // 4: height // 2, width // 4: width // 2] = (250, 250, 250)
    return img


_ENCODING_CHANNELS = {
    'rgb8': (3, np.uint8), 'bgr8': (3, np.uint8), 'rgba8': (4, np.uint8),
    'bgra8': (4, np.uint8), 'mono8': (1, np.uint8), 'mono16': (1, np.uint16),
    '32FC1': (1, np.float32), '16UC1': (1, np.uint16),
}


def make_image(array: Optional['np.ndarray'] = None, *, width: int = 64, height: int = 48,
               encoding: str = 'rgb8', header: Optional['Header'] = None) -> 'Image':
    """sensor_msgs/Image from an array (default: pattern_image in RGB).

    The array is HxW or HxWxC in the layout of `encoding`; for bgr8/bgra8 the
    caller passes the channels already in that order.
    """
    if array is None:
        rgb = pattern_image(width, height)
        if encoding == 'rgb8':
            array = rgb
        elif encoding == 'bgr8':
            array = rgb[..., ::-1]
        elif encoding == 'rgba8':
            array = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        elif encoding == 'bgra8':
            array = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
        elif encoding == 'mono8':
            array = rgb.mean(axis=2).astype(np.uint8)
        else:
            raise ValueError(f'no default pattern for encoding {encoding!r}; pass an array')
    array = np.ascontiguousarray(array)
    if encoding in _ENCODING_CHANNELS:
        channels, dtype = _ENCODING_CHANNELS[encoding]
        array = array.astype(dtype, copy=False)
        if array.ndim == 2 and channels != 1 or array.ndim == 3 and array.shape[2] != channels:
            raise ValueError(f'array of shape {array.shape} does not fit {encoding}')
    h, w = array.shape[:2]
    msg = Image()
    msg.header = header if header is not None else make_header()
    msg.height, msg.width = int(h), int(w)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.strides[0])
    msg.data = array.tobytes()
    return msg


def make_camera_info(width: int, height: int, *, header: Optional['Header'] = None,
                     fx: Optional[float] = None, fy: Optional[float] = None,
                     cx: Optional[float] = None, cy: Optional[float] = None) -> 'CameraInfo':
    """A rectified pinhole CameraInfo (K = P[:3,:3], no distortion).

    Defaults: fx = fy = width (about 53 degrees horizontal field of view),
    principal point at the image centre.
    """
    fx = float(width) if fx is None else float(fx)
    fy = fx if fy is None else float(fy)
    cx = (width - 1) / 2.0 if cx is None else float(cx)
    cy = (height - 1) / 2.0 if cy is None else float(cy)
    msg = CameraInfo()
    msg.header = header if header is not None else make_header()
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = 'plumb_bob'
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def make_compressed_image(rgb: Optional['np.ndarray'] = None, *, width: int = 64, height: int = 48,
                          fmt: str = 'jpeg', header: Optional['Header'] = None,
                          quality: int = 90) -> 'CompressedImage':
    """sensor_msgs/CompressedImage as image_transport's compressed plugin writes it.

    `rgb` is HxWx3 uint8 in RGB order (default: pattern_image). `fmt` is
    'jpeg' or 'png'; the format string names a bgr8 source as cv_bridge does.
    """
    from io import BytesIO

    from PIL import Image as PilImage

    if rgb is None:
        rgb = pattern_image(width, height)
    buf = BytesIO()
    pil = PilImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode='RGB')
    if fmt == 'jpeg':
        pil.save(buf, format='JPEG', quality=quality)
    elif fmt == 'png':
        pil.save(buf, format='PNG')
    else:
        raise ValueError(f'unsupported format {fmt!r}')
    msg = CompressedImage()
    msg.header = header if header is not None else make_header()
    msg.format = f'bgr8; {fmt} compressed bgr8'
    msg.data = buf.getvalue()
    return msg


def image_to_array(msg: 'Image') -> 'np.ndarray':
    """sensor_msgs/Image (32FC1, 16UC1, mono8, rgb8, bgr8, ...) to a numpy array view."""
    channels, dtype = _ENCODING_CHANNELS[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    raw = raw[:, : msg.width * channels * itemsize]
    order = '>' if msg.is_bigendian else '<'
    arr = raw.copy().view(np.dtype(dtype).newbyteorder(order))
    return arr.reshape(msg.height, msg.width, channels) if channels > 1 else arr.reshape(msg.height, msg.width)



# --------------------------------------------------------------------------
# Reading what the node publishes (independent of the node's code)
# --------------------------------------------------------------------------

def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)



def camera_intrinsics(info) -> tuple:
    """(fx, fy, cx, cy) of the image a CameraInfo describes, as depth_image_proc
    (image_geometry) computes them: from P (K when P is all zero), principal
    point shifted by the ROI offset, everything divided by the binning (0 = 1)."""
    p = np.asarray(info.p, dtype=np.float64)
    k = np.asarray(info.k, dtype=np.float64)
    if np.all(p == 0):
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    else:
        fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    bx = max(int(info.binning_x), 1)
    by = max(int(info.binning_y), 1)
    return (fx / bx, fy / by, (cx - info.roi.x_offset) / bx, (cy - info.roi.y_offset) / by)


def depth_to_metres(msg: 'Image') -> 'np.ndarray':
    """A 32FC1 (metres) or 16UC1 (mm, 0 = invalid -> NaN) depth image as float64 metres."""
    arr = image_to_array(msg)
    if msg.encoding == '16UC1':
        out = arr.astype(np.float64) * 1e-3
        out[arr == 0] = np.nan
        return out
    assert msg.encoding == '32FC1', msg.encoding
    return arr.astype(np.float64)


def backproject(depth: 'np.ndarray', info, decimation: int = 1) -> tuple:
    """X, Y, Z (float64, organised ceil(h/d) x ceil(w/d)) of depth pixels
    (d*row, d*col): X = (u - cx) Z / fx, Y = (v - cy) Z / fy. Pixels without a
    valid reading (non-finite or <= 0) give NaN."""
    fx, fy, cx, cy = camera_intrinsics(info)
    z = np.asarray(depth, dtype=np.float64)[::decimation, ::decimation].copy()
    z[~np.isfinite(z) | (z <= 0)] = np.nan
    v, u = np.mgrid[0:depth.shape[0]:decimation, 0:depth.shape[1]:decimation].astype(np.float64)
    return (u - cx) * z / fx, (v - cy) * z / fy, z


_POINT_FIELD_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}


def cloud_to_array(msg: 'PointCloud2') -> 'np.ndarray':
    """A PointCloud2 as a (height, width) numpy structured array with its fields
    at their declared offsets (little-endian; checks row_step and data size)."""
    assert not msg.is_bigendian
    names, formats, offsets = [], [], []
    for f in msg.fields:
        assert f.count == 1, f'field {f.name} has count {f.count}'
        names.append(f.name)
        formats.append('<' + _POINT_FIELD_DTYPES[f.datatype])
        offsets.append(f.offset)
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': msg.point_step})
    assert msg.row_step == msg.width * msg.point_step, (msg.row_step, msg.width, msg.point_step)
    data = bytes(msg.data)
    assert len(data) == msg.row_step * msg.height, (len(data), msg.row_step, msg.height)
    return np.frombuffer(data, dtype=dtype).reshape(msg.height, msg.width)


def cloud_bytes(msg: 'PointCloud2') -> 'np.ndarray':
    """The raw point records of a PointCloud2 as (height, width, point_step) uint8."""
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, msg.point_step)




def stamp_plus(stamp: 'Time', ns: int) -> 'Time':
    """`stamp` shifted by `ns` nanoseconds, exactly (no float seconds)."""
    total = stamp_ns(stamp) + ns
    return Time(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


def wait_for_subscription(node, publisher, timeout: float) -> bool:
    """Spins `node` until `publisher` has a subscriber or `timeout` seconds
    pass (best-effort frames sent before the match are lost). For scripts
    that spin their own node; the tests' RosPeer has its own."""
    import rclpy
    deadline = time.monotonic() + timeout
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    return publisher.get_subscription_count() > 0


def cloud_xyz(msg: 'PointCloud2') -> 'np.ndarray':
    """The x, y, z fields of a PointCloud2 as an (N, 3) float64 array."""
    cloud = cloud_to_array(msg).reshape(-1)
    return np.stack([cloud['x'], cloud['y'], cloud['z']], -1).astype(np.float64)
