"""Several cameras served by one clip_depth_node (`cameras` parameter): each
camera's outputs carry its own input's header and size and its own
camera_info; one camera's bad frames cost only its own frames; frames of
several cameras go through the model together (and give the depth each
would get alone); a fast camera does not starve a slow one; per-camera
overrides, at start and live.

Expected values are computed here from what was published to the node.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.parameter import Parameter

from conftest import parameter_client, tiny_model_params, wait_future
from ros_messages import camera_intrinsics, image_to_array, make_camera_info, pattern_image, stamp_ns


def _info(width, height, fx):
    return make_camera_info(width, height, fx=fx, fy=fx, cx=width / 2 - 0.5, cy=height / 2 - 0.5)


def test_three_cameras_at_different_rates_and_sizes(camera_rig):
    # left's depth image is 40 wide (override), its height following its aspect.
    rig = camera_rig(['front', 'left', 'rear'], params={'left.output_width': 40},
                     collect=('depth', 'info', 'stats'))
    setup = {  # size, focal length, frames per second
        'front': ((64, 48), 50.0, 15.0),
        'left': ((80, 60), 70.0, 7.0),
        'rear': ((48, 64), 30.0, 4.0),
    }
    want_size = {'front': (64, 48), 'left': (40, 30), 'rear': (48, 64)}
    for cam in rig.cameras:
        for key in ('depth', 'info', 'stats'):
            rig.collectors[(cam, key)].clear()
    sent = {cam: [] for cam in rig.cameras}
    start = time.monotonic()
    next_at = {cam: start for cam in rig.cameras}
    while time.monotonic() - start < 3.0:
        now = time.monotonic()
        for cam, ((w, h), fx, hz) in setup.items():
            if now >= next_at[cam]:
                header = rig.publish(cam, width=w, height=h, info=_info(w, h, fx))
                sent[cam].append(stamp_ns(header.stamp))
                next_at[cam] += 1.0 / hz
        time.sleep(0.002)
    # The newest frame of every camera is always processed.
    for cam in rig.cameras:
        rig.collectors[(cam, 'depth')].wait_for(1, 20.0, lambda m, s=sent[cam][-1]: stamp_ns(m.header.stamp) == s)
    time.sleep(0.5)

    batch_sizes = []
    for cam, ((w, h), fx, _) in setup.items():
        depths = rig.messages(cam, 'depth')
        infos = {stamp_ns(m.header.stamp): m for m in rig.messages(cam, 'info')}
        stats = {stamp_ns(m.header.stamp): m for m in rig.messages(cam, 'stats')}
        assert depths, f'camera {cam}: nothing published'
        for depth in depths:
            stamp = stamp_ns(depth.header.stamp)
            assert stamp in sent[cam], f'camera {cam} published a stamp it was never sent'
            assert depth.header.frame_id == rig.frame_id(cam)
            assert (depth.width, depth.height) == want_size[cam]
            info = infos[stamp]
            assert info.header.frame_id == rig.frame_id(cam)
            assert (info.width, info.height) == want_size[cam]
            scale = want_size[cam][0] / w
            fx_out, fy_out, _, _ = camera_intrinsics(info)
            assert abs(fx_out - fx * scale) < 1e-9 and abs(fy_out - fx * scale) < 1e-9, \
                f'camera {cam}: depth/camera_info is not its own camera_info ({fx_out} vs {fx * scale})'
            s = stats[stamp]
            assert s.camera == cam and s.header.frame_id == rig.frame_id(cam)
            batch_sizes.append(s.batch_size)
        print(f'camera {cam}: {len(sent[cam])} sent at {setup[cam][2]:.0f} Hz, {len(depths)} processed')
    print(f'batch sizes: {np.bincount(batch_sizes).tolist()} (count per size)')
    assert max(batch_sizes) >= 2, 'frames of several cameras went through the model together'
    assert max(batch_sizes) <= 3
    assert rig.close() == 0


def test_a_batch_gives_each_camera_the_depth_it_gets_alone(camera_rig):
    # One forward pass per batch (on a CPU a batch is otherwise split into
    # single frames, one per core), and a window long enough that the two
    # cameras' frames meet in one batch.
    rig = camera_rig(['front', 'rear'], collect=('depth', 'stats'), params={'batch_window_ms': 500.0},
                     env={'CLIP_DEPTH_NO_BATCH_SPLIT': '1'})
    image = pattern_image(64, 48)
    alone = rig.send('front', image, expect=('depth', 'stats'))
    together = []
    for _ in range(5):
        h_front = rig.publish('front', image)
        h_rear = rig.publish('rear', image)
        front = rig.outputs('front', h_front, expect=('depth', 'stats'))
        rear = rig.outputs('rear', h_rear, expect=('depth', 'stats'))
        together.append((front, rear))
    reference = image_to_array(alone['depth'])
    sizes = []
    for front, rear in together:
        for out in (front, rear):
            np.testing.assert_allclose(image_to_array(out['depth']), reference, rtol=0, atol=1e-4)
            sizes.append(out['stats'].batch_size)
    print(f'batch sizes of the paired frames: {sizes}')
    assert alone['stats'].batch_size == 1
    assert sizes.count(2) >= 4, f'the pairs did not go through the model together: {sizes}'
    assert rig.close() == 0


def test_one_cameras_bad_frames_do_not_disturb_the_others(camera_rig):
    rig = camera_rig(['front', 'left'], collect=('depth', 'info', 'stats'))
    bad = 0
    for i in range(6):
        header = rig.publish('front', width=64, height=48)
        if i % 2:
            bad_header = rig.publish('left', image=_short_image())
        else:
            bad_header = rig.publish('left', image=_unknown_encoding_image())
        bad += 1
        out = rig.outputs('front', header, expect=('depth', 'info', 'stats'))
        assert out['stats'].frames_skipped_invalid == 0
        rig.node.assert_running()
        assert not [m for m in rig.messages('left', 'depth') if stamp_ns(m.header.stamp) == stamp_ns(bad_header.stamp)]
    rig.node.wait_for_output(r'camera left: frame skipped', timeout=5.0)
    assert 'camera front: frame skipped' not in rig.node.stderr()
    good = rig.send('left', width=64, height=48, expect=('depth', 'stats'))
    assert good['stats'].frames_skipped_invalid == bad, 'the bad frames are counted on their own camera'
    assert rig.close() == 0


def _short_image():
    from ros_messages import make_image
    msg = make_image(width=64, height=48)
    msg.data = bytes(msg.data)[:100]
    return msg


def _unknown_encoding_image():
    from ros_messages import make_image
    msg = make_image(width=64, height=48)
    msg.encoding = 'yuv9000'
    return msg


def test_a_fast_camera_does_not_starve_a_slow_one(camera_rig):
    """60 Hz beside 10 Hz for 4 s on a node slower than 60 Hz: the slow
    camera's frames are all processed (each waits at most one forward pass),
    the fast one's newest frames fill the rest."""
    rig = camera_rig(['fast', 'slow'], collect=('depth',), params={'publish_cloud': False})
    for cam in rig.cameras:
        rig.collectors[(cam, 'depth')].clear()
    rates = {'fast': 60.0, 'slow': 10.0}
    sent = {cam: [] for cam in rates}
    start = time.monotonic()
    next_at = dict.fromkeys(rates, start)
    while time.monotonic() - start < 4.0:
        now = time.monotonic()
        for cam, hz in rates.items():
            if now >= next_at[cam]:
                sent[cam].append(stamp_ns(rig.publish(cam, width=64, height=48, info=False).stamp))
                next_at[cam] += 1.0 / hz
        time.sleep(0.001)
    for cam in rates:
        rig.collectors[(cam, 'depth')].wait_for(1, 20.0, lambda m, s=sent[cam][-1]: stamp_ns(m.header.stamp) == s)
    done = {cam: len(rig.messages(cam, 'depth')) for cam in rates}
    for cam in rates:
        print(f'{cam}: {len(sent[cam])} sent ({rates[cam]:.0f} Hz), {done[cam]} processed '
              f'({done[cam] / 4.0:.1f} /s, {100 * done[cam] / len(sent[cam]):.0f} %)')
    # Each forward pass takes the newest frame of every camera that has one:
    # the slow camera gets as many passes as the fast one, up to its own rate.
    assert done['slow'] >= 0.8 * min(len(sent['slow']), done['fast']), 'the slow camera was starved'
    assert done['fast'] >= 0.8 * done['slow']
    assert rig.close() == 0


