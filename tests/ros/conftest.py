"""pytest harness for end-to-end tests of clip_depth_node over ROS 2.

The tests run the built node binary as a subprocess and talk to it from an
independent rclpy peer. See README.md in this directory for how to run them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Set CLIP_DEPTH_ROS_REQUIRED=1 (CI) to make a missing ROS environment or node
# binary an error instead of a skip.
_REQUIRED = os.environ.get('CLIP_DEPTH_ROS_REQUIRED', '') not in ('', '0', 'false')

# Domain IDs handed out to test sessions. 1..101 are valid with Fast DDS's
# default port mapping on Linux; 0 (the default) is left to interactive use.
_DOMAIN_MIN, _DOMAIN_MAX = 1, 101
_DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / 'clip_depth_ros_test_domains'

DEFAULT_FRAME_ID = 'camera_optical_frame'


def _skip_or_fail(reason: str):
    if _REQUIRED:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


try:  # rclpy and the messages need the environment from .ros/env.sh.
    import numpy as np
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile,
                           ReliabilityPolicy)
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from std_msgs.msg import Header
    _IMPORT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    _IMPORT_ERROR = exc

try:
    from clip_depth_msgs.msg import DepthStats
except ImportError as exc:  # pragma: no cover - depends on the environment
    DepthStats = None  # type: ignore[assignment]
    _DEPTH_STATS_ERROR: Optional[BaseException] = exc
else:
    _DEPTH_STATS_ERROR = None


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'ros: end-to-end test that runs clip_depth_node over ROS 2')
    # rosidl's lark imports deprecated modules; not ours to fix.
    config.addinivalue_line('filterwarnings', 'ignore::DeprecationWarning:lark.*')


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.ros)


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
} if _IMPORT_ERROR is None else {}


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
# The rclpy test peer
# --------------------------------------------------------------------------

class TopicCollector:
    """Records every message received on one topic; thread safe."""

    def __init__(self, peer: 'RosPeer', msg_type, topic: str, qos: 'QoSProfile'):
        self.topic = topic
        self.msg_type = msg_type
        self._cond = threading.Condition()
        self._messages: list = []
        self._arrivals: list = []
        self._peer = peer
        self.subscription = peer.node.create_subscription(msg_type, topic, self._on_msg, qos)

    def _on_msg(self, msg):
        with self._cond:
            self._messages.append(msg)
            self._arrivals.append(time.monotonic())
            self._cond.notify_all()

    @property
    def messages(self) -> list:
        with self._cond:
            return list(self._messages)

    @property
    def arrival_times(self) -> list:
        """time.monotonic() of each message's arrival."""
        with self._cond:
            return list(self._arrivals)

    def clear(self):
        with self._cond:
            self._messages.clear()
            self._arrivals.clear()

    def wait_for(self, count: int = 1, timeout: float = 10.0,
                 predicate: Optional[Callable[[Any], bool]] = None) -> list:
        """Wait until `count` messages (matching `predicate`, if given) arrived.

        Returns every matching message received so far (at least `count`).
        Raises AssertionError on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [m for m in self._messages if predicate is None or predicate(m)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f'timed out after {timeout:.1f} s waiting for {count} message(s) on '
                        f'{self.topic!r} ({self.msg_type.__name__}); got {len(matching)} '
                        f'matching of {len(self._messages)}')
                self._cond.wait(min(remaining, 0.1))

    def destroy(self):
        self._peer.node.destroy_subscription(self.subscription)


class RosPeer:
    """An rclpy node spun by a background executor, with test helpers."""

    def __init__(self, context: 'Context', name: str):
        self.context = context
        self.node = Node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f'{name}-spin', daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown races
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.executor.remove_node(self.node)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    # -- publishers and subscriptions --------------------------------------
    def publisher(self, msg_type, topic: str, qos: Optional['QoSProfile'] = None):
        return self.node.create_publisher(msg_type, topic, qos or qos_reliable(5))

    def collect(self, msg_type, topic: str, qos: Optional['QoSProfile'] = None) -> TopicCollector:
        """Start recording `topic`. Default QoS is best effort, which matches any publisher."""
        return TopicCollector(self, msg_type, topic, qos or qos_best_effort(50))

    def wait_for_messages(self, msg_type, topic: str, count: int = 1, timeout: float = 10.0,
                          qos: Optional['QoSProfile'] = None,
                          predicate: Optional[Callable[[Any], bool]] = None) -> list:
        """Subscribe to `topic`, wait for `count` messages, unsubscribe, return them."""
        collector = self.collect(msg_type, topic, qos)
        try:
            return collector.wait_for(count, timeout, predicate)
        finally:
            collector.destroy()

    # -- graph -------------------------------------------------------------
    def wait_for_node(self, name: str, namespace: str = '/', timeout: float = 10.0):
        """Wait until a node `namespace/name` is visible in the ROS graph."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (name, namespace) in self.node.get_node_names_and_namespaces():
                return
            time.sleep(0.05)
        raise AssertionError(f'node {namespace.rstrip("/")}/{name} did not appear within {timeout} s; '
                             f'graph: {self.node.get_node_names_and_namespaces()}')

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 10.0):
        """Wait until `publisher` is matched by `count` subscriptions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if publisher.get_subscription_count() >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f'{publisher.topic_name}: {publisher.get_subscription_count()} '
                             f'subscriber(s) after {timeout} s, wanted {count}')

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 10.0):
        """Wait until `topic` (fully qualified) has `count` publishers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node.count_publishers(topic) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f'{topic}: {self.node.count_publishers(topic)} publisher(s) after '
                             f'{timeout} s, wanted {count}')

    # -- publishing inputs -------------------------------------------------
    def publish_frame(self, image_pub, info_pub, array: Optional['np.ndarray'] = None, *,
                      width: int = 64, height: int = 48, encoding: str = 'rgb8',
                      stamp: Optional['Time'] = None, frame_id: str = DEFAULT_FRAME_ID,
                      camera_info: Optional['CameraInfo'] = None,
                      info_first: bool = True) -> 'Header':
        """Publish an Image and its CameraInfo with the same header; return the header.

        `camera_info` (its header is replaced) defaults to make_camera_info
        for the image's size. The camera_info goes out first unless
        `info_first` is False.
        """
        header = make_header(stamp, frame_id)
        image = make_image(array, width=width, height=height, encoding=encoding, header=header)
        info = camera_info if camera_info is not None else make_camera_info(image.width, image.height)
        info.header = header
        if info_first:
            info_pub.publish(info)
            image_pub.publish(image)
        else:
            image_pub.publish(image)
            info_pub.publish(info)
        return header

    def publish_compressed(self, compressed_pub, info_pub=None, rgb: Optional['np.ndarray'] = None, *,
                           width: int = 64, height: int = 48, fmt: str = 'jpeg',
                           stamp: Optional['Time'] = None, frame_id: str = DEFAULT_FRAME_ID,
                           camera_info: Optional['CameraInfo'] = None) -> 'Header':
        """Publish a CompressedImage (and, given `info_pub`, its CameraInfo); return the header."""
        header = make_header(stamp, frame_id)
        if rgb is not None:
            height, width = rgb.shape[:2]
        msg = make_compressed_image(rgb, width=width, height=height, fmt=fmt, header=header)
        if info_pub is not None:
            info = camera_info if camera_info is not None else make_camera_info(width, height)
            info.header = header
            info_pub.publish(info)
        compressed_pub.publish(msg)
        return header


