//! The pure logic of a depth node serving several cameras with one model,
//! kept free of ROS so that it can be unit-tested without a graph (the r2r
//! adapter is `src/bin/clip_depth_node`).
//!
//! - [`cameras`]: camera names and the relative topic names they give.
//! - [`output_size`]: a depth image size with either side following the camera.
//! - [`live`]: the parameters that can change while the node runs, validated
//!   together into per-camera settings.
//! - [`batching`]: which pending frames go into the next forward pass.
//! - [`health`]: per-camera rates, counters and latencies, and the
//!   OK / WARN / ERROR level a `/diagnostics` status reports.
//! - [`ros_args`]: start-up parameter values as the last of the command
//!   line's sources sets them (rcl mixes values of different types).

pub mod batching;
pub mod cameras;
pub mod health;
pub mod live;
pub mod output_size;
pub mod ros_args;

pub use batching::{plan_batch, BatchPlan};
pub use cameras::{camera_topic, parse_camera_names, CameraNameError, MAX_CAMERAS};
pub use health::{inference_level, CameraHealth, HealthReport, HealthThresholds, Level};
pub use live::{CameraSettings, LiveConfig, LiveError, LiveValue, NodeSettings, SharedTunables};
pub use output_size::{OutputSize, OutputSizeError};
