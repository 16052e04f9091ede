"""The node deploys what `clip_depth train` writes: a tiny model trained for
a few steps on the synthetic rooms, loaded from the run's config.yaml and
best.safetensors (the backbone's config found beside it), gives the same
depth in the node as `clip_depth infer` gives from the same files."""

from __future__ import annotations

import subprocess

import numpy as np
from PIL import Image

from conftest import FIXTURES_DIR, REPO_ROOT, find_node_binary
from ros_messages import image_to_array


def _clip_depth_binary():
    return find_node_binary().parent / 'clip_depth'


def test_the_node_runs_a_freshly_trained_checkpoint(depth_rig, tmp_path):
    run = tmp_path / 'run'
    cli = _clip_depth_binary()
    assert cli.is_file(), f'{cli} not built'
    subprocess.run(
        [str(cli), 'train', '--config', str(FIXTURES_DIR / 'train_data' / 'config.yaml'), '--output-dir', str(run),
         '--clip-weights', str(FIXTURES_DIR / 'tiny_clip' / 'clip' / 'model.safetensors'), '--max-steps', '5'],
        cwd=REPO_ROOT, check=True, capture_output=True)
    best = run / 'best.safetensors'
    assert best.is_file() and (run / 'clip_config.json').is_file()
    frame = FIXTURES_DIR / 'train_data' / 'val' / 'room_00_rgb.png'
    rgb = np.asarray(Image.open(frame).convert('RGB'))
    rig = depth_rig(params={'model_config': run / 'config.yaml', 'checkpoint': best})
    out = rig.frame(rgb, width=rgb.shape[1], height=rgb.shape[0], expect=('depth', 'stats'))
    node_depth = image_to_array(out.depth)
    assert rig.close() == 0

    # The same frame through the CLI, from the same files.
    npy = tmp_path / 'depth.npy'
    subprocess.run([str(cli), 'infer', '--config', str(run / 'config.yaml'), '--checkpoint', str(best),
                    '--input', str(frame), '--output', str(npy)], cwd=REPO_ROOT, check=True, capture_output=True)
    cli_depth = np.load(npy)
    finite = np.isfinite(node_depth)
    assert finite.mean() > 0.5, 'the trained model predicts inside its range for most pixels'
    np.testing.assert_allclose(node_depth[finite], cli_depth[finite], rtol=1e-5, atol=1e-6)
