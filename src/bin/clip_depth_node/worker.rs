//! The inference thread: gathers the newest frame of every camera that has
//! one (waiting up to `batch_window_ms` for the others), runs them through
//! the model as one batch, pairs each with its camera_info, and publishes
//! each camera's depth, camera_info, cloud, colormap and stats under its
//! own input's header as soon as its own camera_info is settled. A bad frame is skipped with a throttled warning
//! naming the camera and the reason; a panic while processing a frame
//! costs that frame (counted, throttled error naming the stage); a batch
//! that fails is rerun frame by frame so that only the frame at fault is
//! lost; the thread goes on.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nalgebra::Point3;
use r2r::clip_depth_msgs::msg::DepthStats;
use r2r::sensor_msgs::msg::{CameraInfo, Image, PointCloud2};
use r2r::std_msgs::msg::Header;
use r2r::Publisher;

use clip_depth_ros::geometry::{
    check_camera_info, depth_camera_info, write_point_cloud, Backprojector, CameraInfoData, DepthSummary,
    PinholeIntrinsics, SampleGrid,
};
use clip_depth_ros::image::colormap::{colorize, ColourOrder};
use clip_depth_ros::image::ros_image::{decode_compressed, ModelImage, RawImage};
use clip_depth_ros::node::{plan_batch, BatchPlan, CameraSettings, NodeSettings};
use clip_depth_ros::{DepthEstimator, DepthMap, StageTimings};

use crate::camera_sync::{stamp_ns, MatchingChange, Pairing, StampMatching};
use crate::frame_slot::{ReceivedFrame, Payload, FrameSlots};
use crate::messages::{camera_info_data, camera_info_msg, cloud_msg, image_msg, stats_msg, Counters, FrameStats};
use crate::params::{lock_live, LiveParams, Settings};
use crate::supervise::{supervised, test_hook, Stage};
use crate::throttle::Throttle;

/// A camera that delivered a frame this recently is waited for (up to the
/// batch window); one that stopped is not.
const STREAMING: Duration = Duration::from_secs(1);

/// One camera's publishers. The cloud and colormap publishers always exist,
/// so that `publish_cloud` / `publish_colormap` can be switched on live.
pub struct CameraOutputs {
    pub depth: Publisher<Image>,
    pub depth_info: Publisher<CameraInfo>,
    pub cloud: Publisher<PointCloud2>,
    pub colormap: Publisher<Image>,
    pub stats: Publisher<DepthStats>,
}

/// Why a frame was not processed: a throttling key and a message.
struct Skip(&'static str, String);

fn skip<E: ToString>(key: &'static str) -> impl FnOnce(E) -> Skip {
    move |e| Skip(key, e.to_string())
}

/// How a frame was lost.
enum Lost {
    Skip(Skip),
    Panic(String, Stage),
}

fn ms(d: Duration) -> f32 {
    (d.as_secs_f64() * 1e3) as f32
}

/// Per-camera state of the inference thread.
struct CameraState {
    name: String,
    /// Put before log lines: "" for the unnamed camera, else "camera NAME: ".
    label: String,
    outputs: CameraOutputs,
    matching: StampMatching,
    points: Vec<Point3<f32>>,
    cloud_buf: Vec<u8>,
    scratch: Vec<f32>,
}

/// A frame decoded and paired, ready for the forward pass.
struct Prepared<'a> {
    camera: usize,
    header: Header,
    stamp: i64,
    image: ModelImage<'a>,
    /// Set once paired (after the forward pass): [`Worker::finish_paired`].
    info: Option<CameraInfoData>,
    size: (usize, usize),
    received: Instant,
    started: Instant,
    decode_ms: f32,
}

/// One frame's forward pass: its depth, the pass's timings and batch size.
type Inferred = Result<(DepthMap, StageTimings, usize), Lost>;

