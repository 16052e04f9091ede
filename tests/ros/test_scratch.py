import time
import numpy as np
from conftest import *

def test_scratch(depth_rig):
    rig = depth_rig()
    try:
        out = rig.frame(expect=('depth','info','points','stats'), timeout=3)
    finally:
        for k, c in rig.collectors.items():
            print(k, [m.header for m in c.messages])
