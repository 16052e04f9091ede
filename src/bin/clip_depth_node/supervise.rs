//! A panic while processing one frame (a bug, a third-party decoder on
//! hostile bytes, an arithmetic edge) must cost that frame, not the node: the
//! inference thread runs each frame under [`supervised`] and carries on. If
//! the thread still ends, the node exits non-zero (see `main`) so that a
//! supervisor can restart it, rather than staying in the graph publishing
//! nothing.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};

use clip_depth_ros::error::panic_message;

/// The stages of one frame, named in the error when one of them panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    CameraInfo,
    Inference,
    DepthImage,
    Colormap,
    Cloud,
    Publish,
    Stats,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::CameraInfo => "camera_info",
            Stage::Inference => "inference",
            Stage::DepthImage => "depth_image",
            Stage::Colormap => "colormap",
            Stage::Cloud => "cloud",
            Stage::Publish => "publish",
            Stage::Stats => "stats",
        }
    }
}

thread_local! {
    /// Set while this thread runs supervised code: its panics are reported
    /// by the supervisor (throttled), not printed by the hook.
    static SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// The last caught panic's message and location.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the installed panic hook: panics inside [`supervised`] are kept
/// for the supervisor to log; any other panic goes to the previous hook.
pub fn install_panic_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if SUPERVISED.with(Cell::get) {
            let msg = panic_message(info.payload());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{}{at}", msg.replace('\n', " "))));
        } else {
            previous(info);
        }
    }));
}

/// Runs `f`; a panic in it comes back as its message and location.
pub fn supervised<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let outer = SUPERVISED.with(|s| s.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    SUPERVISED.with(|s| s.set(outer));
    // A panic in another thread that `f` waited for (a split CPU batch's
    // pool) reaches here with its payload but was not caught by the hook on
    // this thread: its message is the payload's.
    result.map_err(|payload| CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| panic_message(&*payload).replace('\n', " ")))
}

/// The prefix of a frame_id that makes a test build panic (see [`test_hook`]).
#[cfg(feature = "test-hooks")]
const PANIC_MARK: &str = "clip_depth_test_panic:";
/// The prefix of a frame_id that makes a test build hang (see [`test_hook`]).
#[cfg(feature = "test-hooks")]
const HANG_MARK: &str = "clip_depth_test_hang:";

/// Test builds only (cargo feature `test-hooks`): a frame whose frame_id is
/// `clip_depth_test_panic:<where>` panics at `where` (a stage name,
/// `worker` outside the per-frame guard, or `forward` in a camera's
/// forwarding task), and one whose frame_id is
/// `clip_depth_test_hang:<where>:<seconds>` stops there that long (a
/// forward pass that hangs), so that the end-to-end tests can show what a
/// panic or a stall costs. Absent from normal builds.
#[cfg(feature = "test-hooks")]
pub fn test_hook(place: &str, frame_id: &str) {
    if frame_id.strip_prefix(PANIC_MARK) == Some(place) {
        panic!("panic injected by the test hook at {place}");
    }
    if let Some((at, seconds)) = frame_id.strip_prefix(HANG_MARK).and_then(|r| r.split_once(':')) {
        if at == place {
            std::thread::sleep(std::time::Duration::from_secs_f64(seconds.parse().unwrap_or(1.0)));
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn test_hook(_place: &str, _frame_id: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervised_panic_comes_back_with_its_message_and_place() {
        install_panic_hook();
        assert_eq!(supervised(|| 7), Ok(7));
        let err = supervised(|| -> u8 { panic!("bad {}", 42) }).unwrap_err();
        assert!(err.starts_with("bad 42 at ") && err.contains("supervise.rs"), "{err}");
        // Nested: the inner one is caught inside, the outer goes on.
        let outer = supervised(|| supervised(|| panic!("inner")).unwrap_err());
        assert!(outer.unwrap().starts_with("inner"));
        assert!(!SUPERVISED.with(Cell::get), "the flag is restored");
    }

    #[test]
    fn a_panic_in_a_split_batch_pool_keeps_its_message() {
        install_panic_hook();
        // As a split CPU batch runs its groups: in the pools of
        // `clip_depth_ros::device::cpu_split`, waited for by this thread.
        let pools = clip_depth_ros::device::cpu_split::pools(2, 2).unwrap();
        let err = supervised(|| pools[1].install(|| -> u8 { panic!("group {} failed", 1) })).unwrap_err();
        assert!(err.starts_with("group 1 failed"), "{err}");
    }
}
