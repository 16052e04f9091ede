"""`ros2 param set` (the SetParameters service, called here through rclpy's
parameter client) on clip_depth_node while it runs:

- start-up parameters (model, device, cameras, topics, QoS) are refused with
  a reason naming the parameter as read-only, and keep their value;
- live parameters (ranges, output size, cloud decimation, which outputs are
  published) take effect on the next frame;
- a bad live value is refused with a reason naming the parameter, and the
  old value stays (reported and used).

Expected depth after a range change is computed here from the depth the
node published for the same image before the change.
"""

from __future__ import annotations


import numpy as np
from rclpy.parameter import Parameter, parameter_value_to_python

from pathlib import Path

from conftest import format_param_value, parameter_client, tiny_model_params, wait_future

from ros_messages import image_to_array, make_camera_info, pattern_image


def _set(client, **values):
    changes = [Parameter(name, value=value) for name, value in values.items()]
    return wait_future(client.set_parameters(changes)).results


def _get(client, *names):
    return [parameter_value_to_python(v) for v in wait_future(client.get_parameters(list(names))).values]


def test_start_up_parameters_are_refused_as_read_only(depth_rig):
    rig = depth_rig(collect=('depth', 'stats'))
    client = parameter_client(rig.peer)
    for name, value in [('device', 'cuda:0'), ('model_config', '/nonexistent.yaml'),
                        ('image_transport', 'compressed'), ('cameras', '[a, b]'),
                        ('input_reliability', 'reliable')]:
        result = _set(client, **{name: value})[0]
        assert not result.successful, f'{name} was accepted'
        assert name in result.reason and 'read-only' in result.reason, result.reason
    assert _get(client, 'device', 'image_transport') == ['cpu', 'raw']
    rig.frame(width=64, height=48, expect=('depth', 'stats'))   # still working
    assert rig.close() == 0


def test_live_range_change_applies_to_the_next_frame(depth_rig):
    rig = depth_rig(collect=('depth', 'stats'))
    client = parameter_client(rig.peer)
    image = pattern_image(64, 48)
    before = image_to_array(rig.frame(image, expect=('depth',)).depth).astype(np.float64)
    finite = before[np.isfinite(before)]
    assert finite.size > 100 and np.ptp(finite) > 0, 'the tiny model gives a spread of depths'
    max_range = float(np.median(finite))
    min_range = float(np.quantile(finite, 0.1))
    results = _set(client, max_range=max_range, min_range=min_range)
    assert all(r.successful for r in results), [r.reason for r in results]
    assert _get(client, 'max_range', 'min_range') == [max_range, min_range]
    after = image_to_array(rig.frame(image, expect=('depth',)).depth).astype(np.float64)
    # REP 117 on the same model output: beyond max -> +Inf, nearer than min -> -Inf.
    want = before.copy()
    want[before > max_range] = np.inf
    want[before < min_range] = -np.inf
    assert np.isposinf(after).sum() > 0 and np.isneginf(after).sum() > 0
    np.testing.assert_array_equal(np.isposinf(after), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(after), np.isneginf(want))
    keep = np.isfinite(want)
    np.testing.assert_allclose(after[keep], want[keep], rtol=0, atol=1e-6)
    assert rig.close() == 0


def test_live_output_size_decimation_and_outputs(depth_rig):
    rig = depth_rig(collect=('depth', 'info', 'points', 'stats', 'colormap'),
                    params={'cloud_decimation': 2})
    client = parameter_client(rig.peer)
    out = rig.frame(width=64, height=48, expect=('depth', 'points'))
    assert (out.points.width, out.points.height) == (32, 24)
    assert all(r.successful for r in _set(client, cloud_decimation=4, output_width=32, publish_colormap=True))
    out = rig.frame(width=64, height=48, expect=('depth', 'info', 'points', 'colormap'))
    assert (out.depth.width, out.depth.height) == (32, 24), 'height follows the camera aspect'
    assert (out.info.width, out.info.height) == (32, 24)
    assert (out.points.width, out.points.height) == (8, 6)
    assert all(r.successful for r in _set(client, publish_cloud=False, publish_colormap=False))
    out = rig.frame(width=64, height=48, expect=('depth', 'info', 'stats'))
    rig.assert_nothing(out.header, ('points', 'colormap'))
    assert rig.close() == 0