# --------------------------------------------------------------------------
# The node under test
# --------------------------------------------------------------------------

def format_param_value(value: Any) -> str:
    """A Python value as the YAML that `--ros-args -p name:=value` parses."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in '.eEn') else text + '.0'
    if isinstance(value, (str, os.PathLike)):
        return json.dumps(os.fspath(value))  # a YAML double-quoted string
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(format_param_value(v) for v in value) + ']'
    raise TypeError(f'unsupported parameter value {value!r}')


def ros_args(*, name: Optional[str] = None, namespace: Optional[str] = None,
             params: Optional[Mapping[str, Any]] = None,
             remaps: Optional[Mapping[str, str]] = None,
             params_file: Optional[os.PathLike] = None,
             log_level: Optional[str] = None) -> list:
    """The `--ros-args ...` part of a node command line."""
    args = ['--ros-args']
    if name:
        args += ['-r', f'__node:={name}']
    if namespace:
        args += ['-r', f'__ns:={namespace if namespace.startswith("/") else "/" + namespace}']
    if params_file is not None:
        args += ['--params-file', os.fspath(params_file)]
    for key, value in (params or {}).items():
        args += ['-p', f'{key}:={format_param_value(value)}']
    for src, dst in (remaps or {}).items():
        args += ['-r', f'{src}:={dst}']
    if log_level:
        args += ['--log-level', log_level]
    return args


@dataclass
class NodeProcess:
    """A running clip_depth_node; stdout and stderr are captured line by line."""

    argv: list
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    _stdout: list = field(default_factory=list)
    _stderr: list = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    exit_duration: Optional[float] = None

    def __post_init__(self):
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self._stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream, sink: list):
        for raw in iter(stream.readline, b''):
            with self._cond:
                sink.append(raw.decode('utf-8', errors='replace').rstrip('\n'))
                self._cond.notify_all()
        stream.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        with self._cond:
            return '\n'.join(self._stderr)

    def stdout(self) -> str:
        with self._cond:
            return '\n'.join(self._stdout)

    def output_tail(self, lines: int = 40) -> str:
        with self._cond:
            return '\n'.join((self._stdout + self._stderr)[-lines:])

    def wait_for_output(self, pattern: str, timeout: float = 10.0, stream: str = 'any') -> 're.Match':
        """Wait until a line of stderr/stdout (`stream`: 'stderr', 'stdout' or 'any') matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if stream == 'stderr':
                    lines = self._stderr
                elif stream == 'stdout':
                    lines = self._stdout
                else:
                    lines = self._stderr + self._stdout
                for line in lines:
                    match = regex.search(line)
                    if match:
                        return match
                if self.process.poll() is not None and all(not r.is_alive() for r in self._readers):
                    raise AssertionError(f'node exited ({self.process.returncode}) before printing '
                                         f'{pattern!r}:\n{self.output_tail()}')
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f'node printed nothing matching {pattern!r} within {timeout} s:\n'
                                         f'{self.output_tail()}')
                self._cond.wait(min(remaining, 0.1))

    def assert_running(self):
        if not self.running():
            raise AssertionError(f'node exited with {self.process.returncode}:\n{self.output_tail()}')

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the node to exit by itself (e.g. a start-up error); return
        its exit code once its output is fully captured. Kills it and raises
        AssertionError if it is still running after `timeout` seconds."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5.0)
            raise AssertionError(f'node still running after {timeout} s (killed):\n{self.output_tail()}')
        for reader in self._readers:
            reader.join(timeout=2.0)
        return self.process.returncode

    def stop(self, timeout: float = 1.0, check: bool = True, sig: int = signal.SIGINT) -> int:
        """Send `sig` (default SIGINT) to the node and wait for it to exit;
        return its exit code.

        With `check`, raise AssertionError if it takes longer than `timeout`
        seconds (it is then killed) or exits with a non-zero code.
        """
        if self.process.poll() is None:
            t0 = time.monotonic()
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
                self.exit_duration = time.monotonic() - t0
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)
                self.exit_duration = time.monotonic() - t0
                for reader in self._readers:
                    reader.join(timeout=1.0)
                if check:
                    raise AssertionError(f'node did not exit within {timeout} s of '
                                         f'{signal.Signals(sig).name} (killed):\n{self.output_tail()}')
                return self.process.returncode
        for reader in self._readers:
            reader.join(timeout=1.0)
        code = self.process.returncode
        if check and code != 0:
            raise AssertionError(f'node exited with {code}:\n{self.output_tail()}')
        return code


