//! Pixels: borrowed frames in ROS encodings, Pillow-exact resampling, the
//! model's preprocessing (on the CPU or the device), depth resizing and
//! colour maps. Below the models: nothing here knows a model.

pub mod colormap;
pub mod device_preprocess;
pub mod pil_geometry;
pub mod pil_resize;
pub mod postprocess;
pub mod preprocess;
pub mod ros_image;
mod packed_rgb;
mod view;

pub use packed_rgb::PackedRgb;
pub use view::{ImageView, PixelFormat};
