//! Monocular metric depth with candle (SPACE-CLIP, DepthCLIP, DepthBLIP-2),
//! plus the pure geometry a ROS depth node needs. Nothing in this library
//! depends on ROS.
//!
//! The modules form layers, and each uses only its own layer and the ones
//! below it (docs/architecture.md draws them; tests/layers.rs checks every
//! `crate::` path against this order):
//!
//! 1. foundations: [`error`], [`rng`], [`progress`], [`config_text`], [`device`]
//! 2. [`kernels`]: the CPU hot loops behind the layers
//! 3. [`image`], [`geometry`]: pixels and resampling; intrinsics, clouds, transforms
//! 4. [`weights`]: tensor files and the names other formats give tensors
//! 5. [`model`]: the families (one folder each) and what they share
//! 6. [`data`]: datasets, recordings, synthetic scenes
//! 7. [`eval`]: the evaluation protocol and metrics
//! 8. [`train`]: the trainers (SPACE-CLIP's decoder, the bin heads' MLP)
//! 9. [`estimator`]: frames in, depth maps out, for any family
//! 10. [`node`]: the ROS-free logic of a depth node (the binaries sit on top)

pub mod config_text;
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
