"""launch/clip_depth.launch.py with several cameras: `cameras` reaches the
node, `camera_namespaces` remaps each camera's relative topics onto its
driver's (NAME/image -> <ns>/image_raw, NAME/camera_info -> <ns>/camera_info),
and the node started with those remaps serves the driver's topics. The
launch file's own logic is tested with launch / launch_ros stood in for;
the node is the real one."""

from __future__ import annotations

import pytest

from conftest import tiny_model_params
from ros_messages import make_camera_info, make_header, make_image, qos_reliable, stamp_ns
from sensor_msgs.msg import CameraInfo, Image
from test_launch_depthclip import _defaults, _load


def test_cameras_and_their_driver_namespaces(monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    values = _defaults(tmp_path / 'none.yaml')
    values.update({'cameras': '[front, rear]',
                   'camera_namespaces': '{front: /front_camera/color/, rear: /rear_camera/color}'})
    node = _load(monkeypatch, values, tmp_path)
    assert node['parameters'][1]['cameras'] == '[front, rear]'
    remaps = node['remappings']
    for want in [('front/image', '/front_camera/color/image_raw'),
                 ('front/image/compressed', '/front_camera/color/image_raw/compressed'),
                 ('front/camera_info', '/front_camera/color/camera_info'),
                 ('rear/image', '/rear_camera/color/image_raw'),
                 ('rear/camera_info', '/rear_camera/color/camera_info')]:
        assert want in remaps, remaps


def test_bad_camera_namespaces_are_named(monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    values = _defaults(tmp_path / 'none.yaml')
    values.update({'camera_namespaces': '[front, rear]'})
    with pytest.raises(ValueError, match='camera_namespaces'):
        _load(monkeypatch, values, tmp_path)


def test_the_node_serves_remapped_camera_topics(start_node, ros_peer, depth_stats_type, monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    values = _defaults(tmp_path / 'none.yaml')
    values.update({'cameras': '[front]', 'camera_namespaces': '{front: /front_camera/color}'})
    launched = _load(monkeypatch, values, tmp_path)
    remaps = {src: dst for src, dst in launched['remappings'] if src.startswith('front/')}
    node = start_node(params={**tiny_model_params(), 'cameras': ['front']}, remaps=remaps)
    image_pub = ros_peer.publisher(Image, '/front_camera/color/image_raw', qos_reliable(5))
    info_pub = ros_peer.publisher(CameraInfo, '/front_camera/color/camera_info', qos_reliable(5))
    depth = ros_peer.collect(Image, '/front/depth/image', qos_reliable(10))
    ros_peer.wait_for_subscribers(image_pub, timeout=20.0)
    for _ in range(10):
        header = make_header(frame_id='front_optical_frame')
        info = make_camera_info(64, 48)
        info.header = make_header(header.stamp, header.frame_id)
        info_pub.publish(info)
        image_pub.publish(make_image(width=64, height=48, header=header))
        try:
            depth.wait_for(1, 1.5, lambda m, s=stamp_ns(header.stamp): stamp_ns(m.header.stamp) == s)
            break
        except AssertionError:
            node.assert_running()
    else:
        raise AssertionError(f'nothing on /front/depth/image:\n{node.output_tail()}')
    assert node.stop() == 0
