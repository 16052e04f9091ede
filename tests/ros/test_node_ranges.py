"""REP 117 ranges on what the model really predicts: a pixel the model puts
beyond max_range is +Inf in 32FC1 and 0 in 16UC1 (never a reading at
max_depth, which a costmap would take for an obstacle), one nearer than
min_range -Inf; with allow_out_of_model_range the raw values come through.

The model's output is moved by editing the bias of its last convolution
(depth_prediction_head.3, followed by a ReLU) in a copy of the tiny
checkpoint: +1000 puts every pixel near 1000 m, -1000 every pixel at 0 m.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from conftest import TINY_CLIP_DIR, tiny_model_params
from ros_messages import cloud_to_array, image_to_array

HEAD_BIAS = 'depth_prediction_head.3.bias'


def _checkpoint_with_head_bias(tmp_path, bias: float):
    """A copy of the tiny safetensors checkpoint whose depth head bias is `bias`."""
    data = bytearray((TINY_CLIP_DIR / 'checkpoint.safetensors').read_bytes())
    header_len = struct.unpack('<Q', data[:8])[0]
    entry = json.loads(data[8:8 + header_len])[HEAD_BIAS]
    assert entry['dtype'] == 'F32' and entry['shape'] == [1], entry
    start = 8 + header_len + entry['data_offsets'][0]
    data[start:start + 4] = struct.pack('<f', bias)
    path = tmp_path / f'head_bias_{bias:+g}.safetensors'
    path.write_bytes(bytes(data))
    return path


def _rig(depth_rig, tmp_path, bias, **params):
    model = {**tiny_model_params(), 'checkpoint': _checkpoint_with_head_bias(tmp_path, bias)}
    return depth_rig(params={**model, **params})


def test_depth_beyond_max_range_is_plus_inf_and_no_point(depth_rig, tmp_path):
    rig = _rig(depth_rig, tmp_path, 1000.0)
    out = rig.frame(width=64, height=48, expect=('depth', 'info', 'points', 'stats'))
    depth = image_to_array(out.depth)
    assert np.isposinf(depth).all(), f'finite values {np.unique(depth[np.isfinite(depth)])[:5]} m'
    assert np.isnan(cloud_to_array(out.points)['z']).all()
    s = out.stats
    assert np.isnan([s.depth_min, s.depth_median, s.depth_max]).all(), 'no reading, no statistics'
    assert rig.close() == 0


def test_depth_beyond_max_range_is_zero_in_16uc1(depth_rig, tmp_path):
    rig = _rig(depth_rig, tmp_path, 1000.0, depth_encoding='16UC1')
    out = rig.frame(width=64, height=48, expect=('depth', 'stats'))
    assert out.depth.encoding == '16UC1'
    assert not np.frombuffer(bytes(out.depth.data), dtype='<u2').any(), '16UC1 has only 0 for no reading'
    assert rig.close() == 0


def test_depth_at_zero_is_minus_inf(depth_rig, tmp_path):
    rig = _rig(depth_rig, tmp_path, -1000.0)
    out = rig.frame(width=64, height=48, expect=('depth', 'points'))
    assert np.isneginf(image_to_array(out.depth)).all()
    assert np.isnan(cloud_to_array(out.points)['z']).all()
    assert rig.close() == 0


def test_allowing_ranges_beyond_the_model_shows_its_raw_output(depth_rig, tmp_path):
    """max_range beyond the model's max_depth is refused (see the start-up
    tests) unless allow_out_of_model_range; then the ~1000 m the edited model
    predicts are published as readings: nothing was saturated at 10 m."""
    rig = _rig(depth_rig, tmp_path, 1000.0, max_range=5000.0, allow_out_of_model_range=True)
    out = rig.frame(width=64, height=48, expect=('depth', 'stats'))
    depth = image_to_array(out.depth)
    assert np.isfinite(depth).all()
    assert 900.0 < depth.min() and depth.max() < 1100.0, (depth.min(), depth.max())
    assert 900.0 < out.stats.depth_median < 1100.0
    assert rig.close() == 0
