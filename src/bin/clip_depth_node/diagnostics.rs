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

use clip_depth_ros::node::{HealthReport, Level};

use crate::frame_slot::Shared;
use crate::params::{lock_live, Live};

pub struct Diagnostics {
    pub shared: Arc<Shared>,
    pub live: Arc<Mutex<Live>>,
    pub publisher: Publisher<DiagnosticArray>,
    /// The node's name, first word of every status name.
    pub node_name: String,
    pub cameras: Vec<String>,
    pub period: Duration,
    pub model: String,
    pub device: String,
    pub logger: String,
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
            if let Err(e) = self.publisher.publish(&msg) {
                r2r::log_error!(&self.logger, "publishing /diagnostics failed: {e}");
            }
        }
    }

    fn array(&self, now: Instant) -> DiagnosticArray {
        // Live first, then the slots: never both locks at once.
        let thresholds = lock_live(&self.live).resolved().thresholds;
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
        drop(state);
        let mean = if b.batches == 0 { 0.0 } else { b.frames as f64 / b.batches as f64 };
        statuses.push(status(
            Level::Ok,
            format!("{}: inference", self.node_name),
            format!("{} on {}, {} camera(s)", self.model, self.device, self.cameras.len()),
            self.device.clone(),
            vec![
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
