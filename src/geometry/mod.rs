//! Pure geometry between a depth map and the ROS messages built from it, in
//! the spirit of image_pipeline's depth_image_proc: plain data in, plain data
//! out, no ROS types, so every conversion can be unit-tested without a graph.
//!
//! - [`intrinsics`]: `sensor_msgs/CameraInfo` as plain data, pinhole
//!   intrinsics (P with ROI/binning), resizing like image_proc/resize, and
//!   the camera_info a published depth image needs.
//! - [`backproject`]: depth map to organised XYZ (optionally decimated).
//! - [`pointcloud`]: XYZ (+ colour) to `sensor_msgs/PointCloud2` bytes.
//! - [`depth_image`]: REP 117 `32FC1` / `16UC1` depth image bytes, and the
//!   range test from a node's `min_range` / `max_range`.
//! - [`camera_info`]: whether a camera_info describes a given image.
//! - [`depth_summary`]: min / median / max of the published readings.
//! - [`rigid`]: rigid transforms between frames (TF).

pub mod backproject;
pub mod camera_info;
pub mod depth_image;
pub mod depth_summary;
pub mod intrinsics;
pub mod pointcloud;
pub mod rigid;

pub use backproject::{backproject, Backprojector, SampleGrid};
pub use camera_info::check_camera_info;
pub use depth_image::{
    from_32fc1_bytes, resolve_range, to_16uc1_bytes, to_32fc1_bytes, DepthClass, DepthEncoding, RangeError,
    RangeLimits,
};
pub use depth_summary::DepthSummary;
pub use rigid::Rigid;
pub use intrinsics::{
    bake_roi_and_binning, depth_camera_info, scale_camera_info, CameraInfoData, PinholeIntrinsics,
    RegionOfInterest,
};
pub use pointcloud::{write_point_cloud, PointCloudLayout, PointField};
