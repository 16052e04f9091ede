//! The inference thread: takes the newest frame, pairs it with its
//! camera_info, runs the model, publishes depth, camera_info, cloud,
//! colormap and stats. A bad frame is skipped with a throttled warning
//! naming the reason; a panic while processing a frame costs that frame
//! (counted, throttled error naming the stage); the thread goes on.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nalgebra::Point3;
use r2r::clip_depth_msgs::msg::DepthStats;
use r2r::sensor_msgs::msg::{CameraInfo, Image, PointCloud2};
use r2r::std_msgs::msg::Header;
use r2r::Publisher;

use clip_depth_ros::geometry::{
    check_camera_info, depth_camera_info, write_point_cloud, Backprojector, CameraInfoData, DepthSummary,
    PinholeIntrinsics, RangeLimits, SampleGrid,
};
use clip_depth_ros::image::colormap::{colorize, ColourOrder};
use clip_depth_ros::image::ros_image::{decode_compressed, ModelImage, RawImage};
use clip_depth_ros::{DepthEstimator, ImageView};

use crate::camera_sync::{stamp_ns, MatchingChange, Pairing, StampMatching};
use crate::frame_slot::{Frame, Payload, Shared};
use crate::messages::{camera_info_data, camera_info_msg, cloud_msg, image_msg, stats_msg, Counters, FrameStats};
use crate::params::Settings;
use crate::supervise::{supervised, test_hook, Stage};
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

fn skip<E: ToString>(key: &'static str) -> impl FnOnce(E) -> Skip {
    move |e| Skip(key, e.to_string())
}

fn ms(d: Duration) -> f32 {
    (d.as_secs_f64() * 1e3) as f32
}

pub struct Worker {
    shared: Arc<Shared>,
    estimator: DepthEstimator,
    settings: Settings,
    outputs: Outputs,
    logger: String,
    device_name: String,
    throttle: Throttle,
    processed: u64,
    skipped: u64,
    failed: u64,
    /// The stage the current frame is in, for the error if it panics.
    stage: Stage,
    range: RangeLimits,
    matching: StampMatching,
    points: Vec<Point3<f32>>,
    cloud_buf: Vec<u8>,
    scratch: Vec<f32>,
}

