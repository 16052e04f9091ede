"""QoS of clip_depth_node: by default best-effort input (SensorDataQoS) and
reliable output, which reaches best-effort and reliable subscribers alike;
input_reliability:=reliable makes the input reliable."""

from __future__ import annotations

import time

from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image

from conftest import CAM_IMAGE
from ros_messages import make_header, make_image, qos_best_effort, qos_reliable


def _endpoint_reliability(infos, node_name='clip_depth'):
    found = [i.qos_profile.reliability for i in infos if i.node_name == node_name]
    assert len(found) == 1, [(i.node_name, i.node_namespace) for i in infos]
    return found[0]


def test_default_qos_best_effort_in_reliable_out(depth_rig, ros_peer):
    """A best-effort camera is heard; best-effort AND reliable subscribers get
    every output."""
    rig = depth_rig(input_qos=qos_best_effort(5), output_qos=qos_best_effort(10))
    graph = ros_peer.node
    assert _endpoint_reliability(graph.get_subscriptions_info_by_topic(CAM_IMAGE)) == ReliabilityPolicy.BEST_EFFORT
    for key in ('depth', 'info', 'points', 'stats'):
        reliability = _endpoint_reliability(graph.get_publishers_info_by_topic(rig.topic(key)))
        assert reliability == ReliabilityPolicy.RELIABLE, key
    reliable_depth = ros_peer.collect(Image, rig.topic('depth'), qos_reliable(10))
    deadline = time.monotonic() + 10
    while reliable_depth.subscription.get_publisher_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)   # let the writer side match too
    out = rig.frame(expect=('depth', 'info', 'points', 'stats'))   # best-effort subscribers
    reliable_depth.wait_for(1, timeout=10, predicate=lambda m: m.header.stamp == out.header.stamp)
    assert rig.close() == 0


def test_reliable_input(depth_rig, ros_peer):
    """input_reliability:=reliable: the node's image subscription is reliable, a
    reliable camera is heard, a best-effort one cannot match."""
    rig = depth_rig(params={'input_reliability': 'reliable'}, input_qos=qos_reliable(5))
    graph = ros_peer.node
    assert _endpoint_reliability(graph.get_subscriptions_info_by_topic(CAM_IMAGE)) == ReliabilityPolicy.RELIABLE
    out = rig.frame(expect=('depth', 'info', 'points', 'stats'))
    assert (out.depth.width, out.depth.height) == (64, 48)

    best_effort_pub = ros_peer.publisher(Image, CAM_IMAGE, qos_best_effort(5))
    time.sleep(0.5)
    assert best_effort_pub.get_subscription_count() == 0, 'reliable reader matched a best-effort writer'
    header = make_header()
    best_effort_pub.publish(make_image(width=64, height=48, header=header))
    rig.assert_nothing(header, ('depth', 'stats'), wait=0.7)
    ros_peer.node.destroy_publisher(best_effort_pub)
    assert rig.close() == 0
