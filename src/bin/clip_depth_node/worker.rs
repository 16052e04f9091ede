//! The inference thread: takes the newest frame, pairs it with its
//! camera_info, runs the model, publishes depth, camera_info, cloud,
//! colormap and stats. A bad frame is skipped with a throttled warning
//! naming the reason; the thread never dies on user data.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nalgebra::Point3;
use r2r::clip_depth_msgs::msg::DepthStats;
use r2r::sensor_msgs::msg::{CameraInfo, Image, PointCloud2};
use r2r::std_msgs::msg::Header;
use r2r::Publisher;

use clip_depth_ros::image::colormap::{colorize, ColourOrder};
use clip_depth_ros::geometry::{
    depth_camera_info, write_point_cloud, Backprojector, CameraInfoData, PinholeIntrinsics, RangeLimits, SampleGrid,
};
use clip_depth_ros::image::ros_image::{decode_compressed, ModelImage, RawImage};
use clip_depth_ros::{DepthEstimator, ImageView};

use crate::camera_sync::{stamp_ns, Pairing};
use crate::frame_slot::{Frame, Payload, Shared};
use crate::messages::{camera_info_data, camera_info_msg, cloud_msg, image_msg, stats_msg, Counters, FrameStats};
use crate::params::Settings;
use crate::throttle::Throttle;

pub struct Outputs {
    pub depth: Publisher<Image>,
    pub depth_info: Publisher<CameraInfo>,
    pub cloud: Option<Publisher<PointCloud2>>,
    pub colormap: Option<Publisher<Image>>,
    pub stats: Publisher<DepthStats>,
}