def find_node_binary() -> Path:
    """CLIP_DEPTH_NODE_BIN, else target/debug/clip_depth_node (or under CARGO_TARGET_DIR)."""
    env = os.environ.get('CLIP_DEPTH_NODE_BIN')
    if env:
        return Path(env)
    candidates = [REPO_ROOT / 'target' / 'debug' / 'clip_depth_node']
    if os.environ.get('CARGO_TARGET_DIR'):
        candidates.append(Path(os.environ['CARGO_TARGET_DIR']) / 'debug' / 'clip_depth_node')
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def _claim_domain_id() -> tuple:
    """Pick a ROS_DOMAIN_ID no other test session on this machine holds.

    Each session holds an exclusive lock on a file per domain for its whole
    run, so parallel runs (including pytest-xdist workers) never share one.
    """
    forced = os.environ.get('CLIP_DEPTH_TEST_DOMAIN_ID')
    if forced:
        return int(forced), None
    _DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    span = _DOMAIN_MAX - _DOMAIN_MIN + 1
    start = os.getpid() % span
    for i in range(span):
        domain = _DOMAIN_MIN + (start + i) % span
        fd = os.open(_DOMAIN_LOCK_DIR / f'{domain}.lock', os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                continue
            raise
        return domain, fd
    raise RuntimeError(f'every ROS domain {_DOMAIN_MIN}..{_DOMAIN_MAX} is taken by another test session')


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope='session')
def ros_environment():
    """Checks that rclpy and clip_depth_msgs import (.ros/env.sh sourced)."""
    if _IMPORT_ERROR is not None:
        _skip_or_fail(f'rclpy is not importable ({_IMPORT_ERROR}); run scripts/setup-ros.sh '
                      f'and source .ros/env.sh (or use scripts/ros-env.sh)')
    if _DEPTH_STATS_ERROR is not None:
        _skip_or_fail(f'clip_depth_msgs is not importable ({_DEPTH_STATS_ERROR}); '
                      f'source .ros/env.sh')
    return True


