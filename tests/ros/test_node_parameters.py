"""Parameters are read once at start, so clip_depth_node refuses to change
them at run time: `ros2 param set` (the SetParameters service, called here
through rclpy's parameter client) fails with a reason, and the value the
node reports stays the one it runs with."""

from __future__ import annotations

import time

from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient


def _wait(future, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, 'no answer from the parameter service'
        time.sleep(0.02)
    return future.result()


def test_setting_a_parameter_at_run_time_is_refused_with_the_reason(depth_rig):
    rig = depth_rig(collect=('depth', 'stats'), params={'cloud_decimation': 2})
    client = AsyncParameterClient(rig.peer.node, '/clip_depth')
    assert client.wait_for_services(timeout_sec=10.0)
    changes = [Parameter('device', value='cuda:0'), Parameter('cloud_decimation', value=4),
               Parameter('max_range', value=5.0)]
    results = _wait(client.set_parameters(changes)).results
    assert len(results) == len(changes)
    for change, result in zip(changes, results):
        assert not result.successful, f'{change.name} was accepted'
        assert change.name in result.reason and 'read-only' in result.reason, result.reason
    values = _wait(client.get_parameters(['device', 'cloud_decimation'])).values
    assert (values[0].string_value, values[1].integer_value) == ('cpu', 2)
    rig.frame(width=64, height=48, expect=('depth', 'stats'))   # still working
    assert rig.close() == 0