pub struct Worker {
    shared: Arc<FrameSlots>,
    live: Arc<Mutex<LiveParams>>,
    estimator: DepthEstimator,
    settings: Settings,
    cameras: Vec<CameraState>,
    logger: String,
    device_name: String,
    throttle: Throttle,
    /// The stage the current frame is in, for the error if it panics.
    stage: Cell<Stage>,
}

impl Worker {
    /// `outputs`: one per camera of `settings.cameras`, in order.
    pub fn new(
        shared: Arc<FrameSlots>,
        live: Arc<Mutex<LiveParams>>,
        estimator: DepthEstimator,
        settings: Settings,
        outputs: Vec<CameraOutputs>,
        logger: String,
    ) -> Self {
        let device_name = format!("{} {}", settings.device, settings.dtype);
        let cameras = settings
            .cameras
            .iter()
            .zip(outputs)
            .map(|(setup, outputs)| CameraState {
                name: setup.name.clone(),
                label: if setup.name.is_empty() { String::new() } else { format!("camera {}: ", setup.name) },
                outputs,
                matching: StampMatching::default(),
                points: Vec::new(),
                cloud_buf: Vec::new(),
                scratch: Vec::new(),
            })
            .collect();
        Self {
            shared,
            live,
            estimator,
            settings,
            cameras,
            logger,
            device_name,
            throttle: Throttle::new(Duration::from_secs(5)),
            stage: Cell::new(Stage::Decode),
        }
    }

    /// Throttled per camera and kind of message: the key is the camera, the
    /// category and the message without its numbers, so a new reason shows
    /// at once while a repeating one (with changing sizes or stamps) does
    /// not, and one camera's flood does not hide another's.
    fn allow(&mut self, camera: usize, key: &str, msg: &str) -> bool {
        let kind: String = msg.chars().filter(|c| !c.is_ascii_digit()).collect();
        let name = &self.cameras[camera].name;
        self.throttle.allow(&format!("{name}/{key}: {kind}"))
    }

    fn warn(&mut self, camera: usize, key: &'static str, msg: &str) {
        if self.allow(camera, key, msg) {
            r2r::log_warn!(&self.logger, "{}{msg}", self.cameras[camera].label);
        }
    }