impl Worker {
    /// `range`: the validated range test (`resolve_range`).
    pub fn new(
        shared: Arc<Shared>,
        estimator: DepthEstimator,
        settings: Settings,
        range: RangeLimits,
        outputs: Outputs,
        logger: String,
    ) -> Self {
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
            failed: 0,
            stage: Stage::Decode,
            range,
            matching: StampMatching::default(),
            points: Vec::new(),
            cloud_buf: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Throttled per kind of message: the key is the category plus the
    /// message without its numbers, so a new reason shows at once while a
    /// repeating one (with changing sizes or stamps) does not.
    fn allow(&mut self, key: &str, msg: &str) -> bool {
        let kind: String = msg.chars().filter(|c| !c.is_ascii_digit()).collect();
        self.throttle.allow(&format!("{key}: {kind}"))
    }

    fn warn(&mut self, key: &'static str, msg: &str) {
        if self.allow(key, msg) {
            r2r::log_warn!(&self.logger, "{msg}");
        }
    }

    /// Processes frames until shutdown. Returns only then: a panic outside
    /// the per-frame guard ends the thread, which `main` turns into an exit.
    pub fn run(mut self) {
        while let Some(frame) = self.next_frame() {
            test_hook("worker", &frame.header().frame_id);
            self.stage = Stage::Decode;
            match supervised(|| self.process(frame)) {
                Ok(Ok(())) => {}
                Ok(Err(Skip(key, msg))) => {
                    self.skipped += 1;
                    self.warn(key, &format!("frame skipped: {msg}"));
                }
                Err(panic) => {
                    self.failed += 1;
                    let stage = self.stage.name();
                    if self.allow(stage, "panic") {
                        r2r::log_error!(
                            &self.logger,
                            "frame lost: internal error in stage {stage}: {panic} ({} frame(s) lost so far; carrying on)",
                            self.failed
                        );
                    }
                }
            }
        }
    }

    /// The newest frame, waiting for one; `None` at shutdown.
    fn next_frame(&self) -> Option<Frame> {
        let mut state = self.shared.lock();
        loop {
            if self.shared.shutting_down() {
                return None;
            }
            if let Some(frame) = state.frame.take() {
                return Some(frame);
            }
            state = self.shared.wait_until(state, Instant::now() + Duration::from_millis(200));
        }
    }

    /// Marks the start of a stage (and lets a test build panic there).
    fn enter(&mut self, stage: Stage, header: &Header) {
        self.stage = stage;
        test_hook(stage.name(), &header.frame_id);
    }

    /// The camera_info with the frame's stamp, waiting for it up to the sync
    /// window while stamps are known to match (see [`StampMatching`]);
    /// otherwise the newest one at once when `use_latest_camera_info`.
    fn pair_camera_info(&mut self, stamp: i64, received: Instant) -> Option<CameraInfo> {
        let late = {
            let state = self.shared.lock();
            self.matching.check_late(|s| state.infos.contains(s))
        };
        self.log_matching(late);
        let window = if self.matching.waiting() { self.settings.sync_window } else { Duration::ZERO };
        let deadline = received + window;
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
        let change = self.matching.record(stamp, matches!(pairing, Pairing::Exact(_)));
        self.log_matching(change);
        match pairing {
            Pairing::Exact(info) => Some(info),
            Pairing::Latest(info_stamp, info) => {
                // Once stamps are known not to match, that was said once
                // (log_matching); no warning per frame for it.
                if !window.is_zero() {
                    let msg = format!(
                        "no camera_info with the image's stamp within {:.0} ms: using the newest one, {:.1} ms apart \
                         (use_latest_camera_info)",
                        window.as_secs_f64() * 1e3,
                        (stamp - info_stamp) as f64 / 1e6
                    );
                    self.warn("camera_info_latest", &msg);
                }
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

    fn log_matching(&mut self, change: Option<MatchingChange>) {
        match change {
            Some(MatchingChange::StopWaiting(frames)) => {
                let then = if self.settings.use_latest_camera_info {
                    "pairing each image with the newest camera_info at once (use_latest_camera_info)"
                } else {
                    "publishing depth without camera_info at once (use_latest_camera_info is false)"
                };
                let msg = format!(
                    "camera_info stamps matched no image for {frames} frames in a row: no longer waiting \
                     camera_info_sync_window ({:.0} ms) for them; {then}",
                    self.settings.sync_window.as_secs_f64() * 1e3
                );
                self.warn("camera_info_matching", &msg);
            }
            Some(MatchingChange::WaitAgain) => r2r::log_info!(
                &self.logger,
                "a camera_info arrived with an earlier image's exact stamp: waiting up to camera_info_sync_window again"
            ),
            None => {}
        }
    }

    fn process(&mut self, frame: Frame) -> Result<(), Skip> {
        let started = Instant::now();
        let header = frame.header().clone();
        let stamp = stamp_ns(header.stamp.sec, header.stamp.nanosec);

        self.enter(Stage::Decode, &header);
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
        .map_err(skip("decode"))?;
        let view = image.view().map_err(skip("decode"))?;
        let decode_ms = ms(started.elapsed());

        self.enter(Stage::CameraInfo, &header);
        let info = match self.pair_camera_info(stamp, frame.received) {
            Some(msg) => {
                let data = camera_info_data(&msg).map_err(skip("camera_info"))?;
                check_camera_info(&data, view.width(), view.height()).map_err(skip("camera_info"))?;
                Some(data)
            }
            None => None,
        };

        self.enter(Stage::Inference, &header);
        let (w, h) = self.settings.output_size.unwrap_or((view.width(), view.height()));
        // The model's own values: the range test below must see a pixel
        // beyond max_range as such, not saturated to max_depth.
        let (mut maps, timings) =
            self.estimator.estimate_sized_raw(&[view], &[(w, h)]).map_err(skip("inference"))?;
        let depth = maps.pop().ok_or_else(|| Skip("inference", "the model returned no depth".into()))?.data;

        self.enter(Stage::DepthImage, &header);
        let t_post = Instant::now();
        let enc = self.settings.depth_encoding;
        let bytes = enc.encode(&depth, self.range.min, self.range.max);
        let depth_msg = image_msg(&header, w, h, enc.ros_encoding(), enc.bytes_per_pixel(), bytes);
        let depth_info = match &info {
            Some(input) => Some(depth_camera_info(input, w as u32, h as u32).map_err(skip("camera_info"))?),
            None => None,
        };
        self.enter(Stage::Colormap, &header);
        let colormap_msg = self.outputs.colormap.as_ref().map(|_| {
            let px = colorize(&depth, self.range.min, self.range.max, ColourOrder::Bgr);
            image_msg(&header, w, h, "bgr8", 3, px)
        });
        let postprocess_ms = ms(t_post.elapsed());

        self.enter(Stage::Cloud, &header);
        let t_cloud = Instant::now();
        let cloud = match (&self.outputs.cloud, &depth_info) {
            (Some(_), Some(dinfo)) => Some(self.build_cloud(&header, dinfo, &depth, w, h, &view)?),
            _ => None,
        };
        let cloud_ms = ms(t_cloud.elapsed());

        self.enter(Stage::Publish, &header);
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

        self.enter(Stage::Stats, &header);
        self.processed += 1;
        let summary = DepthSummary::of(&depth, self.range, &mut self.scratch);
        let stats = FrameStats {
            decode_ms,
            preprocess_ms: ms(timings.preprocess),
            encoder_ms: ms(timings.encoder),
            decoder_ms: ms(timings.decoder),
            postprocess_ms: ms(timings.resize) + postprocess_ms,
            cloud_ms,
            latency_ms: latency_ms(stamp),
            total_ms: ms(started.elapsed()),
            depth_min: summary.min,
            depth_median: summary.median,
            depth_max: summary.max,
        };
        let counters = {
            let state = self.shared.lock();
            Counters {
                received: state.received,
                processed: self.processed,
                dropped_stale: state.dropped_stale,
                skipped_invalid: self.skipped,
                failed: self.failed,
            }
        };
        let msg = stats_msg(&header, &stats, &counters, self.estimator.model_name(), &self.device_name);
        self.publish(&self.outputs.stats, &msg);
        Ok(())
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
        let intrinsics = PinholeIntrinsics::from_camera_info(depth_info).map_err(skip("camera_info"))?;
        let grid = SampleGrid::new(w, h, self.settings.cloud_decimation);
        Backprojector::new(intrinsics, grid)
            .backproject_into(depth, self.range, &mut self.points)
            .map_err(skip("cloud"))?;
        let colour = self.settings.cloud_rgb.then_some(colour);
        let mut buf = std::mem::take(&mut self.cloud_buf);
        let layout = write_point_cloud(&self.points, &grid, colour, &mut buf).map_err(skip("cloud"))?;
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
}

/// Now minus the image stamp, in ms (system clock = ROS time without sim time).
fn latency_ms(stamp: i64) -> f32 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    ((now - stamp) as f64 / 1e6) as f32
}
