"""Bad input never kills clip_depth_node: each bad frame is skipped with a
warning naming the reason (counted in frames_skipped_invalid) and the next
good frame is processed. Also: camera_info pairing and its absence.

The node throttles each kind of warning to one per 5 s, so every bad case gets
its own node (about a second each) to see its own warning.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ros_messages import (make_camera_info, make_compressed_image, make_header, make_image,
                          make_stamp, stamp_ns, stamp_plus)


def _zero_size(header):
    msg = make_image(width=64, height=48, header=header)
    msg.width = msg.height = 0
    msg.step = 0
    msg.data = b''
    return msg, make_camera_info(64, 48)


def _short_data(header):
    msg = make_image(width=64, height=48, header=header)
    msg.data = bytes(msg.data)[: msg.step * msg.height - 7]
    return msg, make_camera_info(64, 48)


def _unknown_encoding(header):
    msg = make_image(width=64, height=48, header=header)
    msg.encoding = 'yuv422_weird'
    return msg, make_camera_info(64, 48)


def _big_endian_mono16(header):
    grey = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20
    msg = make_image(grey.astype('>u2').view(np.uint16), encoding='mono16', header=header)
    msg.is_bigendian = 1
    return msg, make_camera_info(64, 48)


def _corrupt_jpeg(header):
    good = make_compressed_image(width=64, height=48, fmt='jpeg', header=header)
    data = bytes(good.data)
    garbage = np.random.default_rng(5).integers(0, 256, size=len(data) // 2, dtype=np.uint8)
    good.data = data[:20] + garbage.tobytes()   # a JPEG's SOI + JFIF header, then garbage
    return good, make_camera_info(64, 48)


def _nan_focal(header):
    info = make_camera_info(64, 48)
    k, p = list(info.k), list(info.p)
    k[0] = p[0] = math.nan
    info.k, info.p = k, p
    return make_image(width=64, height=48, header=header), info


def _zero_focal(header):
    info = make_camera_info(64, 48)
    k, p = list(info.k), list(info.p)
    k[0] = k[4] = p[0] = p[5] = 0.0
    info.k, info.p = k, p
    return make_image(width=64, height=48, header=header), info


def _other_size_info(header):
    return make_image(width=64, height=48, header=header), make_camera_info(80, 60)


BAD_INPUTS = {
    # name: (builder, compressed node, regex the warning must match)
    'zero_size_image': (_zero_size, False, r'zero size'),
    'data_shorter_than_height_x_step': (_short_data, False, r'data has \d+ bytes.*needs'),
    'unknown_encoding': (_unknown_encoding, False, r'unsupported encoding "yuv422_weird"'),
    'big_endian_mono16': (_big_endian_mono16, False, r'big-endian mono16'),
    'corrupt_jpeg': (_corrupt_jpeg, True, r'cannot decode .*jpeg'),
    'camera_info_nan_focal': (_nan_focal, False, r'focal length fx .* not finite'),
    'camera_info_zero_focal': (_zero_focal, False, r'focal length fx .* must be positive'),
    'camera_info_of_another_size': (_other_size_info, False, r'camera_info describes a 80x60 image.*64x48'),
}


@pytest.mark.parametrize('case', list(BAD_INPUTS))
def test_bad_input_is_skipped_and_the_next_frame_processed(depth_rig, case):
    build, compressed, reason = BAD_INPUTS[case]
    params = {'image_transport': 'compressed'} if compressed else {}
    rig = depth_rig(params=params)
    before = rig.latest_stats()

    header = make_header()
    bad, info = build(header)
    info.header = make_header(header.stamp, header.frame_id)
    rig.publish(bad, info)
    # The warning says why, at WARN level on stderr.
    line = rig.wait_for_log(r'frame skipped: .*' + reason, timeout=10).string
    assert 'WARN' in line, line
    rig.node.assert_running()

    good = rig.warm_up(with_info=True)   # a good frame (with camera_info): processed
    after = good.stats
    assert after.frames_processed == before.frames_processed + 1
    assert after.frames_skipped_invalid == before.frames_skipped_invalid + 1
    assert after.frames_received == before.frames_received + 2
    assert after.frames_dropped_stale == before.frames_dropped_stale
    assert good.points is not None and good.info is not None
    rig.assert_nothing(header, ('depth', 'info', 'points', 'stats'), wait=0.0)
    assert rig.close() == 0


def test_no_camera_info_then_pairing_with_the_latest(depth_rig):
    """Without any camera_info: depth and stats, no depth/camera_info, no points
    (with a warning). A camera_info whose stamp differs slightly from the
    image's: after the sync window the newest one is used (cloud published)
    with a warning naming use_latest_camera_info; outputs keep the image's header."""
    rig = depth_rig(warm_up='no_info')
    out = rig.frame(info=None, expect=('depth', 'stats'))
    assert (out.depth.width, out.depth.height) == (64, 48)
    rig.assert_nothing(out.header, ('info', 'points'), wait=0.5)
    rig.wait_for_log(r'WARN.*no camera_info received yet')
    assert out.stats.frames_skipped_invalid == 0

    header = make_header()
    near = make_stamp((stamp_ns(header.stamp) + 1_000_000) / 1e9)   # 1 ms later
    info = make_camera_info(64, 48, header=make_header(near, header.frame_id))
    rig.publish(make_image(width=64, height=48, header=header), info)
    out = rig.outputs(header, expect=('depth', 'info', 'points', 'stats'))
    for key in ('depth', 'info', 'points', 'stats'):
        msg = getattr(out, key)
        assert (stamp_ns(msg.header.stamp), msg.header.frame_id) == (stamp_ns(header.stamp), header.frame_id)
    assert (out.points.width, out.points.height) == (64, 48)
    rig.wait_for_log(r'WARN.*use_latest_camera_info')
    assert rig.close() == 0


