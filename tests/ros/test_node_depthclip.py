"""The node runs DepthCLIP (zero-shot, `model_type: depthclip` in the model
config) on the tiny random CLIPs of tests/fixtures/depthclip: the depth it
publishes is what `clip_depth infer` gives from the same files; the NYU crop
leaves NaN (no reading) around it, in the depth image and the cloud; the
prompt and bin parameters (ROS arrays or YAML lists) replace the config's;
a bad list ends the start with exit code 2 and one line naming it."""

from __future__ import annotations

import subprocess

import numpy as np
import yaml

from conftest import FIXTURES_DIR, REPO_ROOT, find_node_binary, load_fixture_image
from ros_messages import cloud_to_array, image_to_array

DEPTHCLIP = FIXTURES_DIR / 'depthclip'


def vit_params() -> dict:
    # Hugging Face layout: config.json is found beside model.safetensors.
    return {'model_config': DEPTHCLIP / 'vit' / 'depthclip.yaml',
            'checkpoint': DEPTHCLIP / 'vit' / 'hf' / 'model.safetensors', 'clip_config': ''}


def rn_params() -> dict:
    # OpenAI's TorchScript layout, with the NYU crop.
    return {'model_config': DEPTHCLIP / 'rn' / 'depthclip.yaml', 'checkpoint': DEPTHCLIP / 'rn' / 'RN-tiny.pt',
            'clip_config': DEPTHCLIP / 'rn' / 'open_clip_config.json'}