    /// Processes batches until shutdown. Returns only then: a panic outside
    /// the per-frame guards ends the thread, which `main` turns into an exit.
    pub fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            for (_, frame) in &batch {
                test_hook("worker", &frame.header().frame_id);
            }
            let resolved = lock_live(&self.live).resolved();
            self.process_batch(&batch, &resolved);
        }
    }

    /// The next batch: the newest frame of each camera chosen by
    /// [`plan_batch`], waiting for one; `None` at shutdown.
    fn next_batch(&self) -> Option<Vec<(usize, ReceivedFrame)>> {
        let mut state = self.shared.lock();
        loop {
            if self.shared.shutting_down() {
                return None;
            }
            let resolved = lock_live(&self.live).resolved();
            let now = Instant::now();
            let pending: Vec<Option<Instant>> =
                state.cameras.iter().map(|c| c.frame.as_ref().map(|f| f.received)).collect();
            let streaming: Vec<bool> = state
                .cameras
                .iter()
                .map(|c| c.health.last_image().is_some_and(|t| now.saturating_duration_since(t) < STREAMING))
                .collect();
            match plan_batch(&pending, &streaming, now, resolved.batch_window, resolved.max_batch_size) {
                BatchPlan::Take(cameras) => {
                    state.batches.last_progress = Some(now);
                    return Some(
                        cameras.into_iter().filter_map(|i| state.cameras[i].frame.take().map(|f| (i, f))).collect(),
                    )
                }
                BatchPlan::WaitUntil(deadline) => state = self.shared.wait_until(state, deadline),
                BatchPlan::Idle => state = self.shared.wait_until(state, now + Duration::from_millis(200)),
            }
        }
    }

    fn process_batch(&mut self, batch: &[(usize, ReceivedFrame)], resolved: &NodeSettings) {
        let mut prepared = Vec::with_capacity(batch.len());
        for (camera, frame) in batch {
            self.stage.set(Stage::Decode);
            match supervised(|| self.prepare(*camera, frame, &resolved.cameras[*camera])) {
                Ok(Ok(p)) => prepared.push(p),
                Ok(Err(s)) => self.lost(*camera, Lost::Skip(s)),
                Err(panic) => self.lost(*camera, Lost::Panic(panic, self.stage.get())),
            }
        }
        if prepared.is_empty() {
            return;
        }
        let outcomes = self.infer(&prepared);
        let mut done = Vec::with_capacity(prepared.len());
        for (p, outcome) in prepared.into_iter().zip(outcomes) {
            match outcome {
                Ok(inferred) => done.push((p, inferred)),
                Err(lost) => self.lost(p.camera, lost),
            }
        }
        self.pair_and_finish(done, resolved);
    }

    /// Pairs each inferred frame with its camera_info and publishes it as
    /// soon as its own pairing is settled: a frame waits (up to the sync
    /// window from its arrival, while stamps are known to match) for its
    /// own camera_info only, never for another camera's, and the forward
    /// pass has already given the camera_infos time to arrive.
    fn pair_and_finish(&mut self, mut waiting: Vec<(Prepared<'_>, (DepthMap, StageTimings, usize))>, resolved: &NodeSettings) {
        let mut windows = Vec::with_capacity(waiting.len());
        for (p, _) in &waiting {
            let late = {
                let state = self.shared.lock();
                let infos = &state.cameras[p.camera].infos;
                self.cameras[p.camera].matching.check_late(|s| infos.contains(s))
            };
            self.log_matching(p.camera, late);
            windows.push(if self.cameras[p.camera].matching.waiting() { self.settings.sync_window } else { Duration::ZERO });
        }
        let mut waiting: Vec<_> = waiting.drain(..).zip(windows).collect();
        while !waiting.is_empty() {
            // Settle every pairing that can be settled now; wait for the rest.
            let mut settled = Vec::new();
            {
                let mut state = self.shared.lock();
                loop {
                    let now = Instant::now();
                    let mut next_deadline: Option<Instant> = None;
                    let mut i = 0;
                    while i < waiting.len() {
                        let ((p, _), window) = &waiting[i];
                        let infos = &state.cameras[p.camera].infos;
                        let deadline = p.received + *window;
                        let pairing = match infos.exact(p.stamp) {
                            Some(info) => Some(Pairing::Exact(info)),
                            None if now >= deadline || self.shared.shutting_down() => {
                                Some(infos.pair(p.stamp, self.settings.use_latest_camera_info))
                            }
                            None => None,
                        };
                        match pairing {
                            Some(pairing) => settled.push((waiting.swap_remove(i), pairing)),
                            None => {
                                next_deadline = Some(next_deadline.map_or(deadline, |d: Instant| d.min(deadline)));
                                i += 1;
                            }
                        }
                    }
                    match next_deadline {
                        Some(deadline) if settled.is_empty() => state = self.shared.wait_until(state, deadline),
                        _ => break,
                    }
                }
            }
            for (((mut p, (depth, timings, batch_size)), window), pairing) in settled {
                let settings = &resolved.cameras[p.camera];
                self.stage.set(Stage::CameraInfo);
                let result = match supervised(|| self.accept_pairing(&mut p, pairing, window)) {
                    Ok(Ok(())) => match supervised(|| self.finish(&p, depth, timings, batch_size, settings)) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(s)) => Err(Lost::Skip(s)),
                        Err(panic) => Err(Lost::Panic(panic, self.stage.get())),
                    },
                    Ok(Err(s)) => Err(Lost::Skip(s)),
                    Err(panic) => Err(Lost::Panic(panic, self.stage.get())),
                };
                if let Err(lost) = result {
                    self.lost(p.camera, lost);
                }
            }
        }
    }

    fn lost(&mut self, camera: usize, lost: Lost) {
        let now = Instant::now();
        match lost {
            Lost::Skip(Skip(key, msg)) => {
                self.shared.lock().cameras[camera].health.skipped(now, key);
                self.warn(camera, key, &format!("frame skipped: {msg}"));
            }
            Lost::Panic(panic, stage) => {
                let failed = {
                    let mut state = self.shared.lock();
                    let health = &mut state.cameras[camera].health;
                    health.failed(now);
                    health.failed
                };
                if self.allow(camera, stage.name(), "panic") {
                    r2r::log_error!(
                        &self.logger,
                        "{}frame lost: internal error in stage {}: {panic} ({failed} frame(s) lost so far; carrying on)",
                        self.cameras[camera].label,
                        stage.name()
                    );
                }
            }
        }
    }

    /// Marks the start of a stage (and lets a test build panic there).
    fn enter(&self, stage: Stage, header: &Header) {
        self.stage.set(stage);
        test_hook(stage.name(), &header.frame_id);
    }

    /// Decodes the frame (its camera_info is paired after the forward pass).
    fn prepare<'a>(&mut self, camera: usize, frame: &'a ReceivedFrame, settings: &CameraSettings) -> Result<Prepared<'a>, Skip> {
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
        let (width, height) = {
            let view = image.view().map_err(skip("decode"))?;
            (view.width(), view.height())
        };
        let decode_ms = ms(started.elapsed());

        let size = settings.output.resolve(width, height);
        Ok(Prepared { camera, header, stamp, image, info: None, size, received: frame.received, started, decode_ms })
    }

    /// One forward pass over every prepared frame; if it fails, one per
    /// frame, so that a frame at fault costs only itself.
    fn infer(&mut self, prepared: &[Prepared<'_>]) -> Vec<Inferred> {
        fn run(estimator: &DepthEstimator, items: &[&Prepared<'_>]) -> Result<(Vec<DepthMap>, StageTimings), Skip> {
            for p in items {
                test_hook(Stage::Inference.name(), &p.header.frame_id);
            }
            let views = items.iter().map(|p| p.image.view()).collect::<Result<Vec<_>, _>>().map_err(skip("decode"))?;
            let sizes: Vec<(usize, usize)> = items.iter().map(|p| p.size).collect();
            // The model's own values: the range test must see a pixel
            // beyond max_range as such, not saturated to max_depth.
            let (maps, timings) = estimator.estimate_sized_raw(&views, &sizes).map_err(skip("inference"))?;
            if maps.len() != items.len() {
                return Err(Skip("inference", format!("the model returned {} depth maps for {} frames", maps.len(), items.len())));
            }
            Ok((maps, timings))
        }
        self.stage.set(Stage::Inference);
        let all: Vec<&Prepared<'_>> = prepared.iter().collect();
        let n = all.len();
        let t = Instant::now();
        self.shared.lock().batches.pass_started = Some(t);
        let whole = supervised(|| run(&self.estimator, &all));
        self.count_batch(n, t.elapsed());
        match whole {
            Ok(Ok((maps, timings))) => return maps.into_iter().map(|m| Ok((m, timings, n))).collect(),
            Ok(Err(s)) if n == 1 => return vec![Err(Lost::Skip(s))],
            Err(panic) if n == 1 => return vec![Err(Lost::Panic(panic, Stage::Inference))],
            Ok(Err(Skip(_, why))) | Err(why) => {
                let msg = format!("a batch of {n} frames failed ({why}): running them one by one");
                if self.throttle.allow(&format!("batch: {}", msg.replace(|c: char| c.is_ascii_digit(), ""))) {
                    r2r::log_warn!(&self.logger, "{msg}");
                }
            }
        }
        all.iter()
            .map(|p| {
                self.shared.lock().batches.pass_started = Some(Instant::now());
                let one = supervised(|| run(&self.estimator, &[p]));
                self.shared.lock().batches.pass_started = None;
                one
            })
            .map(|one| match one {
                Ok(Ok((mut maps, timings))) => Ok((maps.remove(0), timings, 1)),
                Ok(Err(s)) => Err(Lost::Skip(s)),
                Err(panic) => Err(Lost::Panic(panic, Stage::Inference)),
            })
            .collect()
    }

    fn count_batch(&self, frames: usize, took: Duration) {
        let mut state = self.shared.lock();
        let b = &mut state.batches;
        b.batches += 1;
        b.frames += frames as u64;
        b.last_size = frames;
        b.last_forward_ms = ms(took);
        b.pass_started = None;
        b.last_progress = Some(Instant::now());
    }

    /// Publishes one frame's outputs and stats.
    fn finish(
        &mut self,
        p: &Prepared<'_>,
        depth: DepthMap,
        timings: StageTimings,
        batch_size: usize,
        settings: &CameraSettings,
    ) -> Result<(), Skip> {
        let header = &p.header;
        let (w, h) = p.size;
        let depth = depth.data;
        let range = settings.range;

        self.enter(Stage::DepthImage, header);
        let t_post = Instant::now();
        let enc = self.settings.depth_encoding;
        let bytes = enc.encode(&depth, range.min, range.max);
        let depth_msg = image_msg(header, w, h, enc.ros_encoding(), enc.bytes_per_pixel(), bytes);
        let depth_info = match &p.info {
            Some(input) => Some(depth_camera_info(input, w as u32, h as u32).map_err(skip("camera_info"))?),
            None => None,
        };
        self.enter(Stage::Colormap, header);
        let colormap_msg = settings.publish_colormap.then(|| {
            let px = colorize(&depth, range.min, range.max, ColourOrder::Bgr);
            image_msg(header, w, h, "bgr8", 3, px)
        });
        let postprocess_ms = ms(t_post.elapsed());

        self.enter(Stage::Cloud, header);
        let t_cloud = Instant::now();
        let cloud = match (settings.publish_cloud, &depth_info) {
            (true, Some(dinfo)) => Some(self.build_cloud(p, dinfo, &depth, settings)?),
            _ => None,
        };
        let cloud_ms = ms(t_cloud.elapsed());

        self.enter(Stage::Publish, header);
        let outputs = &self.cameras[p.camera].outputs;
        self.publish(&outputs.depth, &depth_msg);
        if let Some(dinfo) = &depth_info {
            self.publish(&outputs.depth_info, &camera_info_msg(header, dinfo));
        }
        if let Some(msg) = &cloud {
            self.publish(&outputs.cloud, msg);
        }
        if let Some(msg) = &colormap_msg {
            self.publish(&outputs.colormap, msg);
        }
        if let Some(msg) = cloud {
            self.cameras[p.camera].cloud_buf = msg.data; // reuse the allocation next frame
        }

        self.enter(Stage::Stats, header);
        let camera = &mut self.cameras[p.camera];
        let summary = DepthSummary::of(&depth, range, &mut camera.scratch);
        let latency = latency_ms(p.stamp);
        let stats = FrameStats {
            decode_ms: p.decode_ms,
            preprocess_ms: ms(timings.preprocess),
            encoder_ms: ms(timings.encoder),
            decoder_ms: ms(timings.decoder),
            postprocess_ms: ms(timings.resize) + postprocess_ms,
            cloud_ms,
            latency_ms: latency,
            total_ms: ms(p.started.elapsed()),
            depth_min: summary.min,
            depth_median: summary.median,
            depth_max: summary.max,
        };
        let counters = {
            let mut state = self.shared.lock();
            let health = &mut state.cameras[p.camera].health;
            health.processed(Instant::now(), latency);
            Counters {
                received: health.received,
                processed: health.processed,
                dropped_stale: health.dropped_stale,
                skipped_invalid: health.skipped_total(),
                failed: health.failed,
            }
        };
        let camera = &self.cameras[p.camera];
        let msg = stats_msg(header, &stats, &counters, self.estimator.model_name(), &self.device_name, &camera.name, batch_size);
        self.publish(&camera.outputs.stats, &msg);
        Ok(())
    }

    fn build_cloud(
        &mut self,
        p: &Prepared<'_>,
        depth_info: &CameraInfoData,
        depth: &[f32],
        settings: &CameraSettings,
    ) -> Result<PointCloud2, Skip> {
        let (w, h) = p.size;
        let intrinsics = PinholeIntrinsics::from_camera_info(depth_info).map_err(skip("camera_info"))?;
        let grid = SampleGrid::new(w, h, settings.cloud_decimation);
        let camera = &mut self.cameras[p.camera];
        Backprojector::new(intrinsics, grid)
            .backproject_into(depth, settings.range, &mut camera.points)
            .map_err(skip("cloud"))?;
        let colour = if self.settings.cloud_rgb { Some(p.image.view().map_err(skip("cloud"))?) } else { None };
        let mut buf = std::mem::take(&mut camera.cloud_buf);
        let layout = write_point_cloud(&camera.points, &grid, colour.as_ref(), &mut buf).map_err(skip("cloud"))?;
        Ok(cloud_msg(&p.header, &layout, buf))
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

    /// Takes a settled pairing for `p`: learns from it whether stamps match
    /// (see [`StampMatching`]), says what was used, and checks the
    /// camera_info against the image.
    fn accept_pairing(&mut self, p: &mut Prepared<'_>, pairing: Pairing<CameraInfo>, window: Duration) -> Result<(), Skip> {
        let camera = p.camera;
        test_hook(Stage::CameraInfo.name(), &p.header.frame_id);
        let change = self.cameras[camera].matching.record(p.stamp, matches!(pairing, Pairing::Exact(_)));
        self.log_matching(camera, change);
        let msg = match pairing {
            Pairing::Exact(info) => Some(info),
            Pairing::Latest(info_stamp, info) => {
                // Once stamps are known not to match, that was said once
                // (log_matching); no warning per frame for it.
                if !window.is_zero() {
                    let msg = format!(
                        "no camera_info with the image's stamp within {:.0} ms: using the newest one, {:.1} ms apart \
                         (use_latest_camera_info)",
                        window.as_secs_f64() * 1e3,
                        (p.stamp - info_stamp) as f64 / 1e6
                    );
                    self.warn(camera, "camera_info_latest", &msg);
                }
                Some(info)
            }
            Pairing::None => {
                let empty = self.shared.lock().cameras[camera].infos.is_empty();
                let msg = if empty {
                    "no camera_info received yet: publishing depth only (no depth/camera_info, no points)"
                } else {
                    "no camera_info with the image's stamp and use_latest_camera_info is false: publishing depth only"
                };
                self.warn(camera, "camera_info_none", msg);
                None
            }
        };
        if let Some(msg) = msg {
            let view = p.image.view().map_err(skip("decode"))?;
            let data = camera_info_data(&msg).map_err(skip("camera_info"))?;
            check_camera_info(&data, view.width(), view.height()).map_err(skip("camera_info"))?;
            p.info = Some(data);
        }
        Ok(())
    }

    fn log_matching(&mut self, camera: usize, change: Option<MatchingChange>) {
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
                self.warn(camera, "camera_info_matching", &msg);
            }
            Some(MatchingChange::WaitAgain) => r2r::log_info!(
                &self.logger,
                "{}a camera_info arrived with an earlier image's exact stamp: waiting up to camera_info_sync_window again",
                self.cameras[camera].label
            ),
            None => {}
        }
    }
}

/// Now minus the image stamp, in ms (system clock = ROS time without sim time).
fn latency_ms(stamp: i64) -> f32 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    ((now - stamp) as f64 / 1e6) as f32
}