def test_per_camera_overrides_live(camera_rig):
    rig = camera_rig(['front', 'rear'], params={'max_range': 9.0, 'rear.cloud_decimation': 2},
                     collect=('depth', 'points'))
    client = parameter_client(rig.peer)
    image = pattern_image(64, 48)
    front = rig.send('front', image, expect=('depth', 'points'))
    rear = rig.send('rear', image, expect=('depth', 'points'))
    assert (front['points'].width, rear['points'].width) == (64, 32), 'rear.cloud_decimation given at start'
    before = image_to_array(front['depth']).astype(np.float64)
    finite = before[np.isfinite(before)]
    limit = float(np.median(finite))

    result = wait_future(client.set_parameters([Parameter('rear.max_range', value=limit)])).results[0]
    assert result.successful, result.reason
    front = image_to_array(rig.send('front', image)['depth'])
    rear = image_to_array(rig.send('rear', image)['depth'])
    np.testing.assert_array_equal(np.isposinf(front), np.isposinf(before), 'front keeps the shared max_range')
    np.testing.assert_array_equal(np.isposinf(rear), np.isposinf(before) | (before > limit))
    assert np.isposinf(rear).sum() > np.isposinf(before).sum()

    # Refused: a bad value, an unknown camera, a parameter cameras do not override.
    for name, value in [('rear.cloud_decimation', 0), ('rear.max_range', 50.0),
                        ('side.max_range', 5.0), ('rear.model_config', 'x.yaml')]:
        result = wait_future(client.set_parameters([Parameter(name, value=value)])).results[0]
        assert not result.successful, f'{name}={value!r} was accepted'
        assert name in result.reason or name.split('.')[0] in result.reason, result.reason
    rear = rig.send('rear', image, expect=('depth', 'points'))
    assert rear['points'].width == 32, 'the refused value left the old one'
    assert rig.close() == 0


