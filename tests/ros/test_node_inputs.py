"""Input formats of clip_depth_node: every raw encoding (channel order,
alpha, grey, 16-bit, row padding) and compressed JPEG/PNG images.

The model is deterministic, so the same scene in another layout must give the
same depth; the expected 8-bit image of each input is built here with numpy.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from conftest import load_fixture_image
from ros_messages import (image_to_array, make_camera_info, make_compressed_image, make_header,
                          make_image)

W, H = 64, 48
SAME_DEPTH_ATOL = 1e-5


def _scene() -> np.ndarray:
    """A 64x48 RGB crop of the fixture scene."""
    return np.ascontiguousarray(load_fixture_image('scene_224.png')[60:60 + H, 80:80 + W])


def _padded(array: np.ndarray, encoding: str, pad: int, header) -> 'Image':
    """An Image whose rows carry `pad` junk bytes after the pixels (step > width * bpp)."""
    msg = make_image(array, encoding=encoding, header=header)
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    junk = np.random.default_rng(pad).integers(0, 256, size=(msg.height, pad), dtype=np.uint8)
    msg.data = np.hstack([rows, junk]).tobytes()
    msg.step = msg.step + pad
    return msg


def _depth_of(rig, image) -> np.ndarray:
    out = rig.send(image, True, expect=('depth', 'stats'))
    assert (out.depth.width, out.depth.height) == (image.width, image.height)
    return image_to_array(out.depth)


def test_every_encoding_and_row_padding(depth_rig):
    """bgr8/rgba8/bgra8 of the same scene give rgb8's depth; mono8 gives the
    depth of the grey image as rgb8; mono16 (grey * 257, full range) gives
    mono8's; padded rows give the unpadded depth."""
    rig = depth_rig(params={'publish_cloud': False}, collect=('depth', 'stats'))
    rgb = _scene()
    alpha = np.random.default_rng(3).integers(0, 256, size=(H, W, 1), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])

    def send(array, encoding, pad=0):
        header = make_header()
        if pad:
            return _depth_of(rig, _padded(array, encoding, pad, header))
        return _depth_of(rig, make_image(array, encoding=encoding, header=header))

    ref = send(rgb, 'rgb8')
    assert ref.std() > 0
    for name, array, encoding, pad in [
        ('bgr8', bgr, 'bgr8', 0),
        ('rgba8', np.dstack([rgb, alpha]), 'rgba8', 0),
        ('bgra8', np.dstack([bgr, alpha]), 'bgra8', 0),
        ('rgb8 padded', rgb, 'rgb8', 5),
        ('bgra8 padded', np.dstack([bgr, alpha]), 'bgra8', 12),
    ]:
        got = send(array, encoding, pad)
        np.testing.assert_allclose(got, ref, rtol=0, atol=SAME_DEPTH_ATOL, err_msg=name)

    # Grey: values 1..254 inside, a row of 0 and a row of 255 so that a 16-bit
    # image of grey * 257 spans the full range (any auto-exposure maps it back).
    grey = np.clip(rgb.astype(np.float64) @ [0.299, 0.587, 0.114], 1, 254).astype(np.uint8)
    grey[0, :] = 0
    grey[-1, :] = 255
    grey_ref = send(np.dstack([grey] * 3), 'rgb8')
    assert not np.allclose(grey_ref, ref, atol=1e-3), 'grey and colour scenes should differ'
    for name, array, encoding, pad in [
        ('mono8', grey, 'mono8', 0),
        ('mono8 padded', grey, 'mono8', 3),
        ('mono16', grey.astype(np.uint16) * 257, 'mono16', 0),
        ('mono16 padded', grey.astype(np.uint16) * 257, 'mono16', 6),
    ]:
        got = send(array, encoding, pad)
        np.testing.assert_allclose(got, grey_ref, rtol=0, atol=SAME_DEPTH_ATOL, err_msg=name)
    stats = rig.latest_stats()
    assert stats.frames_skipped_invalid == 0
    assert rig.close() == 0


def test_compressed_jpeg_and_png(depth_rig):
    """image_transport:=compressed: JPEG and PNG CompressedImages with
    image_transport's format strings give depth of the image's size with a
    matching depth/camera_info and cloud; PNG (lossless) gives the depth of the
    same pixels sent raw; a JPEG gives a depth close to it."""
    rgb = _scene()
    rig = depth_rig(params={'image_transport': 'compressed'})
    assert rig.node.wait_for_output(r'image/compressed', timeout=5)
    depths = {}
    for fmt, format_string, pixels in [
        ('png', 'rgb8; png compressed rgb8', rgb),
        ('png', 'bgr8; png compressed bgr8', rgb),
        ('jpeg', 'rgb8; jpeg compressed bgr8', rgb),
        ('jpeg', 'bgr8; jpeg compressed bgr8', rgb),
        ('jpeg', 'jpeg', rgb),
        ('png', 'png', np.ascontiguousarray(np.vstack([rgb, rgb])[:80, :56])),  # another size
    ]:
        header = make_header()
        msg = make_compressed_image(pixels, fmt=fmt, header=header, quality=95)
        msg.format = format_string
        h, w = pixels.shape[:2]
        out = rig.send(msg, make_camera_info(w, h), expect=('depth', 'info', 'points', 'stats'))
        assert (out.depth.width, out.depth.height) == (w, h), format_string
        assert (out.info.width, out.info.height) == (w, h)
        assert (out.points.width, out.points.height) == (w, h)
        depths.setdefault(fmt, []).append(image_to_array(out.depth))
    assert rig.latest_stats().frames_skipped_invalid == 0
    np.testing.assert_allclose(depths['png'][1], depths['png'][0], atol=SAME_DEPTH_ATOL)
    np.testing.assert_allclose(depths['jpeg'][1], depths['jpeg'][0], atol=SAME_DEPTH_ATOL)
    assert rig.close() == 0

    raw = depth_rig(params={'publish_cloud': False}, collect=('depth', 'stats'))
    ref = _depth_of(raw, make_image(rgb, encoding='rgb8', header=make_header()))
    np.testing.assert_allclose(depths['png'][0], ref, rtol=0, atol=SAME_DEPTH_ATOL,
                               err_msg='PNG decoded with wrong pixels or channel order')
    # JPEG is lossy: close to, not equal to, the raw depth; far from the
    # depth of the colour-swapped scene (a channel-order bug would land there).
    swapped = _depth_of(raw, make_image(np.ascontiguousarray(rgb[..., ::-1]), encoding='rgb8',
                                        header=make_header()))
    jpeg_err = np.abs(depths['jpeg'][0] - ref).mean()
    assert jpeg_err < np.abs(swapped - ref).mean() / 2, (jpeg_err, np.abs(swapped - ref).mean())
    assert raw.close() == 0
