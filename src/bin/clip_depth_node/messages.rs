//! Conversions between r2r messages and the library's plain types. The
//! library stays ROS-free; this file is the whole translation.

use r2r::clip_depth_msgs::msg::DepthStats;
use r2r::sensor_msgs::msg::{CameraInfo, Image, PointCloud2, PointField, RegionOfInterest as RoiMsg};
use r2r::std_msgs::msg::Header;

use clip_depth_ros::geometry::{CameraInfoData, PointCloudLayout, RegionOfInterest};

fn fixed<const N: usize>(name: &str, v: &[f64]) -> Result<[f64; N], String> {
    v.try_into().map_err(|_| format!("camera_info.{name} has {} values, expected {N}", v.len()))
}

pub fn camera_info_data(msg: &CameraInfo) -> Result<CameraInfoData, String> {
    Ok(CameraInfoData {
        width: msg.width,
        height: msg.height,
        distortion_model: msg.distortion_model.clone(),
        d: msg.d.clone(),
        k: fixed("k", &msg.k)?,
        r: fixed("r", &msg.r)?,
        p: fixed("p", &msg.p)?,
        binning_x: msg.binning_x,
        binning_y: msg.binning_y,
        roi: RegionOfInterest {
            x_offset: msg.roi.x_offset,
            y_offset: msg.roi.y_offset,
            width: msg.roi.width,
            height: msg.roi.height,
            do_rectify: msg.roi.do_rectify,
        },
    })
}

pub fn camera_info_msg(header: &Header, info: &CameraInfoData) -> CameraInfo {
    CameraInfo {
        header: header.clone(),
        width: info.width,
        height: info.height,
        distortion_model: info.distortion_model.clone(),
        d: info.d.clone(),
        k: info.k.to_vec(),
        r: info.r.to_vec(),
        p: info.p.to_vec(),
        binning_x: info.binning_x,
        binning_y: info.binning_y,
        roi: RoiMsg {
            x_offset: info.roi.x_offset,
            y_offset: info.roi.y_offset,
            width: info.roi.width,
            height: info.roi.height,
            do_rectify: info.roi.do_rectify,
        },
    }
}

/// An image message around already-encoded little-endian pixel bytes.
pub fn image_msg(header: &Header, width: usize, height: usize, encoding: &str, bytes_per_pixel: usize, data: Vec<u8>) -> Image {
    Image {
        header: header.clone(),
        width: width as u32,
        height: height as u32,
        encoding: encoding.to_string(),
        is_bigendian: 0,
        step: (width * bytes_per_pixel) as u32,
        data,
    }
}

pub fn cloud_msg(header: &Header, layout: &PointCloudLayout, data: Vec<u8>) -> PointCloud2 {
    PointCloud2 {
        header: header.clone(),
        width: layout.width,
        height: layout.height,
        fields: layout
            .fields
            .iter()
            .map(|f| PointField { name: f.name.to_string(), offset: f.offset, datatype: f.datatype, count: f.count })
            .collect(),
        is_bigendian: layout.is_bigendian,
        point_step: layout.point_step,
        row_step: layout.row_step,
        data,
        is_dense: layout.is_dense,
    }
}

/// Per-frame figures for `~/stats`.
#[derive(Debug, Clone, Default)]
pub struct FrameStats {
    pub decode_ms: f32,
    pub preprocess_ms: f32,
    pub encoder_ms: f32,
    pub decoder_ms: f32,
    pub postprocess_ms: f32,
    pub cloud_ms: f32,
    pub latency_ms: f32,
    pub total_ms: f32,
    pub depth_min: f32,
    pub depth_median: f32,
    pub depth_max: f32,
}

pub struct Counters {
    pub received: u64,
    pub processed: u64,
    pub dropped_stale: u64,
    pub skipped_invalid: u64,
    pub failed: u64,
}

#[allow(clippy::too_many_arguments)]
pub fn stats_msg(
    header: &Header,
    s: &FrameStats,
    c: &Counters,
    model_name: &str,
    device: &str,
    camera: &str,
    batch_size: usize,
) -> DepthStats {
    DepthStats {
        header: header.clone(),
        decode_ms: s.decode_ms,
        preprocess_ms: s.preprocess_ms,
        encoder_ms: s.encoder_ms,
        decoder_ms: s.decoder_ms,
        postprocess_ms: s.postprocess_ms,
        cloud_ms: s.cloud_ms,
        latency_ms: s.latency_ms,
        total_ms: s.total_ms,
        frames_received: c.received,
        frames_processed: c.processed,
        frames_dropped_stale: c.dropped_stale,
        frames_skipped_invalid: c.skipped_invalid,
        frames_failed: c.failed,
        depth_min: s.depth_min,
        depth_median: s.depth_median,
        depth_max: s.depth_max,
        model_name: model_name.to_string(),
        device: device.to_string(),
        camera: camera.to_string(),
        batch_size: batch_size as u32,
    }
}
