"""Start-up validation (exit code 2, one line naming the parameter) and clean
shutdown of clip_depth_node on SIGINT and SIGTERM, idle and while streaming."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from conftest import TINY_CLIP_DIR, tiny_model_params
from ros_messages import make_camera_info, make_header, make_image, pattern_image


def _truncated_checkpoint(tmp_path):
    src = TINY_CLIP_DIR / 'checkpoint.pt'
    dst = tmp_path / 'half_checkpoint.pt'
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _missing_checkpoint(tmp_path):
    return tmp_path / 'no_such_checkpoint.pt'


STARTUP_ERRORS = {
    # name: (parameter overrides (callables get tmp_path), parameter the line must name)
    'missing_checkpoint_file': ({'checkpoint': _missing_checkpoint}, 'checkpoint'),
    'model_config_unset': ({'model_config': ''}, 'model_config'),
    'device_tpu': ({'device': 'tpu'}, 'device'),
    'cloud_decimation_0': ({'cloud_decimation': 0}, 'cloud_decimation'),
    'depth_encoding_8UC1': ({'depth_encoding': '8UC1'}, 'depth_encoding'),
    'truncated_checkpoint': ({'checkpoint': _truncated_checkpoint}, 'checkpoint'),
    # The tiny model's range is [0.001, 10] m.
    'min_range_beyond_the_model': ({'min_range': 12.0}, 'min_range'),
    'max_range_beyond_the_model': ({'max_range': 80.0}, 'max_range'),
    'min_range_above_max_range': ({'min_range': 5.0, 'max_range': 2.0}, 'max_range'),
    'negative_min_range': ({'min_range': -1.0}, 'min_range'),
    'min_range_above_the_model_max_even_when_allowed': (
        {'min_range': 12.0, 'allow_out_of_model_range': True}, 'min_range'),
}


@pytest.mark.parametrize('case', list(STARTUP_ERRORS))
def test_startup_error_exits_2_with_one_line(start_node, tmp_path, case):
    overrides, parameter = STARTUP_ERRORS[case]
    params = tiny_model_params()
    for name, value in overrides.items():
        params[name] = value(tmp_path) if callable(value) else value
    node = start_node(params=params)
    code = node.wait_exit(timeout=30)
    lines = [line for line in node.stderr().splitlines() if line.strip()]
    assert code == 2, f'exit code {code}:\n{node.output_tail()}'
    assert len(lines) == 1, f'expected one line on stderr, got {len(lines)}:\n' + '\n'.join(lines)
    line = lines[0]
    assert 'error' in line.lower()
    assert parameter in line, f'{line!r} does not name {parameter}'
    value = params[parameter]
    if not isinstance(value, (int, float)) and str(value):
        assert str(value) in line, f'{line!r} does not name the bad value {value}'


def _stream(rig, stop: threading.Event, rate_hz: float = 30.0, size=(320, 240)):
    """Publishes frames with camera_info at `rate_hz` until `stop` is set."""
    w, h = size
    image = make_image(pattern_image(w, h), encoding='rgb8')
    info = make_camera_info(w, h)
    period = 1.0 / rate_hz
    next_t = time.monotonic()
    while not stop.is_set():
        header = make_header()
        image.header = header
        info.header = header
        try:
            rig.publish(image, info)
        except Exception:   # publisher destroyed at teardown
            return
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))


@pytest.mark.parametrize('streaming', [False, True], ids=['idle', 'streaming'])
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_ends_the_node_with_0_within_1s(depth_rig, sig, streaming):
    rig = depth_rig(collect=('depth', 'stats'))
    stop = threading.Event()
    streamer = None
    if streaming:
        streamer = threading.Thread(target=_stream, args=(rig, stop), daemon=True)
        streamer.start()
        # Wait until the node is busy with streamed frames (not just warm-up).
        before = rig.latest_stats().frames_processed
        rig.collectors['stats'].wait_for(1, timeout=10,
                                         predicate=lambda m: m.frames_processed >= before + 2)
        time.sleep(0.15)   # land somewhere inside a frame
    try:
        code = rig.node.stop(timeout=1.0, check=False, sig=sig)
    finally:
        stop.set()
        if streamer is not None:
            streamer.join(timeout=2.0)
    assert rig.node.exit_duration is not None
    assert rig.node.exit_duration <= 1.0, f'took {rig.node.exit_duration:.2f} s to exit'
    assert code == 0, f'exit code {code}:\n{rig.node.output_tail()}'
    assert 'internal error' not in rig.node.stderr()