def test_without_use_latest_camera_info_an_unpaired_frame_has_no_cloud(depth_rig):
    """use_latest_camera_info:=false: exact stamps still pair; a camera_info
    with another stamp does not: depth and stats only."""
    rig = depth_rig(params={'use_latest_camera_info': False})   # warm-up pairs exactly
    header = make_header()
    near = make_stamp((stamp_ns(header.stamp) + 1_000_000) / 1e9)
    rig.publish(make_image(width=64, height=48, header=header),
                make_camera_info(64, 48, header=make_header(near, header.frame_id)))
    out = rig.outputs(header, expect=('depth', 'stats'))
    rig.assert_nothing(header, ('info', 'points'), wait=0.5)
    assert out.stats.frames_skipped_invalid == 0
    out = rig.frame(expect=('depth', 'info', 'points', 'stats'))   # exact pairing still works
    assert rig.close() == 0


def test_never_matching_stamps_stop_the_wait(depth_rig):
    """camera_info stamped apart from its image (1 ms later, as a driver that
    stamps them separately does): the first frames wait camera_info_sync_window
    for an exact match; after 5 frames without one the node pairs with the
    newest camera_info at once, so the window leaves the latency. A camera_info
    that then arrives with an earlier image's exact stamp makes it wait again."""
    window_ms = 600.0
    rig = depth_rig(params={'camera_info_sync_window': window_ms / 1e3})   # warm-up pairs exactly

    def offset_frame(header=None):
        header = header or make_header()
        info = make_camera_info(64, 48, header=make_header(stamp_plus(header.stamp, 1_000_000), header.frame_id))
        rig.publish(make_image(width=64, height=48, header=header), info)
        out = rig.outputs(header, expect=('depth', 'info', 'points', 'stats'))
        return out.stats.total_ms

    waited = [offset_frame() for _ in range(5)]
    assert min(waited) >= 0.9 * window_ms, waited
    rig.wait_for_log(r'WARN.*matched no image for 5 frames in a row: no longer waiting')
    prompt = [offset_frame() for _ in range(3)]
    assert max(prompt) < 0.5 * window_ms, prompt

    # Image S pairs with the newest at once; its own camera_info comes late.
    late = make_header()
    rig.publish(make_image(width=64, height=48, header=late))
    rig.outputs(late, expect=('depth', 'info', 'stats'))
    rig.info_pub.publish(make_camera_info(64, 48, header=late))
    time.sleep(0.2)
    assert offset_frame() >= 0.9 * window_ms, 'a late exact camera_info should bring the wait back'
    rig.wait_for_log(r'INFO.*waiting up to camera_info_sync_window again')
    assert rig.close() == 0