def test_the_node_gives_the_depth_clip_depth_infer_gives(depth_rig, tmp_path):
    rgb = load_fixture_image('scene_224.png')
    rig = depth_rig(params=vit_params())
    rig.wait_for_log(r'DepthCLIP')
    out = rig.frame(rgb, width=rgb.shape[1], height=rgb.shape[0], expect=('depth', 'stats'))
    node_depth = image_to_array(out.depth)
    assert rig.close() == 0

    npy = tmp_path / 'depth.npy'
    cli = find_node_binary().parent / 'clip_depth'
    p = vit_params()
    subprocess.run([str(cli), 'infer', '--config', str(p['model_config']), '--checkpoint', str(p['checkpoint']),
                    '--input', str(FIXTURES_DIR / 'images' / 'scene_224.png'), '--output', str(npy)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    cli_depth = np.load(npy)
    assert not np.isnan(node_depth).any(), 'no crop: every pixel has a reading'
    finite = node_depth[np.isfinite(node_depth)]
    assert finite.size > 0 and 0.5 <= finite.min() and finite.max() <= 8.0, 'within the bins'
    # Both mark the pixels an end class leads (+Inf / -Inf) by default.
    np.testing.assert_allclose(node_depth, cli_depth, rtol=1e-5, atol=1e-6)


def test_the_nyu_crop_leaves_no_reading_around_it(depth_rig):
    rgb = load_fixture_image('scene_640x480.png')
    # The rig's small warm-up frames would not hold the crop: warm up with
    # the real frame (one sent right after matching may still be lost).
    rig = depth_rig(params={**rn_params(), 'cloud_decimation': 4, 'beyond_bins': 'keep'}, warm_up=None)
    rig.wait_connected()
    for attempt in range(5):
        try:
            out = rig.frame(rgb, width=640, height=480, expect=('depth', 'info', 'points', 'stats'), timeout=20)
            break
        except AssertionError:
            rig.node.assert_running()
    else:
        raise AssertionError(f'no depth for five 640x480 frames:\n{rig.node.output_tail()}')
    depth = image_to_array(out.depth)
    inside = np.zeros_like(depth, dtype=bool)
    inside[56:472, 60:604] = True
    assert np.isfinite(depth[inside]).all()
    assert np.isnan(depth[~inside]).all(), 'outside the crop is NaN (no reading), not a range'
    points = cloud_to_array(out.points)
    # Decimation 4: cloud row r is depth row 4r, column c depth column 4c.
    z = points['z'].reshape(480 // 4, 640 // 4)
    rows, cols = slice(56 // 4, 472 // 4), slice(60 // 4, 604 // 4)
    assert np.isfinite(z[rows, cols]).all()
    assert np.isnan(z[:rows.start]).all() and np.isnan(z[rows.stop:]).all()
    assert np.isnan(z[:, :cols.start]).all() and np.isnan(z[:, cols.stop:]).all()
    assert rig.close() == 0


def test_prompt_and_bin_parameters_replace_the_config(depth_rig):
    rgb = load_fixture_image('scene_224.png')
    # A ROS string array and a double array, as a params file or -p gives them.
    params = {**vit_params(), 'depth_classes': ['close', 'far'], 'bin_list': [10.0, 20.0], 'beyond_bins': 'keep'}
    rig = depth_rig(params=params)
    out = rig.frame(rgb, width=rgb.shape[1], height=rgb.shape[0], expect=('depth', 'stats'))
    depth = image_to_array(out.depth)
    assert np.isfinite(depth).all() and 10.0 <= depth.min() and depth.max() <= 20.0, (depth.min(), depth.max())
    assert rig.close() == 0


def test_beyond_the_bins_is_too_far_or_too_close_not_a_phantom_obstacle(depth_rig, tmp_path):
    """With two distance classes a pixel is led by the far class or the near
    one (ties aside): by default the node publishes +Inf (too far, REP 117)
    where the far class leads and -Inf where the near one does, never the
    weighted mean a costmap would mark as an obstacle. The margin is affine
    in the depth for two classes, so the marks fall exactly where the
    unmarked depth (`clip_depth infer --beyond-bins keep`) is beyond or
    before the bins' midpoint; the cloud has no point there."""
    rgb = load_fixture_image('scene_224.png')
    lists = {'depth_classes': ['close', 'far'], 'bin_list': [1.0, 3.0]}
    rig = depth_rig(params={**vit_params(), **lists}, collect=('depth', 'info', 'points', 'stats'))
    out = rig.frame(rgb, width=rgb.shape[1], height=rgb.shape[0], expect=('depth', 'points', 'stats'))
    depth = image_to_array(out.depth)
    z = cloud_to_array(out.points)['z'].reshape(depth.shape)
    assert rig.close() == 0

    config = tmp_path / 'two_classes.yaml'
    settings = yaml.safe_load((DEPTHCLIP / 'vit' / 'depthclip.yaml').read_text())
    config.write_text(yaml.safe_dump({**settings, **lists}))
    npy = tmp_path / 'keep.npy'
    cli = find_node_binary().parent / 'clip_depth'
    p = vit_params()
    subprocess.run([str(cli), 'infer', '--config', str(config), '--checkpoint', str(p['checkpoint']),
                    '--input', str(FIXTURES_DIR / 'images' / 'scene_224.png'), '--output', str(npy),
                    '--beyond-bins', 'keep'], cwd=REPO_ROOT, check=True, capture_output=True)
    keep = np.load(npy)
    assert np.isfinite(keep).all()
    decided = np.abs(keep - 2.0) > 1e-4     # ties at the midpoint aside
    assert decided.mean() > 0.99
    np.testing.assert_array_equal(np.isposinf(depth)[decided], (keep > 2.0)[decided])
    np.testing.assert_array_equal(np.isneginf(depth)[decided], (keep < 2.0)[decided])
    assert np.isposinf(depth).any() or np.isneginf(depth).any()
    assert np.isnan(z[~np.isfinite(depth)]).all(), 'no point where there is no reading'


def test_bad_prompt_lists_end_the_start_with_one_line(start_node):
    cases = [({'bin_list': [1.0, 2.0]}, 'bin_list'),
             ({'depth_templates': '["no placeholders"]'}, 'depth_templates'),
             ({'model_type': 'midas'}, 'model_type')]
    for extra, parameter in cases:
        node = start_node(params={**vit_params(), **extra})
        code = node.wait_exit(timeout=30)
        lines = [line for line in node.stderr().splitlines() if line.strip()]
        assert code == 2, f'{extra}: exit code {code}:\n{node.output_tail()}'
        assert len(lines) == 1 and parameter in lines[0], f'{extra}: {lines}'