/// Why a frame was not processed: a throttling key and a message.
struct Skip(&'static str, String);

fn skip(key: &'static str) -> impl FnOnce(String) -> Skip {
    move |msg| Skip(key, msg)
}

fn ms(d: Duration) -> f32 {
    (d.as_secs_f64() * 1e3) as f32
}

pub struct Worker {
    pub shared: Arc<Shared>,
    pub estimator: DepthEstimator,
    pub settings: Settings,
    pub outputs: Outputs,
    pub logger: String,
    pub device_name: String,
    throttle: Throttle,
    processed: u64,
    skipped: u64,
    range: RangeLimits,
    points: Vec<Point3<f32>>,
    cloud_buf: Vec<u8>,
    sorted: Vec<f32>,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        estimator: DepthEstimator,
        settings: Settings,
        outputs: Outputs,
        logger: String,
    ) -> Self {
        let (model_min, model_max) = estimator.depth_range();
        let min = if settings.min_range > 0.0 { settings.min_range } else { model_min };
        let max = if settings.max_range > 0.0 { settings.max_range } else { model_max };
        let device_name = format!("{} {}", settings.device, settings.dtype);
        Self {
            shared,
            estimator,
            settings,
            outputs,
            logger,
            device_name,
            throttle: Throttle::new(Duration::from_secs(5)),
            processed: 0,
            skipped: 0,
            range: RangeLimits::new(min, max),
            points: Vec::new(),
            cloud_buf: Vec::new(),
            sorted: Vec::new(),
        }
    }

    pub fn range(&self) -> RangeLimits {
        self.range
    }

    /// Logs at most once per 5 s per kind of message: the key is the
    /// category plus the message without its numbers, so a new reason shows
    /// at once while a repeating one (with changing sizes or stamps) does not.
    fn warn(&mut self, key: &'static str, msg: &str) {
        let kind: String = msg.chars().filter(|c| !c.is_ascii_digit()).collect();
        if self.throttle.allow(&format!("{key}: {kind}")) {
            r2r::log_warn!(&self.logger, "{msg}");
        }
    }

    pub fn run(mut self) {
        loop {
            let frame = {
                let mut state = self.shared.lock();
                loop {
                    if self.shared.shutting_down() {
                        return;
                    }
                    if let Some(frame) = state.frame.take() {
                        break frame;
                    }
                    state = self.shared.wait_until(state, Instant::now() + Duration::from_millis(200));
                }
            };
            if let Err(Skip(key, msg)) = self.process(frame) {
                self.skipped += 1;
                self.warn(key, &format!("frame skipped: {msg}"));
            }
        }
    }

    /// Waits up to the sync window for the camera_info with `stamp`.
    fn pair_camera_info(&mut self, stamp: i64, received: Instant) -> Option<CameraInfo> {
        let deadline = received + self.settings.sync_window;
        let pairing = {
            let mut state = self.shared.lock();
            loop {
                if let Some(info) = state.infos.exact(stamp) {
                    break Pairing::Exact(info);
                }
                if Instant::now() >= deadline || self.shared.shutting_down() {
                    break state.infos.pair(stamp, self.settings.use_latest_camera_info);
                }
                state = self.shared.wait_until(state, deadline);
            }
        };
        match pairing {
            Pairing::Exact(info) => Some(info),
            Pairing::Latest(info_stamp, info) => {
                let msg = format!(
                    "no camera_info with the image's stamp within {:.0} ms: using the newest one, {:.1} ms apart (use_latest_camera_info)",
                    self.settings.sync_window.as_secs_f64() * 1e3,
                    (stamp - info_stamp) as f64 / 1e6
                );
                self.warn("camera_info_latest", &msg);
                Some(info)
            }
            Pairing::None => {
                let empty = self.shared.lock().infos.is_empty();
                let msg = if empty {
                    "no camera_info received yet: publishing depth only (no depth/camera_info, no points)"
                } else {
                    "no camera_info with the image's stamp and use_latest_camera_info is false: publishing depth only"
                };
                self.warn("camera_info_none", msg);
                None
            }
        }
    }

    fn process(&mut self, frame: Frame) -> Result<(), Skip> {
        let started = Instant::now();
        let header = frame.header().clone();
        let stamp = stamp_ns(header.stamp.sec, header.stamp.nanosec);

        let image = match &frame.payload {
            Payload::Raw(m) => RawImage {
                encoding: &m.encoding,
                width: m.width,
                height: m.height,
                step: m.step,
                is_bigendian: m.is_bigendian != 0,
                data: &m.data,
            }
            .to_model_image(),
            Payload::Compressed(m) => decode_compressed(&m.format, &m.data).map(ModelImage::Owned),
        }
        .map_err(|e| Skip("decode", e.to_string()))?;
        let view = image.view().map_err(|e| Skip("decode", e.to_string()))?;
        let decode_ms = ms(started.elapsed());

        let info = match self.pair_camera_info(stamp, frame.received) {
            Some(msg) => Some(self.check_camera_info(&msg, &view)?),
            None => None,
        };

        let (w, h) = self.settings.output_size.unwrap_or((view.width(), view.height()));
        let (depth, timings) = self
            .estimator
            .estimate(&view, Some((w, h)))
            .map_err(|e| Skip("inference", e.to_string()))?;

        let t_post = Instant::now();
        let enc = self.settings.depth_encoding;
        let bytes = enc.encode(&depth.data, self.range.min, self.range.max);
        let depth_msg = image_msg(&header, w, h, enc.ros_encoding(), enc.bytes_per_pixel(), bytes);
        let depth_info = match &info {
            Some(input) => Some(depth_camera_info(input, w as u32, h as u32).map_err(|e| Skip("camera_info", e.to_string()))?),
            None => None,
        };
        let colormap_msg = self.outputs.colormap.as_ref().map(|_| {
            let px = colorize(&depth.data, self.range.min, self.range.max, ColourOrder::Bgr);
            image_msg(&header, w, h, "bgr8", 3, px)
        });
        let postprocess_ms = ms(t_post.elapsed());

        let t_cloud = Instant::now();
        let cloud = match (&self.outputs.cloud, &depth_info) {
            (Some(_), Some(dinfo)) => Some(self.build_cloud(&header, dinfo, &depth.data, w, h, &view)?),
            _ => None,
        };
        let cloud_ms = ms(t_cloud.elapsed());

        self.publish(&self.outputs.depth, &depth_msg);
        if let Some(dinfo) = &depth_info {
            self.publish(&self.outputs.depth_info, &camera_info_msg(&header, dinfo));
        }
        if let (Some(p), Some(msg)) = (&self.outputs.cloud, &cloud) {
            self.publish(p, msg);
        }
        if let (Some(p), Some(msg)) = (&self.outputs.colormap, &colormap_msg) {
            self.publish(p, msg);
        }
        if let Some(msg) = cloud {
            self.cloud_buf = msg.data; // reuse the allocation next frame
        }

        self.processed += 1;
        let (min, median, max) = self.depth_summary(&depth.data);
        let stats = FrameStats {
            decode_ms,
            preprocess_ms: ms(timings.preprocess),
            encoder_ms: ms(timings.encoder),
            decoder_ms: ms(timings.decoder),
            postprocess_ms: ms(timings.resize) + postprocess_ms,
            cloud_ms,
            latency_ms: latency_ms(stamp),
            total_ms: ms(started.elapsed()),
            depth_min: min,
            depth_median: median,
            depth_max: max,
        };
        let counters = {
            let state = self.shared.lock();
            Counters {
                received: state.received,
                processed: self.processed,
                dropped_stale: state.dropped_stale,
                skipped_invalid: self.skipped,
            }
        };
        let msg = stats_msg(&header, &stats, &counters, self.estimator.model_name(), &self.device_name);
        self.publish(&self.outputs.stats, &msg);
        Ok(())
    }

    /// The camera_info must describe this image and give usable intrinsics.
    fn check_camera_info(&self, msg: &CameraInfo, view: &ImageView<'_>) -> Result<CameraInfoData, Skip> {
        let info = camera_info_data(msg).map_err(skip("camera_info"))?;
        let (iw, ih) = info.image_size();
        if (iw as usize, ih as usize) != (view.width(), view.height()) {
            return Err(Skip(
                "camera_info",
                format!(
                    "camera_info describes a {iw}x{ih} image (after ROI/binning) but the image is {}x{}",
                    view.width(),
                    view.height()
                ),
            ));
        }
        PinholeIntrinsics::from_camera_info(&info).map_err(|e| Skip("camera_info", e.to_string()))?;
        Ok(info)
    }

    fn build_cloud(
        &mut self,
        header: &Header,
        depth_info: &CameraInfoData,
        depth: &[f32],
        w: usize,
        h: usize,
        colour: &ImageView<'_>,
    ) -> Result<PointCloud2, Skip> {
        let intrinsics = PinholeIntrinsics::from_camera_info(depth_info).map_err(|e| Skip("camera_info", e.to_string()))?;
        let grid = SampleGrid::new(w, h, self.settings.cloud_decimation);
        Backprojector::new(intrinsics, grid)
            .backproject_into(depth, self.range, &mut self.points)
            .map_err(|e| Skip("cloud", e.to_string()))?;
        let colour = self.settings.cloud_rgb.then_some(colour);
        let mut buf = std::mem::take(&mut self.cloud_buf);
        let layout = write_point_cloud(&self.points, &grid, colour, &mut buf).map_err(|e| Skip("cloud", e.to_string()))?;
        Ok(cloud_msg(header, &layout, buf))
    }

    fn publish<T: r2r::WrappedTypesupport + 'static>(&self, publisher: &Publisher<T>, msg: &T) {
        // After shutdown the node is gone: a late frame is dropped quietly.
        if self.shared.shutting_down() {
            return;
        }
        if let Err(e) = publisher.publish(msg) {
            r2r::log_error!(&self.logger, "publish failed: {e}");
        }
    }

    /// min, median, max of the valid depth values: those published as finite
    /// numbers, i.e. within [min_range, max_range].
    fn depth_summary(&mut self, depth: &[f32]) -> (f32, f32, f32) {
        let range = self.range;
        self.sorted.clear();
        self.sorted.extend(depth.iter().copied().filter(|&d| range.contains(d)));
        if self.sorted.is_empty() {
            return (f32::NAN, f32::NAN, f32::NAN);
        }
        let mid = self.sorted.len() / 2;
        let (_, median, _) = self.sorted.select_nth_unstable_by(mid, f32::total_cmp);
        let median = *median;
        let (min, max) = self.sorted.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        (min, median, max)
    }
}

/// Now minus the image stamp, in ms (system clock = ROS time without sim time).
fn latency_ms(stamp: i64) -> f32 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    ((now - stamp) as f64 / 1e6) as f32
}
