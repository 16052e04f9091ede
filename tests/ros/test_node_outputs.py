"""What clip_depth_node publishes for a good frame: headers, the depth image,
its camera_info (scaled, ROI/binning baked in), the point cloud (layout,
back-projection, decimation, colour), ranges (REP 117), 16UC1 and stats.

Every expectation is computed here with numpy from what was published to the
node and what it sent back; nothing is taken from the node's own code.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_MODEL_NAME, assert_same_header, load_fixture_image
from ros_messages import (backproject, camera_intrinsics, cloud_bytes, cloud_to_array,
                          depth_to_metres, image_to_array, make_camera_info, make_header,
                          make_image, make_stamp, stamp_ns)

XYZ_ATOL = 1e-5
FLOAT32 = 7


def _info(width, height, *, fx, fy, cx, cy, tx=0.0):
    """A rectified CameraInfo whose K and P differ only in P's Tx (p[3])."""
    info = make_camera_info(width, height, fx=fx, fy=fy, cx=cx, cy=cy)
    p = list(info.p)
    p[3] = tx
    info.p = p
    return info


def _resized_info(info, image_w, image_h, new_w, new_h):
    """image_proc/resize applied to a camera_info without ROI/binning."""
    sx, sy = new_w / image_w, new_h / image_h
    k = np.array(info.k, dtype=np.float64)
    p = np.array(info.p, dtype=np.float64)
    k[[0, 2]] *= sx
    k[[4, 5]] *= sy
    p[[0, 2, 3]] *= sx
    p[[5, 6]] *= sy
    return k, p


def _baked_info(info):
    """K, P and image size of a camera_info with ROI/binning folded in (image_geometry)."""
    bx, by = max(info.binning_x, 1), max(info.binning_y, 1)
    xo, yo = info.roi.x_offset, info.roi.y_offset
    k = np.array(info.k, dtype=np.float64)
    p = np.array(info.p, dtype=np.float64)
    if not p.any():
        p = np.hstack([k.reshape(3, 3), np.zeros((3, 1))]).ravel()
    k[2] -= xo
    k[5] -= yo
    p[2] -= xo
    p[6] -= yo
    k[[0, 2]] /= bx
    k[[4, 5]] /= by
    p[[0, 2, 3]] /= bx
    p[[5, 6, 7]] /= by
    roi_w = info.roi.width or info.width
    roi_h = info.roi.height or info.height
    return k, p, roi_w // bx, roi_h // by


def _check_depth_image(depth_msg, width, height, encoding='32FC1'):
    assert depth_msg.encoding == encoding
    assert (depth_msg.width, depth_msg.height) == (width, height)
    bpp = 4 if encoding == '32FC1' else 2
    assert depth_msg.is_bigendian == 0
    assert depth_msg.step == width * bpp
    assert len(depth_msg.data) == height * width * bpp