@pytest.fixture(scope='session')
def ros_domain_id(ros_environment):
    """A ROS_DOMAIN_ID unique to this test session, exported to the environment.

    Discovery is kept on localhost (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).
    """
    domain, fd = _claim_domain_id()
    saved = {k: os.environ.get(k) for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')}
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    yield domain
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if fd is not None:
        os.close(fd)


@pytest.fixture(scope='session')
def rclpy_context(ros_domain_id):
    """An initialised rclpy Context on the session's domain."""
    context = Context()
    # No rclpy signal handlers: Ctrl-C should interrupt pytest as usual.
    rclpy.init(context=context, domain_id=ros_domain_id,
               signal_handler_options=SignalHandlerOptions.NO)
    yield context
    context.try_shutdown()


_peer_counter = iter(range(1, 1_000_000))


@pytest.fixture
def ros_peer(rclpy_context):
    """A fresh RosPeer (rclpy node + background executor) for one test."""
    peer = RosPeer(rclpy_context, f'clip_depth_test_peer_{os.getpid()}_{next(_peer_counter)}')
    yield peer
    peer.close()


@pytest.fixture
def ros_node(ros_peer):
    """The rclpy Node of `ros_peer`."""
    return ros_peer.node


@pytest.fixture(scope='session')
def node_binary(ros_environment) -> Path:
    """Path of the clip_depth_node binary (CLIP_DEPTH_NODE_BIN or target/debug)."""
    path = find_node_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        _skip_or_fail(f'{path} not found: build it (cargo build --features ros --bin clip_depth_node) '
                      f'or set CLIP_DEPTH_NODE_BIN')
    return path


@pytest.fixture(scope='session')
def ros_log_dir(tmp_path_factory) -> Path:
    """ROS_LOG_DIR for the node processes of this session."""
    return tmp_path_factory.mktemp('ros_log')


def node_environment(domain_id: int, log_dir: Path, extra: Optional[Mapping[str, str]] = None) -> dict:
    """The environment a node subprocess gets: ours, plus domain, logs and libpython."""
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_LOG_DIR'] = os.fspath(log_dir)
    env.setdefault('RUST_BACKTRACE', '1')
    env.setdefault('RCUTILS_COLORIZED_OUTPUT', '0')
    # The wheels' librcl needs CPython symbols (see scripts/setup-ros.sh).
    libpython = env.get('CLIP_DEPTH_ROS_LIBPYTHON')
    if libpython and libpython not in env.get('LD_PRELOAD', '').split():
        env['LD_PRELOAD'] = (libpython + ' ' + env.get('LD_PRELOAD', '')).strip()
    env.update(extra or {})
    return env


@pytest.fixture
def start_node(node_binary, ros_domain_id, ros_log_dir):
    """Factory: start clip_depth_node; every node still running at teardown is stopped.

        node = start_node(params={'device': 'cpu'}, remaps={'image': '/cam/image'})
        ...
        assert node.stop() == 0   # SIGINT, must exit within 1 s

    Keyword arguments: name, namespace, params (dict, -p name:=value),
    remaps (dict, -r from:=to), params_file, log_level, extra_args (after
    --ros-args ...), env (extra environment), binary (another executable).
    Teardown fails the test if a node left running does not exit within 1 s
    of SIGINT.
    """
    started: list = []

    def _start(*, name: Optional[str] = None, namespace: Optional[str] = None,
               params: Optional[Mapping[str, Any]] = None,
               remaps: Optional[Mapping[str, str]] = None,
               params_file: Optional[os.PathLike] = None,
               log_level: Optional[str] = None,
               extra_args: Sequence[str] = (),
               env: Optional[Mapping[str, str]] = None,
               binary: Optional[os.PathLike] = None) -> NodeProcess:
        argv = [os.fspath(binary or node_binary)]
        argv += ros_args(name=name, namespace=namespace, params=params, remaps=remaps,
                         params_file=params_file, log_level=log_level)
        argv += list(extra_args)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env=node_environment(ros_domain_id, ros_log_dir, env))
        node = NodeProcess(argv=argv, process=proc)
        started.append(node)
        return node

    yield _start

    errors = []
    for node in started:
        if node.running():
            try:
                node.stop(timeout=1.0, check=False)
                if node.exit_duration is not None and node.exit_duration > 1.0:
                    errors.append(f'pid {node.pid} took {node.exit_duration:.2f} s to exit on SIGINT')
            except Exception as exc:  # keep cleaning the others
                errors.append(f'pid {node.pid}: {exc}')
    if errors:
        pytest.fail('; '.join(errors), pytrace=False)


