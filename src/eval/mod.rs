//! Evaluation: the standard metrics and the authors' validation protocol,
//! and the picture of a prediction next to its ground truth.

pub mod config;
pub mod metrics;
pub mod protocol;
pub mod visuals;

pub use config::EvalConfig;
pub use metrics::{compute_errors, Metrics, RunningMetrics, NAMES};
pub use protocol::{crop_rect, EvalCrop, NonFinite, Protocol};
