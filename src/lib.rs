//! Monocular metric depth with candle (SPACE-CLIP), plus the pure geometry a
//! ROS depth node needs. Nothing in this library depends on ROS.

pub mod data;
pub mod device;
pub mod error;
pub mod estimator;
pub mod eval;
pub mod geometry;
pub mod image;
pub mod kernels;
pub mod model;
pub mod node;
pub mod progress;
pub mod rng;
pub mod train;
pub mod weights;

pub use device::{retain_freed_memory, tune_cpu_runtime, DeviceSpec, ModelDType};
pub use error::{Error, Result};
pub use estimator::{DepthEstimator, DepthMap, DepthModel, ModelFamily, ModelFiles, ModelOverrides, StageTimings};
pub use image::{ImageView, PixelFormat};
