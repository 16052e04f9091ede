//! `/diagnostics`: once a period, one `diagnostic_msgs/DiagnosticStatus`
//! per camera (levels and figures from the library's `CameraHealth`) and
//! one for the shared forward passes, as diagnostic_updater would publish
//! them, so that rqt_robot_monitor and diagnostic_aggregator show the node.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use r2r::builtin_interfaces::msg::Time;
use r2r::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
use r2r::std_msgs::msg::Header;
use r2r::Publisher;

use clip_depth_ros::node::{inference_level, HealthReport, Level};

use crate::frame_slot::FrameSlots;
use crate::params::{lock_live, LiveParams};

pub struct Diagnostics {
    pub shared: Arc<FrameSlots>,
    pub live: Arc<Mutex<LiveParams>>,
    pub publisher: Publisher<DiagnosticArray>,
    /// The node's name, first word of every status name.
    pub node_name: String,
    pub cameras: Vec<String>,
    pub period: Duration,
    pub model: String,
    pub device: String,
    pub logger: String,
    /// When the node started serving (a stall before the first pass counts from it).
    pub started: Instant,
    /// The inference status level last published, to log its changes.
    pub inference_level: std::cell::Cell<u8>,
}

fn status(level: Level, name: String, message: String, hardware_id: String, values: Vec<(String, String)>) -> DiagnosticStatus {
    DiagnosticStatus {
        level: level as u8,
        name,
        message,
        hardware_id,
        values: values.into_iter().map(|(key, value)| KeyValue { key, value }).collect(),
    }
}

impl Diagnostics {
    /// Publishes every `period` until shutdown.
    pub fn run(self) {
        let mut next = Instant::now() + self.period;
        loop {
            {
                let mut state = self.shared.lock();
                while Instant::now() < next && !self.shared.shutting_down() {
                    state = self.shared.wait_until(state, next);
                }
            }
            if self.shared.shutting_down() {
                return;
            }
            next += self.period;
            let now = Instant::now();
            if next < now {
                next = now + self.period; // after a stall, no burst
            }
            let msg = self.array(now);
            self.log_inference_level(&msg);
            if let Err(e) = self.publisher.publish(&msg) {
                r2r::log_error!(&self.logger, "publishing /diagnostics failed: {e}");
            }
        }
    }

    /// Says in the log when the inference stalls or recovers (once per change).
    fn log_inference_level(&self, msg: &DiagnosticArray) {
        let Some(inference) = msg.status.last() else { return };
        let before = self.inference_level.replace(inference.level);
        if before == inference.level {
            return;
        }
        if inference.level >= Level::Warn as u8 {
            r2r::log_error!(
                &self.logger,
                "{}; the node keeps the stuck pass (it cannot be interrupted) and carries on when it returns; \
                 a supervisor can restart the node on this /diagnostics ERROR",
                inference.message
            );
        } else if before >= Level::Warn as u8 {
            r2r::log_info!(&self.logger, "the inference runs again: {}", inference.message);
        }
    }

    fn array(&self, now: Instant) -> DiagnosticArray {
        // LiveParams first, then the slots: never both locks at once.
        let resolved = lock_live(&self.live).resolved();
        let thresholds = resolved.thresholds;
        let state = self.shared.lock();
        let mut statuses = Vec::with_capacity(self.cameras.len() + 1);
        for (name, slot) in self.cameras.iter().zip(&state.cameras) {
            let HealthReport { level, message, values } = slot.health.report(now, &thresholds);
            let title = if name.is_empty() {
                format!("{}: camera", self.node_name)
            } else {
                format!("{}: camera {name}", self.node_name)
            };
            statuses.push(status(level, title, message, slot.frame_id.clone(), values));
        }
        let b = state.batches.clone();
        let pending = state.cameras.iter().filter(|c| c.frame.is_some()).count();
        drop(state);
        let mean = if b.batches == 0 { 0.0 } else { b.frames as f64 / b.batches as f64 };
        let stalled_for = b.stalled_for(now, pending, self.started);
        let (level, stall) = inference_level(stalled_for, pending, &resolved.inference_thresholds);
        let serving = format!("{} on {}, {} camera(s)", self.model, self.device, self.cameras.len());
        statuses.push(status(
            level,
            format!("{}: inference", self.node_name),
            stall.map_or(serving.clone(), |s| format!("{s} ({serving})")),
            self.device.clone(),
            vec![
                ("stalled for [s]".into(), format!("{:.1}", stalled_for.as_secs_f64())),
                ("forward pass running".into(), b.pass_started.is_some().to_string()),
                ("frames waiting".into(), pending.to_string()),
                ("forward passes".into(), b.batches.to_string()),
                ("frames inferred".into(), b.frames.to_string()),
                ("mean batch size".into(), format!("{mean:.2}")),
                ("last batch size".into(), b.last_size.to_string()),
                ("last forward pass [ms]".into(), format!("{:.1}", b.last_forward_ms)),
            ],
        ));
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        DiagnosticArray {
            header: Header {
                stamp: Time { sec: since.as_secs() as i32, nanosec: since.subsec_nanos() },
                frame_id: String::new(),
            },
            status: statuses,
        }
    }
}