@pytest.fixture
def ros_helpers(ros_environment):
    """The message builders and helpers of this module, for tests that prefer a fixture
    to `from conftest import ...`."""
    import types
    return types.SimpleNamespace(
        qos_reliable=qos_reliable, qos_best_effort=qos_best_effort,
        make_stamp=make_stamp, make_header=make_header, pattern_image=pattern_image,
        make_image=make_image, make_camera_info=make_camera_info,
        make_compressed_image=make_compressed_image, image_to_array=image_to_array,
        format_param_value=format_param_value, ros_args=ros_args,
        DepthStats=DepthStats,
    )


@pytest.fixture
def depth_stats_type():
    """clip_depth_msgs/DepthStats (the Python class)."""
    if DepthStats is None:
        _skip_or_fail(f'clip_depth_msgs is not importable ({_DEPTH_STATS_ERROR})')
    return DepthStats


# --------------------------------------------------------------------------
# The tiny test model, independent geometry, and a node + peer rig
# --------------------------------------------------------------------------

FIXTURES_DIR = REPO_ROOT / 'tests' / 'fixtures'
TINY_CLIP_DIR = FIXTURES_DIR / 'tiny_clip'
# clip_model_name of tests/fixtures/tiny_clip/config.yaml, reported in DepthStats.model_name.
TINY_MODEL_NAME = 'tiny-random-clip'

# Where the rig publishes inputs (the node's relative `image`, `image/compressed`
# and `camera_info` are remapped here).
CAM_IMAGE = '/cam/image'
CAM_COMPRESSED = '/cam/image/compressed'
CAM_INFO = '/cam/camera_info'


def tiny_model_params() -> dict:
    """The parameters that load the random-weight tiny SPACE-CLIP of the fixtures."""
    return {
        'model_config': TINY_CLIP_DIR / 'config.yaml',
        'checkpoint': TINY_CLIP_DIR / 'checkpoint.pt',
        'clip_config': TINY_CLIP_DIR / 'clip_config.json',
    }


def load_fixture_image(name: str) -> 'np.ndarray':
    """tests/fixtures/images/<name> as an HxWx3 uint8 RGB array."""
    from PIL import Image as PilImage
    with PilImage.open(FIXTURES_DIR / 'images' / name) as pil:
        return np.asarray(pil.convert('RGB'), dtype=np.uint8).copy()


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def assert_same_header(msg, header, what: str = 'message'):
    """stamp and frame_id of `msg.header` equal `header`'s."""
    got = (stamp_ns(msg.header.stamp), msg.header.frame_id)
    want = (stamp_ns(header.stamp), header.frame_id)
    assert got == want, f'{what}: header (stamp ns, frame_id) {got} != input {want}'


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


@dataclass
class FrameOutputs:
    """What the node published for one input frame (None: not received)."""
    header: Any
    depth: Any = None
    info: Any = None
    points: Any = None
    stats: Any = None


