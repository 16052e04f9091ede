//! SPACE-CLIP monocular metric depth with candle, plus the pure geometry a
//! ROS depth node needs. Nothing in this library depends on ROS.

pub mod bilinear;
pub mod colormap;
pub mod config;
pub mod device;
pub mod device_memory;
pub mod device_preprocess;
pub mod error;
pub mod estimator;
pub mod geometry;
pub mod image_view;
pub mod model;
pub mod pil_resize;
pub mod postprocess;
pub mod preprocess;
pub mod weights;
pub mod ros_image;

pub use error::{Error, Result};
pub use image_view::{ImageView, PixelFormat};
pub use device::{tune_cpu_runtime, DeviceSpec, ModelDType};
pub use estimator::{DepthEstimator, DepthMap, ModelFiles, StageTimings};