def test_bad_live_values_are_refused_and_the_old_value_kept(depth_rig):
    rig = depth_rig(collect=('depth', 'points', 'stats'), params={'cloud_decimation': 2, 'max_range': 8.0})
    client = parameter_client(rig.peer)
    for name, value in [('cloud_decimation', 0), ('cloud_decimation', -3), ('max_range', -1.0),
                        ('min_range', 9.0),            # above max_range
                        ('max_range', 500.0),          # beyond the model's range
                        ('output_width', -5), ('batch_window_ms', -1.0),
                        ('max_range', 'far'), ('publish_cloud', 3)]:
        result = _set(client, **{name: value})[0]
        assert not result.successful, f'{name}={value!r} was accepted'
        assert name in result.reason, result.reason
    assert _get(client, 'cloud_decimation', 'max_range', 'publish_cloud') == [2, 8.0, True]
    out = rig.frame(width=64, height=48, expect=('depth', 'points', 'stats'))
    assert (out.points.width, out.points.height) == (32, 24), 'still decimation 2'
    depth = image_to_array(out.depth)
    assert not (depth[np.isfinite(depth)] > 8.0).any(), 'still max_range 8'
    assert rig.close() == 0


def test_an_integer_for_a_double_parameter_is_taken(depth_rig):
    """`ros2 param set /clip_depth max_range 5` sends an integer."""
    rig = depth_rig(collect=('depth', 'stats'))
    client = parameter_client(rig.peer)
    result = _set(client, max_range=5)[0]
    assert result.successful, result.reason
    assert _get(client, 'max_range') == [5.0]
    info = make_camera_info(64, 48)
    depth = image_to_array(rig.frame(width=64, height=48, info=info, expect=('depth',)).depth)
    assert not (depth[np.isfinite(depth)] > 5.0).any()
    assert rig.close() == 0


def test_command_line_values_win_over_the_shipped_params_file_whatever_their_type(start_node, ros_peer, node_binary):
    """`--params-file config/clip_depth.yaml` then `-p` values of another type
    than the file's: a ROS array for the file's string (`cameras`), an
    integer for a double (`min_range`), a double for an integer
    (`output_width`). rcl keeps both values and client libraries read the
    older one first; the node must take the command line's."""
    params_file = Path(__file__).resolve().parents[2] / 'config' / 'clip_depth.yaml'
    model = tiny_model_params()
    node = start_node(
        params_file=params_file, params=model,
        extra_args=['-p', 'cameras:=[front, left, rear]', '-p', 'min_range:=1', '-p', 'output_width:=32.0',
                    '-p', 'rear.max_range:=5'])
    for camera in ('front', 'left', 'rear'):
        node.wait_for_output(rf'camera {camera}: listening on /?{camera}/image', timeout=60)
    client = parameter_client(ros_peer)
    assert _get(client, 'min_range', 'output_width', 'rear.max_range') == [1.0, 32, 5.0]
    assert node.stop() == 0
    # The quoted string form names the same cameras.
    node = start_node(params_file=params_file, params=model, extra_args=['-p', "cameras:='[front, rear]'"])
    node.wait_for_output(r'camera rear: listening on /?rear/image', timeout=60)
    parameter_client(ros_peer)  # serving: its signal handlers are in place
    assert node.stop() == 0
    # A file after the command line wins in turn: one unnamed camera.
    model_args = [a for key, value in model.items() for a in ('-p', f'{key}:={format_param_value(value)}')]
    node = start_node(extra_args=['-p', 'cameras:=[front]', '--params-file', str(params_file), *model_args])
    node.wait_for_output(r'listening on /?image \+', timeout=60)
    assert 'camera front' not in node.stdout() + node.stderr()
    parameter_client(ros_peer)
    assert node.stop() == 0