def _check_cloud_layout(cloud, width, height, rgb=False):
    fields = [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    want = [('x', 0, FLOAT32, 1), ('y', 4, FLOAT32, 1), ('z', 8, FLOAT32, 1)]
    if rgb:
        want.append(('rgb', 16, FLOAT32, 1))
    assert fields == want
    assert cloud.point_step == (32 if rgb else 16)
    assert (cloud.height, cloud.width) == (height, width), 'cloud must be organised like the depth'
    assert cloud.row_step == width * cloud.point_step
    assert not cloud.is_bigendian
    assert cloud.is_dense is False


def _check_cloud_is_backprojection(cloud, depth_msg, info_msg, decimation=1):
    """The cloud equals the back-projection of the published depth image with
    the published depth/camera_info (P), NaN exactly where the depth is invalid."""
    depth = depth_to_metres(depth_msg)
    x, y, z = backproject(depth, info_msg, decimation)
    pts = cloud_to_array(cloud)
    assert pts.shape == z.shape
    invalid = ~np.isfinite(depth[::decimation, ::decimation])
    for name in ('x', 'y', 'z'):
        np.testing.assert_array_equal(np.isnan(pts[name]), invalid,
                                      err_msg=f'NaN pattern of {name} differs from the invalid depth pixels')
    np.testing.assert_allclose(pts['x'][~invalid], x[~invalid], rtol=0, atol=XYZ_ATOL)
    np.testing.assert_allclose(pts['y'][~invalid], y[~invalid], rtol=0, atol=XYZ_ATOL)
    np.testing.assert_allclose(pts['z'][~invalid], z[~invalid], rtol=0, atol=XYZ_ATOL)
    # Spot checks of the formula itself at a few pixels (row, col of the cloud).
    fx, fy, cx, cy = info_msg.p[0], info_msg.p[5], info_msg.p[2], info_msg.p[6]
    h, w = pts.shape
    for r, c in [(0, 0), (0, w - 1), (h // 2, w // 3), (h - 1, 0), (h - 1, w - 1)]:
        zz = depth[r * decimation, c * decimation]
        if not np.isfinite(zz):
            continue
        u, v = c * decimation, r * decimation
        assert abs(pts['x'][r, c] - (u - cx) * zz / fx) < XYZ_ATOL
        assert abs(pts['y'][r, c] - (v - cy) * zz / fy) < XYZ_ATOL
        assert abs(pts['z'][r, c] - zz) < XYZ_ATOL


def _check_stats_match_depth(stats, depth_msg):
    finite = depth_to_metres(depth_msg)
    finite = np.sort(finite[np.isfinite(finite)]).astype(np.float32)
    assert finite.size > 0
    assert stats.depth_min == pytest.approx(finite[0], abs=1e-6)
    assert stats.depth_max == pytest.approx(finite[-1], abs=1e-6)
    n = finite.size
    lo, hi = finite[(n - 1) // 2], finite[n // 2]
    assert lo - 1e-6 <= stats.depth_median <= hi + 1e-6, (stats.depth_median, lo, hi)


def test_every_output_carries_the_input_header(depth_rig):
    """stamp AND frame_id of depth/image, depth/camera_info, points and ~/stats
    equal the input image's, also in a namespace (~/stats = /robot/clip_depth/stats)."""
    keys = ('depth', 'info', 'points', 'stats', 'colormap')
    rig = depth_rig(namespace='robot', params={'publish_colormap': True}, collect=keys)
    assert rig.topic('stats') == '/robot/clip_depth/stats'
    assert rig.topic('depth') == '/robot/depth/image'
    # An odd stamp far from now and a non-default frame: nothing may be re-stamped.
    for stamp, frame_id in [(make_stamp(1_700_000_000.123456789), 'robot/front_camera_optical_frame'),
                            (make_stamp(), 'other_optical_frame')]:
        header = make_header(stamp, frame_id)
        rig.publish(make_image(width=64, height=48, header=header), make_camera_info(64, 48, header=header))
        rig.outputs(header, expect=keys)
        for key in keys:
            msgs = rig.collectors[key].wait_for(1, timeout=5, predicate=lambda m: (
                stamp_ns(m.header.stamp) == stamp_ns(stamp)))
            assert_same_header(msgs[-1], header, rig.topic(key))
        colormap = rig.collectors['colormap'].messages[-1]
        assert (colormap.encoding, colormap.width, colormap.height) == ('bgr8', 64, 48)
    assert rig.close() == 0


def test_depth_image_camera_info_cloud_and_stats(depth_rig):
    """Camera-sized 32FC1 depth (little-endian, packed rows), a depth/camera_info
    equal to the input's, a cloud that is the back-projection of the published
    depth, and stats that describe this frame."""
    rig = depth_rig()
    rgb = load_fixture_image('scene_224.png')[:150, :200]   # 200x150, not the model's 224
    info = _info(200, 150, fx=180.0, fy=175.0, cx=97.25, cy=80.5, tx=-10.8)
    out = rig.frame(rgb, info=info, expect=('depth', 'info', 'points', 'stats'))

    _check_depth_image(out.depth, 200, 150)
    depth = image_to_array(out.depth)
    raw = np.frombuffer(bytes(out.depth.data), dtype='<f4').reshape(150, 200)
    np.testing.assert_array_equal(raw, depth)
    # Default range = the model's [min_depth, max_depth] of the tiny config:
    # readings inside it, +-Inf for what the model puts outside (REP 117).
    finite = depth[np.isfinite(depth)]
    assert not np.isnan(depth).any()
    assert finite.size > depth.size // 2
    assert finite.min() >= 0.001 and finite.max() <= 10.0
    assert finite.std() > 0, 'a constant depth image would hide back-projection errors'

    # Same size: the published camera_info describes the depth with the input's numbers.
    di = out.info
    assert (di.width, di.height) == (200, 150)
    np.testing.assert_allclose(di.k, info.k, rtol=1e-12)
    np.testing.assert_allclose(di.p, info.p, rtol=1e-12)
    assert list(di.d) == list(info.d) and list(di.r) == list(info.r)
    assert di.distortion_model == info.distortion_model

    _check_cloud_layout(out.points, 200, 150)
    _check_cloud_is_backprojection(out.points, out.depth, di)

    s = out.stats
    assert s.model_name == TINY_MODEL_NAME
    assert s.device.split()[0] == 'cpu'
    for name in ('decode_ms', 'preprocess_ms', 'encoder_ms', 'decoder_ms', 'postprocess_ms',
                 'cloud_ms', 'total_ms', 'latency_ms'):
        value = getattr(s, name)
        assert np.isfinite(value) and value > 0, f'{name} = {value}'
    assert s.total_ms >= s.encoder_ms + s.decoder_ms
    # The stamp was taken just before publishing: the latency includes the processing.
    assert s.total_ms * 0.99 <= s.latency_ms < 30_000
    assert s.frames_received >= s.frames_processed >= 2   # warm-up frame + this one
    assert s.frames_skipped_invalid == 0
    _check_stats_match_depth(s, out.depth)

    # Stats follow the frame: another image, other numbers and counters.
    out2 = rig.frame(255 - rgb, info=info, expect=('depth', 'stats'))
    assert out2.stats.frames_processed == s.frames_processed + 1
    assert out2.stats.frames_received == s.frames_received + 1
    _check_stats_match_depth(out2.stats, out2.depth)
    assert not np.array_equal(image_to_array(out2.depth), depth)
    assert rig.close() == 0


def test_output_size_scales_camera_info_and_decimates_cloud(depth_rig):
    """output_width/height: depth of that size, camera_info scaled like
    image_proc/resize (also with ROI/binning baked in first); cloud_decimation
    4: ceil(h/4) x ceil(w/4) points, point (r, c) from depth pixel (4r, 4c)."""
    ow, oh = 83, 61   # not multiples of 4, not the camera's aspect ratio
    rig = depth_rig(params={'output_width': ow, 'output_height': oh, 'cloud_decimation': 4})
    cam_w, cam_h = 64, 48
    info = _info(cam_w, cam_h, fx=70.0, fy=66.0, cx=30.25, cy=25.75, tx=-4.2)
    out = rig.frame(width=cam_w, height=cam_h, info=info, expect=('depth', 'info', 'points', 'stats'))
    _check_depth_image(out.depth, ow, oh)
    di = out.info
    assert (di.width, di.height) == (ow, oh)
    k, p = _resized_info(info, cam_w, cam_h, ow, oh)
    np.testing.assert_allclose(di.k, k, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(di.p, p, rtol=1e-12, atol=1e-12)
    assert np.allclose(camera_intrinsics(di), (70.0 * ow / cam_w, 66.0 * oh / cam_h,
                                               30.25 * ow / cam_w, 25.75 * oh / cam_h))
    _check_cloud_layout(out.points, -(-ow // 4), -(-oh // 4))
    assert (out.points.height, out.points.width) == (16, 21)
    _check_cloud_is_backprojection(out.points, out.depth, di, decimation=4)

    # The same camera seen through ROI + 2x2 binning: a 64x48 image of a 320x240 sensor.
    roi_info = _info(320, 240, fx=300.0, fy=290.0, cx=161.0, cy=118.0, tx=-18.0)
    roi_info.binning_x = roi_info.binning_y = 2
    roi_info.roi.x_offset, roi_info.roi.y_offset = 40, 30
    roi_info.roi.width, roi_info.roi.height = 128, 96
    out = rig.frame(width=cam_w, height=cam_h, info=roi_info, expect=('depth', 'info', 'points'))
    di = out.info
    bk, bp, bw, bh = _baked_info(roi_info)
    assert (bw, bh) == (cam_w, cam_h)
    sx, sy = ow / bw, oh / bh
    bk[[0, 2]] *= sx
    bk[[4, 5]] *= sy
    bp[[0, 2, 3]] *= sx
    bp[[5, 6]] *= sy
    assert (di.width, di.height) == (ow, oh)
    assert (di.binning_x, di.binning_y) == (0, 0)
    assert (di.roi.x_offset, di.roi.y_offset, di.roi.width, di.roi.height) == (0, 0, 0, 0)
    np.testing.assert_allclose(di.k, bk, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(di.p, bp, rtol=1e-12, atol=1e-12)
    _check_cloud_is_backprojection(out.points, out.depth, di, decimation=4)
    assert rig.close() == 0


def test_roi_and_binning_are_baked_into_depth_camera_info(depth_rig):
    """Published depth/camera_info has ROI/binning folded into K/P (and cleared),
    width/height = the depth's; the cloud is still the back-projection with it.
    A K-only camera_info (P all zero) gets P = [K | 0]."""
    rig = depth_rig()
    cases = []
    info = _info(640, 480, fx=520.0, fy=515.0, cx=322.5, cy=241.25, tx=-31.2)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 200, 120, 96, 72
    cases.append(('roi', info, 96, 72))
    info = _info(384, 288, fx=330.0, fy=331.0, cx=190.0, cy=145.0, tx=-20.0)
    info.binning_x, info.binning_y = 4, 3
    cases.append(('binning', info, 96, 96))
    info = make_camera_info(80, 60, fx=75.0, fy=74.0, cx=41.0, cy=28.5)
    info.p = [0.0] * 12
    cases.append(('k_only', info, 80, 60))
    for what, info, w, h in cases:
        out = rig.frame(width=w, height=h, info=info, expect=('depth', 'info', 'points'))
        _check_depth_image(out.depth, w, h)
        di = out.info
        k, p, bw, bh = _baked_info(info)
        assert (bw, bh) == (w, h), what
        assert (di.width, di.height) == (w, h), what
        assert (di.binning_x, di.binning_y) == (0, 0), what
        assert (di.roi.x_offset, di.roi.y_offset, di.roi.width, di.roi.height) == (0, 0, 0, 0), what
        np.testing.assert_allclose(di.k, k, rtol=1e-12, atol=1e-12, err_msg=what)
        np.testing.assert_allclose(di.p, p, rtol=1e-12, atol=1e-12, err_msg=what)
        # The published info alone and the input info (with its ROI/binning) agree.
        np.testing.assert_allclose(camera_intrinsics(di), camera_intrinsics(info), rtol=1e-12)
        _check_cloud_is_backprojection(out.points, out.depth, di)
    assert rig.close() == 0


def test_cloud_rgb_packs_the_input_pixel_colour(depth_rig):
    """cloud_rgb:=true: point_step 32, bytes b, g, r, 255 at +16..+19 from the
    input pixel; a bgr8 image of the same scene gives the same colours."""
    rig = depth_rig(params={'cloud_rgb': True})
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    out = rig.frame(rgb, encoding='rgb8', expect=('depth', 'info', 'points'))
    _check_cloud_layout(out.points, 56, 40, rgb=True)
    _check_cloud_is_backprojection(out.points, out.depth, out.info)
    rec = cloud_bytes(out.points)
    np.testing.assert_array_equal(rec[..., 16], rgb[..., 2], err_msg='b at +16')
    np.testing.assert_array_equal(rec[..., 17], rgb[..., 1], err_msg='g at +17')
    np.testing.assert_array_equal(rec[..., 18], rgb[..., 0], err_msg='r at +18')
    assert (rec[..., 19] == 255).all()
    out_bgr = rig.frame(np.ascontiguousarray(rgb[..., ::-1]), encoding='bgr8', expect=('points',))
    np.testing.assert_array_equal(cloud_bytes(out_bgr.points)[..., 16:20], rec[..., 16:20])
    assert rig.close() == 0


def _reference_depth(depth_rig, rgb, **params):
    """Depth (32FC1 message) of `rgb` from a node with `params`; the node is stopped after."""
    rig = depth_rig(params=params)
    out = rig.frame(rgb, expect=('depth', 'info', 'stats'))
    assert rig.close() == 0
    return out


def test_16uc1_is_millimetres_of_the_32fc1_depth(depth_rig):
    """depth_encoding:=16UC1 publishes round(metres * 1000) of the same frame's
    32FC1 depth (little-endian, step = 2 * width)."""
    rgb = load_fixture_image('scene_224.png')[:96, :128]
    ref = _reference_depth(depth_rig, rgb)
    metres = image_to_array(ref.depth).astype(np.float64)
    rig = depth_rig(params={'depth_encoding': '16UC1'})
    out = rig.frame(rgb, expect=('depth', 'info', 'points', 'stats'))
    _check_depth_image(out.depth, 128, 96, encoding='16UC1')
    mm = np.frombuffer(bytes(out.depth.data), dtype='<u2').reshape(96, 128)
    # 0 exactly where 32FC1 says no reading (NaN, -Inf or +Inf).
    reading = np.isfinite(metres)
    assert 0 < reading.sum() < reading.size, 'the scene should have readings and out-of-range pixels'
    np.testing.assert_array_equal(mm == 0, ~reading)
    want = np.round(metres[reading] * 1000.0)
    got = mm[reading].astype(np.float64)
    # Two processes run the same model: allow a last-bit difference only where
    # the value sits on a rounding boundary.
    clear = np.abs((metres[reading] * 1000.0) % 1.0 - 0.5) > 0.01
    np.testing.assert_array_equal(got[clear], want[clear])
    assert np.abs(got - want).max() <= 1
    assert (out.info.width, out.info.height) == (128, 96)
    # The cloud stays in metres, NaN where there is no reading.
    z = cloud_to_array(out.points)['z']
    np.testing.assert_array_equal(np.isnan(z), ~reading)
    np.testing.assert_allclose(z[reading], mm[reading] * 1e-3, atol=5e-4 + 1e-6)
    assert rig.close() == 0


def test_min_max_range_give_inf_in_depth_and_nan_in_cloud(depth_rig):
    """min_range/max_range inside the depth's spread: nearer pixels -Inf and
    farther +Inf in 32FC1 (REP 117), NaN in the cloud; stats describe the valid
    (finite) depth that was published."""
    rgb = load_fixture_image('scene_224.png')[:96, :128]
    ref = _reference_depth(depth_rig, rgb)
    metres = image_to_array(ref.depth)
    values = np.unique(metres[np.isfinite(metres)])

    def boundary(q):
        """A range limit between two neighbouring depth values near quantile q,
        away from both (so the last bits of a second run cannot cross it)."""
        gaps = np.diff(values)
        i0 = int(q * (values.size - 1))
        window = slice(max(i0 - 50, 0), min(i0 + 50, gaps.size))
        i = window.start + int(np.argmax(gaps[window]))
        return float(values[i] + gaps[i] / 2)

    min_range, max_range = boundary(0.2), boundary(0.7)
    near, far = metres < min_range, metres > max_range   # -Inf / +Inf of the model's range too
    assert near.sum() > 100 and far.sum() > 100 and (~near & ~far).sum() > 100

    rig = depth_rig(params={'min_range': min_range, 'max_range': max_range})
    out = rig.frame(rgb, expect=('depth', 'info', 'points', 'stats'))
    depth = image_to_array(out.depth)
    np.testing.assert_array_equal(np.isneginf(depth), near)
    np.testing.assert_array_equal(np.isposinf(depth), far)
    assert not np.isnan(depth).any()
    inside = ~near & ~far
    np.testing.assert_allclose(depth[inside], metres[inside], rtol=0, atol=1e-5)
    _check_cloud_is_backprojection(out.points, out.depth, out.info)
    assert np.isnan(cloud_to_array(out.points)['z']).sum() == (near | far).sum()
    _check_stats_match_depth(out.stats, out.depth)
    assert rig.close() == 0
