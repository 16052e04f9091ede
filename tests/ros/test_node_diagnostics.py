"""/diagnostics (diagnostic_msgs/DiagnosticArray): one status per camera
named `clip_depth: camera NAME` (hardware_id = the camera's frame_id) and one
for the forward passes; levels move OK -> WARN -> ERROR as a camera falls
silent, and back to OK when it resumes, while the other camera stays OK;
skipped frames make a camera WARN for a while; the thresholds are live.
"""

from __future__ import annotations

import contextlib
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter

from conftest import parameter_client, wait_future
from ros_messages import make_image, qos_reliable

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR'}


class Streamer:
    """Publishes a camera's frames (with camera_info) at `hz` in a thread while `on`."""

    def __init__(self, rig, cam, hz=10.0):
        self.rig, self.cam, self.hz = rig, cam, hz
        self.on = threading.Event()
        self.on.set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            if self.on.is_set():
                self.rig.publish(self.cam, width=64, height=48)
            time.sleep(1.0 / self.hz)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2.0)


@contextlib.contextmanager
def _streaming(rig):
    """Both cameras streaming at 10 Hz and /diagnostics recorded as
    (arrival time, array); yields the record and the rear camera's streamer."""
    received = []
    sub = rig.peer.node.create_subscription(
        DiagnosticArray, '/diagnostics', lambda m: received.append((time.monotonic(), m)), qos_reliable(50))
    front, rear = Streamer(rig, 'front'), Streamer(rig, 'rear')
    try:
        yield received, rear
    finally:
        front.close()
        rear.close()
        rig.peer.node.destroy_subscription(sub)


def _latest(collector, after):
    """The newest DiagnosticArray received after monotonic time `after`, as
    {status name: status}."""
    msgs = [m for t, m in collector if t > after]
    return {s.name: s for s in msgs[-1].status} if msgs else None


