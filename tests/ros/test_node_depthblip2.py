"""The node runs DepthBLIP-2 (`model_type: depthblip2`) on the tiny random
BLIP-2s of tests/fixtures/depthblip2 (EVA tower + Q-Former in the Hugging
Face layout, CLIP ViT-L + Q-Former as LAVIS's files): the depth it publishes is what `clip_depth infer` gives from the
same files, NaN around the NYU crop; `depth_scale` multiplies every bin, so
the depth doubles; `temperature` reaches the model; a bad temperature ends
the start with exit code 2 and one line naming it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import FIXTURES_DIR, REPO_ROOT, find_node_binary, load_fixture_image
from ros_messages import image_to_array

EVA = FIXTURES_DIR / 'depthblip2' / 'eva'


CLIP_L = FIXTURES_DIR / 'depthblip2' / 'clip'
FORMATS = {
    # Hugging Face layout: config.json and tokenizer.json beside model.safetensors.
    'hf_eva': {'model_config': EVA / 'depthblip2.yaml', 'checkpoint': EVA / 'hf' / 'model.safetensors'},
    # LAVIS: the Q-Former checkpoint, the tower's own file, vocab.txt beside them.
    'lavis_clip_l': {'model_config': CLIP_L / 'depthblip2.yaml',
                     'checkpoint': CLIP_L / 'lavis' / 'blip2_pretrained_vitL.pth',
                     'clip_weights': CLIP_L / 'lavis' / 'clip_vit_L.pth'},
}


def params(fmt='hf_eva', **extra) -> dict:
    return {'clip_config': '', 'publish_cloud': False, **FORMATS[fmt], **extra}


def _depth(depth_rig, rgb, fmt='hf_eva', **extra):
    # The crop needs frames of at least 604x472: warm up with the real frame.
    rig = depth_rig(params=params(fmt, **extra), warm_up=None, collect=('depth', 'stats'))
    rig.wait_connected()
    for _ in range(10):
        try:
            out = rig.frame(rgb, width=640, height=480, info=False, expect=('depth', 'stats'), timeout=3)
            break
        except AssertionError:
            rig.node.assert_running()
    else:
        raise AssertionError(f'no depth for ten 640x480 frames:\n{rig.node.output_tail()}')
    assert rig.close() == 0
    return image_to_array(out.depth).astype(np.float64), rig


@pytest.mark.parametrize('fmt', sorted(FORMATS))
def test_the_node_gives_the_depth_clip_depth_infer_gives(depth_rig, tmp_path, fmt):
    rgb = load_fixture_image('scene_640x480.png')
    node_depth, rig = _depth(depth_rig, rgb, fmt)
    assert 'DepthBLIP-2' in rig.node.stderr() or 'depthblip2' in rig.node.stderr().lower()

    npy = tmp_path / 'depth.npy'
    cli = find_node_binary().parent / 'clip_depth'
    p = params(fmt)
    extra = ['--clip-weights', str(p['clip_weights'])] if 'clip_weights' in p else []
    subprocess.run([str(cli), 'infer', '--config', str(p['model_config']), '--checkpoint', str(p['checkpoint']),
                    *extra, '--input', str(FIXTURES_DIR / 'images' / 'scene_640x480.png'), '--output', str(npy)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    cli_depth = np.load(npy).astype(np.float64)
    inside = np.zeros_like(node_depth, dtype=bool)
    inside[56:472, 60:604] = True
    assert not np.isnan(node_depth[inside]).any()
    assert np.isnan(node_depth[~inside]).all(), 'outside the crop is NaN (no reading)'
    finite = node_depth[inside][np.isfinite(node_depth[inside])]
    assert finite.size > 0 and 1.0 <= finite.min() and finite.max() <= 3.5, 'within the bins'
    # Both mark the pixels an end class leads (+Inf / -Inf) by default.
    np.testing.assert_allclose(node_depth[inside], cli_depth[inside], rtol=1e-5, atol=1e-6)


def test_depth_scale_and_temperature_reach_the_model(depth_rig):
    rgb = load_fixture_image('scene_640x480.png')
    base, _ = _depth(depth_rig, rgb)
    scaled, _ = _depth(depth_rig, rgb, depth_scale=2.0, allow_out_of_model_range=True)
    inside = np.isfinite(base)
    np.testing.assert_allclose(scaled[inside], 2.0 * base[inside], rtol=1e-5)
    sharper, _ = _depth(depth_rig, rgb, temperature=0.01)
    assert np.abs(sharper[inside] - base[inside]).max() > 1e-3, 'the temperature changed nothing'


def test_a_bad_temperature_is_named(start_node):
    node = start_node(params=params('hf_eva', temperature=-1.0))
    assert node.wait_exit(timeout=30.0) == 2
    lines = [line for line in node.stderr().splitlines() if line.strip()]
    assert len(lines) == 1 and 'temperature' in lines[0], lines