def test_camera_start_up_errors_exit_2_with_one_line(start_node):
    model = tiny_model_params()
    for params, culprit in [
        ({'cameras': ['front', 'front']}, 'cameras'),
        ({'cameras': ['front cam']}, 'cameras'),
        ({'cameras': ['front'], 'front.max_range': 500.0}, 'front.max_range'),
        ({'cameras': ['front'], 'front.exposure': 3}, 'front.exposure'),
        ({'cameras': ['front', 'rear'], 'rear.min_range': 9.0, 'max_range': 5.0}, 'camera rear'),
    ]:
        node = start_node(params={**model, **params})
        assert node.wait_exit(timeout=30.0) == 2, node.output_tail()
        lines = [line for line in node.stderr().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert culprit in lines[0], lines[0]


def test_a_late_camera_info_delays_only_its_own_camera(camera_rig):
    """Two cameras in one batch, the rear one's camera_info arriving late
    (after its image, with its stamp): the front camera, whose camera_info
    came with its image, is published without waiting for the rear one's;
    the rear one waits (up to camera_info_sync_window) for its own and is
    paired with it exactly."""
    rig = camera_rig(['front', 'rear'], collect=('depth', 'info', 'stats'),
                     params={'camera_info_sync_window': 3.0, 'batch_window_ms': 500.0})
    for _ in range(3):
        image = pattern_image(64, 48)
        t0 = time.monotonic()
        h_front = rig.publish('front', image)
        h_rear = rig.publish('rear', image, info=False)
        front = rig.outputs('front', h_front, expect=('depth', 'info', 'stats'), timeout=10)
        front_after = time.monotonic() - t0
        assert not rig.outputs('rear', h_rear, expect=()), 'rear published before its camera_info'
        info = make_camera_info(64, 48)
        info.header = h_rear
        rig.info_pubs['rear'].publish(info)
        rear = rig.outputs('rear', h_rear, expect=('depth', 'info', 'stats'), timeout=10)
        print(f'front published {front_after:.2f} s after its frame; batch sizes {front["stats"].batch_size}, '
              f'{rear["stats"].batch_size}')
        # A forward pass of the tiny model takes well under a second; waiting
        # for the rear camera_info would take the 3 s window.
        assert front_after < 1.5, f'the front camera waited {front_after:.2f} s for the rear camera_info'
        assert rear['info'].header.stamp == h_rear.stamp
    assert rig.close() == 0
