"""A panic while processing a frame costs that frame, not the node: the frame
is counted in frames_failed, an error names the stage, and the next frame is
published. If the inference thread dies anyway, the process exits with 1 (so
that a launch file's respawn can act) instead of lingering silent.

Needs a node built with the test hook (cargo feature test-hooks, as
scripts/test.sh builds it): a frame whose frame_id is
`clip_depth_test_panic:<stage>` panics in that stage.
"""

from __future__ import annotations

import pytest

from ros_messages import make_header

MARK = 'clip_depth_test_panic:'
NO_HOOK = ('the node published a frame marked to panic: build it with the test hook '
           '(cargo build --features test-hooks --bin clip_depth_node)')


def _error_line(rig, pattern: str) -> str:
    try:
        line = rig.wait_for_log(pattern, timeout=10).string
    except AssertionError as exc:
        pytest.fail(f'{NO_HOOK}?\n{exc}', pytrace=False)
    assert 'ERROR' in line, line
    return line


def test_a_panic_costs_one_frame_and_the_node_carries_on(depth_rig):
    rig = depth_rig(collect=('depth', 'info', 'points', 'stats'))
    before = rig.latest_stats()
    stages = ('decode', 'inference', 'cloud', 'stats')
    for n, stage in enumerate(stages, start=1):
        header = make_header(frame_id=MARK + stage)
        rig.frame(width=64, height=48, stamp=header.stamp, frame_id=header.frame_id, expect=())
        _error_line(rig, rf'frame lost: internal error in stage {stage}: .*test hook')
        if stage in ('decode', 'inference'):   # nothing published before those stages
            rig.assert_nothing(header, ('depth', 'info', 'points', 'stats'), wait=0.0)
        rig.node.assert_running()
        good = rig.warm_up(with_info=True)   # the next frame: every output again
        s = good.stats
        assert s.frames_failed == before.frames_failed + n, (stage, s.frames_failed)
        assert s.frames_processed >= before.frames_processed + n, stage
        assert s.frames_skipped_invalid == before.frames_skipped_invalid
    assert rig.close() == 0


def test_a_dead_inference_thread_ends_the_process_with_1(depth_rig):
    rig = depth_rig(collect=('depth', 'stats'))
    header = make_header(frame_id=MARK + 'worker')
    rig.frame(width=64, height=48, stamp=header.stamp, frame_id=header.frame_id, expect=())
    try:
        code = rig.node.wait_exit(timeout=10)
    except AssertionError as exc:
        pytest.fail(f'{NO_HOOK}?\n{exc}', pytrace=False)
    assert code == 1, f'exit code {code}:\n{rig.node.output_tail()}'
    line = _error_line(rig, r'the inference thread ended: .*test hook at worker')
    assert 'exiting with code 1' in line, line


def test_a_dead_forwarding_task_ends_the_process_with_1_naming_it(depth_rig):
    """A camera's forwarding task (images from the subscription to the
    inference thread) that panics would stop that camera silently: the node
    exits with 1 naming it, as for a dead thread."""
    rig = depth_rig(collect=('depth', 'stats'))
    header = make_header(frame_id=MARK + 'forward')
    rig.frame(width=64, height=48, stamp=header.stamp, frame_id=header.frame_id, expect=())
    try:
        code = rig.node.wait_exit(timeout=10)
    except AssertionError as exc:
        pytest.fail(f'{NO_HOOK}?\n{exc}', pytrace=False)
    assert code == 1, f'exit code {code}:\n{rig.node.output_tail()}'
    line = _error_line(rig, r"the camera's image forwarding panicked: .*test hook at forward")
    assert 'exiting with code 1' in line, line
