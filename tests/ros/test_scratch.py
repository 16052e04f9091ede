import time
import numpy as np
import pytest
from conftest import *

@pytest.mark.parametrize('size', [(640,480)])
def test_scratch(depth_rig, size):
    rig = depth_rig(input_qos=qos_best_effort(5))
    rgb = pattern_image(*size)
    for i in range(2):
        try:
            out = rig.frame(rgb, expect=('depth','stats','points'), timeout=3)
            print(size, 'OK', out.stats.total_ms)
        except AssertionError as e:
            print(size, 'FAIL', rig.latest_stats().frames_received)
    rig.close()
