"""pytest harness for end-to-end tests of clip_depth_node over ROS 2.

The tests run the built node binary as a subprocess and talk to it from an
independent rclpy peer. See README.md in this directory for how to run them.
Message builders and readers are in ros_messages.py.
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
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from ros_messages import (DEFAULT_FRAME_ID, make_camera_info, make_compressed_image, make_header,
                              make_image, qos_best_effort, qos_reliable, stamp_ns)
    _IMPORT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    _IMPORT_ERROR = exc
    DEFAULT_FRAME_ID = ''


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
# The rclpy test peer
# --------------------------------------------------------------------------

class TopicCollector:
    """Records every message received on one topic; thread safe."""

    def __init__(self, peer: 'RosPeer', msg_type, topic: str, qos: 'QoSProfile'):
        self.topic = topic
        self.msg_type = msg_type
        self._cond = threading.Condition()
        self._messages: list = []
        self._peer = peer
        self.subscription = peer.node.create_subscription(msg_type, topic, self._on_msg, qos)

    def _on_msg(self, msg):
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()

    @property
    def messages(self) -> list:
        with self._cond:
            return list(self._messages)

    def clear(self):
        with self._cond:
            self._messages.clear()

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

    # -- graph -------------------------------------------------------------
    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 10.0):
        """Wait until `publisher` is matched by `count` subscriptions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if publisher.get_subscription_count() >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f'{publisher.topic_name}: {publisher.get_subscription_count()} '
                             f'subscriber(s) after {timeout} s, wanted {count}')


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


