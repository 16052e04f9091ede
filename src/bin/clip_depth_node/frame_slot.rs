//! The hand-over between the ROS callbacks and the inference thread: one
//! slot for the newest frame (a frame replaced before it was taken is
//! counted as dropped, never queued) and a bounded camera_info cache.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_msgs::msg::Header;

use crate::camera_sync::{stamp_ns, CameraInfoCache};

pub enum Payload {
    Raw(Image),
    Compressed(CompressedImage),
}

pub struct Frame {
    pub payload: Payload,
    pub received: Instant,
}

impl Frame {
    pub fn header(&self) -> &Header {
        match &self.payload {
            Payload::Raw(m) => &m.header,
            Payload::Compressed(m) => &m.header,
        }
    }
}

/// How many camera_infos are kept for stamp matching (about 1 s at 30 Hz).
const CAMERA_INFO_HISTORY: usize = 32;

pub struct State {
    pub frame: Option<Frame>,
    pub infos: CameraInfoCache<CameraInfo>,
    pub received: u64,
    pub dropped_stale: u64,
}

pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    shutdown: AtomicBool,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                frame: None,
                infos: CameraInfoCache::new(CAMERA_INFO_HISTORY),
                received: 0,
                dropped_stale: 0,
            }),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain counters and options: keep going with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn put_frame(&self, payload: Payload) {
        let frame = Frame { payload, received: Instant::now() };
        let mut state = self.lock();
        state.received += 1;
        if state.frame.replace(frame).is_some() {
            state.dropped_stale += 1;
        }
        drop(state);
        self.wake.notify_all();
    }

    pub fn put_camera_info(&self, info: CameraInfo) {
        let stamp = stamp_ns(info.header.stamp.sec, info.header.stamp.nanosec);
        self.lock().infos.push(stamp, info);
        self.wake.notify_all();
    }

    /// Waits on the slot's condition (new frame, new camera_info, shutdown)
    /// until `deadline`.
    pub fn wait_until<'a>(&self, guard: MutexGuard<'a, State>, deadline: Instant) -> MutexGuard<'a, State> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.wake.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }
}