def _until(collector, name, level, timeout, other=None):
    """Waits for `name` to reach `level` (and `other`, if given, to be OK in
    the same array); returns the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        statuses = _latest(collector, t0)
        if statuses and name in statuses:
            last = statuses[name]
            if last.level == level and (other is None or statuses[other].level == OK):
                return time.monotonic() - t0, statuses
        time.sleep(0.05)
    raise AssertionError(f'{name} did not reach {NAMES[level]} within {timeout} s; last: '
                         f'{last and (NAMES.get(last.level), last.message)}')


def test_levels_follow_a_camera_that_stops_and_resumes(camera_rig):
    rig = camera_rig(['front', 'rear'], collect=('depth',),
                     params={'diagnostics_warn_after': 1.0, 'diagnostics_error_after': 2.5,
                             'diagnostics_period': 0.2, 'publish_cloud': False})
    with _streaming(rig) as (received, rear):
        _until(received, 'clip_depth: camera rear', OK, 5.0, other='clip_depth: camera front')
        time.sleep(2.5)   # 2.5 s of 10 Hz in the 5 s rate window
        statuses = _latest(received, time.monotonic() - 0.5)
        rear_ok = statuses['clip_depth: camera rear']
        assert rear_ok.level == OK, rear_ok.message
        assert rear_ok.hardware_id == rig.frame_id('rear')
        values = {kv.key: kv.value for kv in rear_ok.values}
        for key in ('input rate [Hz]', 'processed rate [Hz]', 'frames dropped (stale)', 'frames skipped',
                    'latency median [ms]', 'latency p95 [ms]', 'last camera_info age [s]'):
            assert key in values, f'{key} missing from {sorted(values)}'
        assert float(values['input rate [Hz]']) > 4.0, values
        inference = statuses['clip_depth: inference']
        assert inference.level == OK and int({kv.key: kv.value for kv in inference.values}['forward passes']) > 0

        rear.on.clear()   # the rear camera falls silent
        took, _ = _until(received, 'clip_depth: camera rear', WARN, 3.0, other='clip_depth: camera front')
        print(f'rear WARN after {took:.2f} s of silence')
        took2, statuses = _until(received, 'clip_depth: camera rear', ERROR, 4.0, other='clip_depth: camera front')
        print(f'rear ERROR after {took + took2:.2f} s; message: {statuses["clip_depth: camera rear"].message}')
        assert 'no image' in statuses['clip_depth: camera rear'].message

        rear.on.set()     # and resumes
        took, _ = _until(received, 'clip_depth: camera rear', OK, 3.0, other='clip_depth: camera front')
        print(f'rear OK again {took:.2f} s after resuming')

        # Thresholds are live: a longer WARN threshold than the silence.
        # In order: each change is checked against the others' current values.
        results = wait_future(parameter_client(rig.peer).set_parameters(
            [Parameter('diagnostics_error_after', value=8.0), Parameter('diagnostics_warn_after', value=5.0)])).results
        assert all(r.successful for r in results), [r.reason for r in results]
        rear.on.clear()
        time.sleep(2.0)
        statuses = _latest(received, time.monotonic() - 0.5)
        assert statuses['clip_depth: camera rear'].level == OK, statuses['clip_depth: camera rear'].message
    assert rig.close() == 0


def test_skipped_frames_warn_on_their_camera_only(camera_rig):
    rig = camera_rig(['front', 'rear'], collect=('depth',),
                     params={'diagnostics_period': 0.2, 'publish_cloud': False})
    with _streaming(rig) as (received, rear):
        _until(received, 'clip_depth: camera rear', OK, 5.0, other='clip_depth: camera front')
        bad = make_image(width=64, height=48)
        bad.encoding = 'yuv9000'
        rear.on.clear()   # alone in its slot, so that it is not replaced before it is read
        time.sleep(0.3)
        rig.publish('rear', image=bad)
        time.sleep(0.3)
        rear.on.set()
        _, statuses = _until(received, 'clip_depth: camera rear', WARN, 3.0, other='clip_depth: camera front')
        rear_status = statuses['clip_depth: camera rear']
        assert 'skipped' in rear_status.message, rear_status.message
        values = {kv.key: kv.value for kv in rear_status.values}
        assert values['frames skipped'] == '1'
        assert values.get('frames skipped: decode') == '1', values
    assert rig.close() == 0


def test_a_hanging_forward_pass_goes_warn_then_error_and_recovers(camera_rig):
    """A forward pass that does not return (here: the test hook holds it for
    4 s) while the other camera's frames wait: the inference status goes
    WARN after inference_warn_after, ERROR after inference_error_after
    (logged once, saying what the node does), and OK again when the pass
    returns."""
    rig = camera_rig(['front', 'rear'], params={'inference_warn_after': 1.0, 'inference_error_after': 2.0,
                                                'diagnostics_warn_after': 30.0, 'diagnostics_error_after': 60.0})
    name = 'clip_depth: inference'
    received = []
    sub = rig.peer.node.create_subscription(
        DiagnosticArray, '/diagnostics', lambda m: received.append((time.monotonic(), m)), qos_reliable(50))
    rear = Streamer(rig, 'rear')
    try:
        _until(received, name, OK, timeout=10)
        rig.publish('front', width=64, height=48, frame_id='clip_depth_test_hang:inference:4')
        _, statuses = _until(received, name, WARN, timeout=5)
        assert 'no forward pass has finished' in statuses[name].message, statuses[name].message
        values = {kv.key: kv.value for kv in statuses[name].values}
        assert values['forward pass running'] == 'true' and int(values['frames waiting']) >= 1, values
        _until(received, name, ERROR, timeout=5)
        _until(received, name, OK, timeout=10)
    finally:
        rear.close()
        rig.peer.node.destroy_subscription(sub)
    rig.node.wait_for_output(r'ERROR.*the inference is stalled.*cannot be interrupted', timeout=5)
    assert rig.close() == 0