@pytest.fixture(scope='session')
def node_binary(ros_environment) -> Path:
    """Path of the clip_depth_node binary (CLIP_DEPTH_NODE_BIN or target/debug)."""
    path = find_node_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        _skip_or_fail(f'{path} not found: build it (cargo build --features test-hooks --bin clip_depth_node) '
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
def depth_stats_type():
    """clip_depth_msgs/DepthStats (the Python class)."""
    if DepthStats is None:
        _skip_or_fail(f'clip_depth_msgs is not importable ({_DEPTH_STATS_ERROR})')
    return DepthStats


# --------------------------------------------------------------------------
# The tiny test model and a node + peer rig
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


def assert_same_header(msg, header, what: str = 'message'):
    """stamp and frame_id of `msg.header` equal `header`'s."""
    got = (stamp_ns(msg.header.stamp), msg.header.frame_id)
    want = (stamp_ns(header.stamp), header.frame_id)
    assert got == want, f'{what}: header (stamp ns, frame_id) {got} != input {want}'


def wait_for_publisher(collector: TopicCollector, node: NodeProcess, deadline: float):
    """Waits until the node's publisher of `collector`'s topic is matched
    (the node still running), until monotonic time `deadline`."""
    while collector.subscription.get_publisher_count() < 1:
        node.assert_running()
        if time.monotonic() > deadline:
            raise AssertionError(f'{collector.topic}: no publisher matched by the deadline:\n{node.output_tail()}')
        time.sleep(0.02)


def wait_future(future, timeout: float = 10.0):
    """The result of an rclpy future (a service call), spun by the peer's executor."""
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, f'no answer within {timeout} s'
        time.sleep(0.02)
    return future.result()


def parameter_client(peer: RosPeer, node_name: str = '/clip_depth'):
    """rclpy's parameter client of the node (what `ros2 param` uses), its services up."""
    from rclpy.parameter_client import AsyncParameterClient
    client = AsyncParameterClient(peer.node, node_name)
    assert client.wait_for_services(timeout_sec=10.0), f'{node_name}: no parameter services'
    return client


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
            wait_for_publisher(collector, self.node, deadline)

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
              frame_id: str = DEFAULT_FRAME_ID, stamp: Optional[Any] = None,
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


# --------------------------------------------------------------------------
# Several cameras on one node
# --------------------------------------------------------------------------

class MultiCameraRig:
    """clip_depth_node on the tiny model with `cameras` set: camera NAME reads
    /NAME/image and /NAME/camera_info and publishes /NAME/depth/image,
    /NAME/depth/camera_info, /NAME/points, /NAME/depth/colormap and
    /clip_depth/NAME/stats. The rclpy peer publishes each camera's frames
    (frame_id NAME_optical_frame) and records its outputs."""

    OUTPUTS = {'depth': ('depth/image', 'Image'), 'info': ('depth/camera_info', 'CameraInfo'),
               'points': ('points', 'PointCloud2'), 'colormap': ('depth/colormap', 'Image'),
               'stats': (None, 'DepthStats')}

    def __init__(self, start_node, peer: RosPeer, cameras: Sequence[str], *,
                 params: Optional[Mapping[str, Any]] = None,
                 collect: Iterable[str] = ('depth', 'info', 'stats'), warm_up: bool = True,
                 env: Optional[Mapping[str, str]] = None):
        self.peer = peer
        self.cameras = list(cameras)
        self.params = {**tiny_model_params(), 'cameras': self.cameras, **(params or {})}
        self.node = start_node(params=self.params, env=env)
        types = {'Image': Image, 'CameraInfo': CameraInfo, 'PointCloud2': PointCloud2,
                 'DepthStats': DepthStats}
        self.collectors: dict = {}
        self.image_pubs: dict = {}
        self.info_pubs: dict = {}
        for cam in self.cameras:
            for key in collect:
                self.collectors[(cam, key)] = peer.collect(types[self.OUTPUTS[key][1]], self.topic(cam, key),
                                                           qos_reliable(100))
            self.image_pubs[cam] = peer.publisher(Image, f'/{cam}/image', qos_reliable(5))
            self.info_pubs[cam] = peer.publisher(CameraInfo, f'/{cam}/camera_info', qos_reliable(5))
        if warm_up:
            self.wait_connected()
            for cam in self.cameras:
                self.warm_up(cam)

    @staticmethod
    def frame_id(cam: str) -> str:
        return f'{cam}_optical_frame'

    def topic(self, cam: str, key: str) -> str:
        if key == 'stats':
            return f'/clip_depth/{cam}/stats'
        return f'/{cam}/{self.OUTPUTS[key][0]}'

    def wait_connected(self, timeout: float = 20.0):
        for cam in self.cameras:
            self.peer.wait_for_subscribers(self.image_pubs[cam], timeout=timeout)
            self.peer.wait_for_subscribers(self.info_pubs[cam], timeout=timeout)
        deadline = time.monotonic() + timeout
        for collector in self.collectors.values():
            wait_for_publisher(collector, self.node, deadline)

    def warm_up(self, cam: str, attempts: int = 10):
        """Good frames until one comes back (matching is not instant both ways)."""
        for _ in range(attempts):
            try:
                return self.send(cam, width=64, height=48, expect=('depth',), timeout=1.5)
            except AssertionError:
                self.node.assert_running()
        raise AssertionError(f'camera {cam}: no output for {attempts} warm-up frames:\n{self.node.output_tail()}')

    def publish(self, cam: str, array: Optional['np.ndarray'] = None, *, width: int = 64, height: int = 48,
                info: Any = True, stamp: Optional[Any] = None, encoding: str = 'rgb8',
                image: Any = None, frame_id: Optional[str] = None):
        """Publishes one frame of camera `cam` (and its camera_info: True = a
        default one of the image's size, or a CameraInfo, header replaced);
        returns the header."""
        header = make_header(stamp, frame_id or self.frame_id(cam))
        if image is None:
            image = make_image(array, width=width, height=height, encoding=encoding, header=header)
        else:
            image.header = header
        if info is True:
            info = make_camera_info(image.width, image.height)
        if info:
            info.header = make_header(header.stamp, header.frame_id)
            self.info_pubs[cam].publish(info)
        self.image_pubs[cam].publish(image)
        return header

    def send(self, cam: str, array: Optional['np.ndarray'] = None, *, expect: Iterable[str] = ('depth',),
             timeout: float = 20.0, **kwargs) -> dict:
        header = self.publish(cam, array, **kwargs)
        return self.outputs(cam, header, expect=expect, timeout=timeout)

    def outputs(self, cam: str, header, expect: Iterable[str] = ('depth',), timeout: float = 20.0) -> dict:
        """{key: message} of camera `cam` with `header`'s stamp, waiting for `expect`."""
        want = stamp_ns(header.stamp)
        deadline = time.monotonic() + timeout
        for key in expect:
            try:
                self.collectors[(cam, key)].wait_for(1, max(deadline - time.monotonic(), 0.01),
                                                     lambda m: stamp_ns(m.header.stamp) == want)
            except AssertionError as exc:
                raise AssertionError(f'{exc}\nnode output:\n{self.node.output_tail()}') from None
        found = {}
        for (c, key), collector in self.collectors.items():
            if c == cam:
                hits = [m for m in collector.messages if stamp_ns(m.header.stamp) == want]
                if hits:
                    found[key] = hits[-1]
        return found

    def messages(self, cam: str, key: str) -> list:
        return self.collectors[(cam, key)].messages

    def close(self, check: bool = True) -> int:
        code = self.node.stop(check=check)
        for collector in self.collectors.values():
            collector.destroy()
        for pub in list(self.image_pubs.values()) + list(self.info_pubs.values()):
            self.peer.node.destroy_publisher(pub)
        self.collectors = {}
        return code


@pytest.fixture
def camera_rig(start_node, ros_peer, depth_stats_type):
    """Factory: MultiCameraRig(start_node, ros_peer, cameras, **kwargs)."""
    def _make(cameras, **kwargs) -> MultiCameraRig:
        return MultiCameraRig(start_node, ros_peer, cameras, **kwargs)
    return _make