class DepthRig:
    """clip_depth_node on the tiny model, its inputs remapped to /cam/..., and an
    rclpy peer that publishes frames and records the outputs.

    `collect` names the outputs to record: any of 'depth', 'info', 'points',
    'stats', 'colormap' (skip 'points' for big images to spare the CPU).
    `output_qos` is the QoS of the recording subscriptions (default reliable,
    so large messages are never lost); `input_qos` that of the publishers.
    """

    OUTPUTS = {'depth': ('depth/image', 'Image'), 'info': ('depth/camera_info', 'CameraInfo'),
               'points': ('points', 'PointCloud2'), 'stats': ('clip_depth/stats', 'DepthStats'),
               'colormap': ('depth/colormap', 'Image')}

    def __init__(self, start_node, peer: RosPeer, *, params: Optional[Mapping[str, Any]] = None,
                 namespace: Optional[str] = None,
                 collect: Iterable[str] = ('depth', 'info', 'points', 'stats'),
                 input_qos: Optional['QoSProfile'] = None, output_qos: Optional['QoSProfile'] = None,
                 warm_up: Optional[str] = 'info'):
        self.peer = peer
        self.params = {**tiny_model_params(), **(params or {})}
        self.ns = '/' + namespace.strip('/') if namespace else ''
        self.node = start_node(params=self.params, namespace=namespace,
                               remaps={'image': CAM_IMAGE, 'image/compressed': CAM_COMPRESSED,
                                       'camera_info': CAM_INFO})
        self.compressed = self.params.get('image_transport') == 'compressed'
        types = {'Image': Image, 'CameraInfo': CameraInfo, 'PointCloud2': PointCloud2,
                 'DepthStats': DepthStats}
        self.collectors = {}
        for key in collect:
            topic, type_name = self.OUTPUTS[key]
            self.collectors[key] = peer.collect(types[type_name], self.topic(key),
                                                output_qos or qos_reliable(50))
        in_qos = input_qos or qos_reliable(5)
        self.image_pub = (peer.publisher(CompressedImage, CAM_COMPRESSED, in_qos) if self.compressed
                          else peer.publisher(Image, CAM_IMAGE, in_qos))
        self.info_pub = peer.publisher(CameraInfo, CAM_INFO, in_qos)
        if warm_up is not None:
            self.wait_connected()
            self.warm_up(with_info=(warm_up == 'info'))

    def topic(self, key: str) -> str:
        """Fully qualified name of an output ('depth', 'info', 'points', 'stats', 'colormap')."""
        return f'{self.ns}/{self.OUTPUTS[key][0]}'

    def wait_connected(self, timeout: float = 20.0):
        """Waits until the node subscribes to our inputs and every collector is
        matched with the node's publisher (so no output is missed)."""
        self.peer.wait_for_subscribers(self.image_pub, timeout=timeout)
        self.peer.wait_for_subscribers(self.info_pub, timeout=timeout)
        deadline = time.monotonic() + timeout
        for key, collector in self.collectors.items():
            if key == 'points' and not self.params.get('publish_cloud', True):
                continue
            if key == 'colormap' and not self.params.get('publish_colormap', False):
                continue
            while collector.subscription.get_publisher_count() < 1:
                self.node.assert_running()
                if time.monotonic() > deadline:
                    raise AssertionError(f'{collector.topic}: no publisher matched within {timeout} s:\n'
                                         f'{self.node.output_tail()}')
                time.sleep(0.02)

    def expected_outputs(self, with_info: bool = True) -> tuple:
        """The collected outputs the node publishes for a good frame."""
        keys = ['depth', 'stats']
        if with_info:
            keys.append('info')
            if self.params.get('publish_cloud', True):
                keys.append('points')
        if self.params.get('publish_colormap', False):
            keys.append('colormap')
        return tuple(k for k in keys if k in self.collectors)

    def warm_up(self, with_info: bool = True, attempts: int = 10) -> FrameOutputs:
        """Sends small good frames (with a camera_info unless `with_info` is
        False) until one comes back on every collected output: matching seen
        from the subscriber side does not mean the other side has matched
        yet, and a sample sent before that is silently lost."""
        expect = self.expected_outputs(with_info)
        for _ in range(attempts):
            header = make_header()
            if self.compressed:
                image = make_compressed_image(width=64, height=48, fmt='png', header=header)
                info = make_camera_info(64, 48) if with_info else None
            else:
                image = make_image(width=64, height=48, header=header)
                info = with_info
            try:
                return self.send(image, info, expect=expect, timeout=1.5)
            except AssertionError:
                self.node.assert_running()
        raise AssertionError(f'no outputs {expect} for {attempts} warm-up frames:\n{self.node.output_tail()}')

    # -- inputs ------------------------------------------------------------
    def publish(self, image, info=None):
        """Publishes `info` (if any) first, then `image` (Image or CompressedImage)."""
        if info is not None:
            self.info_pub.publish(info)
        self.image_pub.publish(image)

    def frame(self, array: Optional['np.ndarray'] = None, *, encoding: str = 'rgb8',
              width: int = 64, height: int = 48, info: Any = True,
              frame_id: str = DEFAULT_FRAME_ID, stamp: Optional['Time'] = None,
              expect: Iterable[str] = ('depth', 'stats'), timeout: float = 20.0) -> FrameOutputs:
        """Publishes one raw frame (and, with `info` True or a CameraInfo, its
        camera_info with the same header), waits for the `expect`ed outputs."""
        header = make_header(stamp, frame_id)
        image = make_image(array, width=width, height=height, encoding=encoding, header=header)
        return self.send(image, info, expect=expect, timeout=timeout)

    def send(self, image, info: Any = True, *, expect: Iterable[str] = ('depth', 'stats'),
             timeout: float = 20.0) -> FrameOutputs:
        """Publishes a prepared Image/CompressedImage (with `info` True: a default
        camera_info of its size with its header; a CameraInfo: that one, header
        replaced; None/False: none) and waits for the `expect`ed outputs."""
        header = image.header
        if info is True:
            assert not self.compressed, 'pass the camera_info of a compressed image explicitly'
            info = make_camera_info(image.width, image.height)
        if info is not None and info is not False:
            info.header = make_header(header.stamp, header.frame_id)
        else:
            info = None
        self.publish(image, info)
        return self.outputs(header, expect=expect, timeout=timeout)

    # -- outputs -----------------------------------------------------------
    def _matching(self, key: str, header) -> list:
        want = stamp_ns(header.stamp)
        return [m for m in self.collectors[key].messages if stamp_ns(m.header.stamp) == want]

    def outputs(self, header, expect: Iterable[str] = ('depth', 'stats'),
                timeout: float = 20.0) -> FrameOutputs:
        """Waits for the outputs in `expect` with `header`'s stamp; returns those
        received (unexpected ones too, if they are already there)."""
        want = stamp_ns(header.stamp)
        deadline = time.monotonic() + timeout
        for key in expect:
            try:
                self.collectors[key].wait_for(1, max(deadline - time.monotonic(), 0.01),
                                              lambda m: stamp_ns(m.header.stamp) == want)
            except AssertionError as exc:
                raise AssertionError(f'{exc}\nnode output:\n{self.node.output_tail()}') from None
        out = FrameOutputs(header=header)
        for key in self.collectors:
            found = self._matching(key, header)
            if key in FrameOutputs.__dataclass_fields__ and found:
                setattr(out, key, found[-1])
        return out

    def assert_nothing(self, header, keys: Iterable[str], wait: float = 0.5):
        """Asserts that, after `wait` seconds, no output in `keys` carries `header`'s stamp."""
        time.sleep(wait)
        for key in keys:
            found = self._matching(key, header)
            assert not found, f'{self.topic(key)} published {len(found)} message(s) for this frame'

    def latest_stats(self):
        msgs = self.collectors['stats'].messages
        return msgs[-1] if msgs else None

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> 're.Match':
        """A line of the node's stderr matching `pattern` (regex)."""
        return self.node.wait_for_output(pattern, timeout=timeout, stream='stderr')

    def close(self, check: bool = True) -> int:
        """Stops the node (SIGINT; with `check`, it must exit with 0 within 1 s)
        and removes this rig's subscriptions and publishers from the peer."""
        code = self.node.stop(check=check)
        for collector in self.collectors.values():
            collector.destroy()
        self.collectors = {}
        self.peer.node.destroy_publisher(self.image_pub)
        self.peer.node.destroy_publisher(self.info_pub)
        return code


@pytest.fixture
def depth_rig(start_node, ros_peer, depth_stats_type):
    """Factory: DepthRig(start_node, ros_peer, **kwargs) (see DepthRig)."""
    def _make(**kwargs) -> DepthRig:
        return DepthRig(start_node, ros_peer, **kwargs)
    return _make
