//! The hand-over between the ROS callbacks and the inference thread: per
//! camera, one slot for the newest frame (a frame replaced before it was
//! taken is counted as dropped, never queued), a bounded camera_info cache,
//! and the camera's health counters; plus what the diagnostics report about
//! the forward passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_msgs::msg::Header;

use clip_depth_ros::node::CameraHealth;

use crate::camera_sync::{stamp_ns, CameraInfoCache};

pub enum Payload {
    Raw(Image),
    Compressed(CompressedImage),
}

pub struct ReceivedFrame {
    pub payload: Payload,
    pub received: Instant,
}

impl Payload {
    pub fn header(&self) -> &Header {
        match self {
            Payload::Raw(m) => &m.header,
            Payload::Compressed(m) => &m.header,
        }
    }
}

impl ReceivedFrame {
    pub fn header(&self) -> &Header {
        self.payload.header()
    }
}

/// How many camera_infos are kept for stamp matching (about 1 s at 30 Hz).
const CAMERA_INFO_HISTORY: usize = 32;

pub struct CameraSlot {
    pub frame: Option<ReceivedFrame>,
    pub infos: CameraInfoCache<CameraInfo>,
    pub health: CameraHealth,
    /// The frame_id of the last image (the hardware id in /diagnostics).
    pub frame_id: String,
}

/// The forward passes so far.
#[derive(Debug, Default, Clone)]
pub struct BatchCounters {
    pub batches: u64,
    pub frames: u64,
    pub last_size: usize,
    pub last_forward_ms: f32,
    /// When the pass now running started (None between passes).
    pub pass_started: Option<Instant>,
    /// The inference thread's last step forward: a batch taken or a pass
    /// finished (None before the first).
    pub last_progress: Option<Instant>,
}

impl BatchCounters {
    /// How long work has waited without progress: a pass running, or
    /// frames waiting, since the last step forward (or since `started`).
    pub fn stalled_for(&self, now: Instant, pending_frames: usize, started: Instant) -> Duration {
        if self.pass_started.is_none() && pending_frames == 0 {
            return Duration::ZERO;
        }
        now.saturating_duration_since(self.last_progress.unwrap_or(started))
    }
}

pub struct State {
    pub cameras: Vec<CameraSlot>,
    pub batches: BatchCounters,
}

pub struct FrameSlots {
    state: Mutex<State>,
    wake: Condvar,
    shutdown: AtomicBool,
}

impl FrameSlots {
    pub fn new(cameras: usize) -> Self {
        let started = Instant::now();
        Self {
            state: Mutex::new(State {
                cameras: (0..cameras)
                    .map(|_| CameraSlot {
                        frame: None,
                        infos: CameraInfoCache::new(CAMERA_INFO_HISTORY),
                        health: CameraHealth::new(started),
                        frame_id: String::new(),
                    })
                    .collect(),
                batches: BatchCounters::default(),
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

    pub fn put_frame(&self, camera: usize, payload: Payload) {
        let frame = ReceivedFrame { payload, received: Instant::now() };
        let mut state = self.lock();
        let slot = &mut state.cameras[camera];
        slot.health.image_received(frame.received);
        if slot.frame_id != frame.header().frame_id {
            slot.frame_id = frame.header().frame_id.clone();
        }
        if slot.frame.replace(frame).is_some() {
            slot.health.dropped_stale += 1;
        }
        drop(state);
        self.wake.notify_all();
    }

    pub fn put_camera_info(&self, camera: usize, info: CameraInfo) {
        let stamp = stamp_ns(info.header.stamp.sec, info.header.stamp.nanosec);
        let mut state = self.lock();
        let slot = &mut state.cameras[camera];
        slot.health.camera_info_received(Instant::now());
        slot.infos.push(stamp, info);
        drop(state);
        self.wake.notify_all();
    }

    /// Waits on the slots' condition (new frame, new camera_info, shutdown)
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
