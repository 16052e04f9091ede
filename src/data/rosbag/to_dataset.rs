//! An RGB-D recording made into a training dataset: the bag streamed
//! once, colour and depth paired by stamp, camera_infos and `/tf_static`
//! collected on the way, and each pair decoded, registered to the colour
//! camera, checked for coverage and written by a pool of worker threads.
//! The held-out split is by time, decided once everything is written.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use serde_json::json;

use super::messages::{self, CameraInfo, CompressedImage, Image, TfMessage};
use super::pairing::{Paired, Pairer, Stamped};
use super::tf::{Rigid, TfTree};
use super::{colour, depth, Bag, BagError, BagMessage, Warnings};
use crate::data::export::{
    choose_input_size, choose_max_depth, split_by_time, write_config, ConfigSpec, DatasetWriter, DepthHistogram, ExportError, ListLine,
};
use crate::data::registration::{reproject, Camera, Registration};
use crate::geometry::PinholeIntrinsics;
use crate::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum FromBagError {
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("{0}")]
    Nothing(String),
    #[error("{0}")]
    Topic(String),
}

#[derive(Debug, Clone)]
pub struct FromBagOptions {
    pub bag: PathBuf,
    pub rgb_topic: String,
    pub depth_topic: String,
    /// Default: the sibling `camera_info` of the image topic.
    pub rgb_info: Option<String>,
    pub depth_info: Option<String>,
    /// Keep every N-th pair.
    pub every: usize,
    pub max_offset_ns: i64,
    /// Least fraction of colour pixels with depth for a pair to be kept.
    pub min_valid: f64,
    pub out: PathBuf,
    pub eval_fraction: f64,
    pub split_gap_ns: i64,
    /// Worker threads (0: all cores).
    pub threads: usize,
    pub model_from: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// What the export did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct FromBagReport {
    pub colour_frames: u64,
    pub depth_frames: u64,
    pub pairs: u64,
    pub thinned: u64,
    pub exported: u64,
    pub train: usize,
    pub eval: usize,
    pub gap: usize,
    pub skipped: BTreeMap<String, u64>,
    pub registration: BTreeMap<Registration, u64>,
    pub unused_depth: u64,
    pub coverage: f64,
    /// Depth quantiles (metres): min, median, 99th percentile, max.
    pub range: Option<[f64; 4]>,
    pub warnings: BTreeMap<String, u64>,
    pub max_depth: f64,
    pub size: Option<(usize, usize)>,
    pub config: PathBuf,
}

/// image_transport's naming: `<base>/camera_info` beside `<base>/image_raw`,
/// the transport (`compressed`, `compressedDepth`, ...) a level below.
pub fn default_info_topic(image_topic: &str, type_name: Option<&str>) -> String {
    let parent = |t: &str| t.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_string());
    let last = image_topic.rsplit('/').next().unwrap_or("");
    let transport = matches!(last, "compressed" | "compressedDepth" | "theora" | "zstd" | "ffmpeg" | "h264" | "foxglove");
    let base = if transport || type_name.is_some_and(|t| normalise_type(t) == messages::COMPRESSED_IMAGE) {
        parent(image_topic)
    } else {
        image_topic.to_string()
    };
    format!("{}/camera_info", parent(&base))
}

/// `sensor_msgs/Image` and `sensor_msgs/msg/Image` alike.
fn normalise_type(t: &str) -> String {
    match t.split_once('/') {
        Some((pkg, rest)) if !rest.starts_with("msg/") => format!("{pkg}/msg/{rest}"),
        _ => t.to_string(),
    }
}

/// A colour or depth message kept until it is paired and processed.
#[derive(Debug, Clone)]
struct HeldMessage {
    type_name: String,
    frame_id: String,
    data: Vec<u8>,
}

struct Job {
    name: String,
    stamp: i64,
    rgb: HeldMessage,
    depth: HeldMessage,
    rgb_info: Option<Arc<CameraInfo>>,
    depth_info: Option<Arc<CameraInfo>>,
    tf: Arc<TfTree>,
}

struct Done {
    name: String,
    stamp: i64,
    focal: f64,
    registration: Registration,
    size: (usize, usize),
    camera: Option<[f64; 6]>,
}

type Outcome = Result<Done, (String, String)>;

fn decode_rgb(f: &HeldMessage) -> Result<crate::image::PackedRgb, BagError> {
    if f.type_name == messages::COMPRESSED_IMAGE {
        colour::from_compressed(&CompressedImage::decode(&f.data)?)
    } else {
        colour::from_image(&Image::decode(&f.data)?)
    }
}

fn decode_depth(f: &HeldMessage) -> Result<depth::DepthImage, BagError> {
    if f.type_name == messages::COMPRESSED_IMAGE {
        depth::from_compressed(&CompressedImage::decode(&f.data)?)
    } else {
        depth::from_image(&Image::decode(&f.data)?)
    }
}

fn camera_of(info: &CameraInfo, width: usize, height: usize, what: &str) -> Result<Camera, (String, String)> {
    let (w, h) = info.info.image_size();
    if (w as usize, h as usize) != (width, height) {
        return Err((
            format!("{what} camera_info does not match the image"),
            format!("{what} camera_info describes {w}x{h} but the image is {width}x{height}"),
        ));
    }
    let intrinsics = PinholeIntrinsics::from_camera_info(&info.info)
        .map_err(|e| (format!("bad {what} camera_info"), format!("{what} camera_info: {e}")))?;
    Ok(Camera { intrinsics, width, height })
}

fn frame(s: &str) -> &str {
    s.trim_start_matches('/')
}

/// Decodes, registers, checks and writes one pair. The error is (skip
/// reason, detail).
/// What every pair is processed with.
struct Context<'a> {
    writer: &'a DatasetWriter,
    aligned_topic: bool,
    min_valid: f64,
    rgb_info_topic: &'a str,
    depth_info_topic: &'a str,
    all: &'a Mutex<DepthHistogram>,
}

fn process(job: &Job, cx: &Context<'_>) -> Outcome {
    let (writer, aligned_topic, min_valid, all) = (cx.writer, cx.aligned_topic, cx.min_valid, cx.all);
    fn bad(kind: &'static str) -> impl Fn(BagError) -> (String, String) {
        move |e| (kind.to_string(), e.to_string())
    }
    let rgb = decode_rgb(&job.rgb).map_err(bad("colour frame does not decode"))?;
    let depth = decode_depth(&job.depth).map_err(bad("depth frame does not decode"))?;
    let same_frame = frame(&job.rgb.frame_id) == frame(&job.depth.frame_id);
    let same_size = (depth.width, depth.height) == (rgb.width, rgb.height);
    let rgb_cam = match &job.rgb_info {
        Some(info) => Some(camera_of(info, rgb.width, rgb.height, "colour")?),
        None => None,
    };
    let (registration, depth_mm) = if (same_frame || aligned_topic) && same_size {
        (Registration::AsRecorded, depth.to_millimetres())
    } else {
        let (Some(to), Some(dinfo)) = (rgb_cam, &job.depth_info) else {
            let (which, topic) = if rgb_cam.is_none() { ("colour", cx.rgb_info_topic) } else { ("depth", cx.depth_info_topic) };
            return Err((
                format!("no {which} camera_info to re-project with"),
                format!(
                    "depth ({}, {}x{}) is not registered to colour ({}, {}x{}) and there is no {which} camera_info (on {topic}; see --{}-info)",
                    job.depth.frame_id,
                    depth.width,
                    depth.height,
                    job.rgb.frame_id,
                    rgb.width,
                    rgb.height,
                    if which == "colour" { "rgb" } else { "depth" }
                ),
            ));
        };
        let from = camera_of(dinfo, depth.width, depth.height, "depth")?;
        let transform: Rigid = if same_frame || aligned_topic {
            Rigid::IDENTITY
        } else {
            job.tf.lookup(&job.rgb.frame_id, &job.depth.frame_id).ok_or_else(|| {
                (
                    format!("no /tf_static transform from {:?} to {:?}", frame(&job.depth.frame_id), frame(&job.rgb.frame_id)),
                    format!(
                        "depth frame {:?} and colour frame {:?} are not connected by /tf_static, so the depth cannot be re-projected",
                        job.depth.frame_id, job.rgb.frame_id
                    ),
                )
            })?
        };
        let metres = reproject(&depth, &from, &to, &transform);
        (Registration::Reprojected, metres.into_iter().map(|d| if d > 0.0 { depth::metres_to_mm(d) } else { 0 }).collect())
    };
    let mut hist = DepthHistogram::default();
    hist.add(&depth_mm);
    if hist.coverage() < min_valid {
        return Err((
            "depth coverage below --min-valid".into(),
            format!("{:.0} % of the colour pixels have depth (--min-valid {:.0} %)", hist.coverage() * 100.0, min_valid * 100.0),
        ));
    }
    writer.write_sample(&job.name, &rgb.data, &depth_mm, rgb.width, rgb.height).map_err(|e| ("cannot write".to_string(), e.to_string()))?;
    all.lock().unwrap_or_else(|e| e.into_inner()).merge(&hist);
    let camera = rgb_cam.map(|c| {
        let i = c.intrinsics;
        [i.fx, i.fy, i.cx, i.cy, c.width as f64, c.height as f64]
    });
    let focal = match (rgb_cam, registration, &job.depth_info) {
        (Some(c), _, _) => c.intrinsics.fx,
        (None, Registration::AsRecorded, Some(d)) => PinholeIntrinsics::from_camera_info(&d.info).map(|i| i.fx).unwrap_or(0.0),
        _ => 0.0,
    };
    Ok(Done { name: job.name.clone(), stamp: job.stamp, focal, registration, size: (rgb.width, rgb.height), camera })
}

/// The inputs a pair may need, and whether each has been seen.
struct Inputs {
    rgb_info: Option<Arc<CameraInfo>>,
    depth_info: Option<Arc<CameraInfo>>,
    tf: Arc<TfTree>,
    expect_rgb_info: bool,
    expect_depth_info: bool,
    expect_tf: bool,
    tf_seen: bool,
}

impl Inputs {
    /// Everything the bag will provide has arrived at least once.
    fn complete(&self) -> bool {
        (!self.expect_rgb_info || self.rgb_info.is_some())
            && (!self.expect_depth_info || self.depth_info.is_some())
            && (!self.expect_tf || self.tf_seen)
    }
}

/// Pairs held while camera_info or /tf_static have not arrived yet.
const MAX_WAITING: usize = 64;

pub fn from_bag(opts: &FromBagOptions, warnings: &Warnings) -> Result<FromBagReport, FromBagError> {
    let bag = Bag::open(&opts.bag)?;
    let known = bag.topics_known();
    let topic_list = || {
        let mut names: Vec<String> = bag
            .topics()
            .iter()
            .filter(|t| [messages::IMAGE, messages::COMPRESSED_IMAGE].contains(&normalise_type(&t.type_name).as_str()))
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    for (what, topic) in [("--rgb-topic", &opts.rgb_topic), ("--depth-topic", &opts.depth_topic)] {
        if known && bag.topic(topic).is_none() {
            return Err(FromBagError::Topic(format!(
                "{what} {topic} is not in {}; its image topics: {}",
                opts.bag.display(),
                topic_list()
            )));
        }
        if let Some(t) = bag.topic(topic) {
            let ty = normalise_type(&t.type_name);
            if ty != messages::IMAGE && ty != messages::COMPRESSED_IMAGE {
                return Err(FromBagError::Topic(format!(
                    "{what} {topic} carries {}, not sensor_msgs/Image or CompressedImage",
                    t.type_name
                )));
            }
        }
    }
    let type_of = |t: &str| bag.topic(t).map(|t| t.type_name.clone());
    let rgb_info_topic = opts.rgb_info.clone().unwrap_or_else(|| default_info_topic(&opts.rgb_topic, type_of(&opts.rgb_topic).as_deref()));
    let depth_info_topic =
        opts.depth_info.clone().unwrap_or_else(|| default_info_topic(&opts.depth_topic, type_of(&opts.depth_topic).as_deref()));
    for (flag, given, topic) in [("--rgb-info", &opts.rgb_info, &rgb_info_topic), ("--depth-info", &opts.depth_info, &depth_info_topic)] {
        if known && given.is_some() && bag.topic(topic).is_none() {
            return Err(FromBagError::Topic(format!("{flag} {topic} is not in {}", opts.bag.display())));
        }
    }
    let aligned_topic = opts.depth_topic.contains("aligned_depth_to_color");
    let present = |t: &str| !known || bag.topic(t).is_some();
    let mut inputs = Inputs {
        rgb_info: None,
        depth_info: None,
        tf: Arc::new(TfTree::default()),
        expect_rgb_info: present(&rgb_info_topic),
        expect_depth_info: present(&depth_info_topic),
        expect_tf: known && bag.topic("/tf_static").is_some(),
        tf_seen: false,
    };

    let writer = DatasetWriter::create(&opts.out)?;
    let total = if known { bag.topic(&opts.rgb_topic).and_then(|t| t.message_count).unwrap_or(0) } else { 0 };
    let threads = if opts.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { opts.threads };
    let mut report = FromBagReport::default();
    let hist = Mutex::new(DepthHistogram::default());
    let outcomes: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let mut progress = Progress::new("from-bag", total, "colour frames");

    std::thread::scope(|scope| -> Result<(), FromBagError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads {
            let rx = rx.clone();
            let outcomes = &outcomes;
            let cx = Context {
                writer: &writer,
                aligned_topic,
                min_valid: opts.min_valid,
                rgb_info_topic: &rgb_info_topic,
                depth_info_topic: &depth_info_topic,
                all: &hist,
            };
            scope.spawn(move || loop {
                let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => break,
                };
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(&job, &cx)))
                    .unwrap_or_else(|_| Err(("internal error on this pair".into(), format!("pair {} failed", job.name))));
                if let Err((_, detail)) = &outcome {
                    warnings.warn("pair skipped", format!("pair at {:.3} s skipped: {detail}", job.stamp as f64 * 1e-9));
                }
                outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
            });
        }

        let mut pairer: Pairer<HeldMessage> = Pairer::new(opts.max_offset_ns, 2_000_000_000);
        let mut waiting: Vec<(Stamped<HeldMessage>, Stamped<HeldMessage>)> = Vec::new();
        let mut next_index = 0usize;
        let mut pair_count = 0u64;
        let mut dispatch = |rgb: Stamped<HeldMessage>, depth: Stamped<HeldMessage>, inputs: &Inputs, report: &mut FromBagReport| {
            pair_count += 1;
            if !(pair_count - 1).is_multiple_of(opts.every.max(1) as u64) {
                report.thinned += 1;
                return;
            }
            let job = Job {
                name: format!("{next_index:06}"),
                stamp: rgb.stamp,
                rgb: rgb.item,
                depth: depth.item,
                rgb_info: inputs.rgb_info.clone(),
                depth_info: inputs.depth_info.clone(),
                tf: inputs.tf.clone(),
            };
            next_index += 1;
            let _ = tx.send(job);
        };
        let mut handle = |out: Vec<Paired<HeldMessage>>, inputs: &Inputs, report: &mut FromBagReport, waiting: &mut Vec<_>| {
            for p in out {
                match p {
                    Paired::Pair { rgb, depth } => {
                        report.pairs += 1;
                        if inputs.complete() && waiting.is_empty() {
                            dispatch(rgb, depth, inputs, report);
                        } else {
                            waiting.push((rgb, depth));
                        }
                    }
                    Paired::NoDepth { rgb } => {
                        *report.skipped.entry(format!("no depth frame within {} ms", opts.max_offset_ns as f64 / 1e6)).or_insert(0) += 1;
                        warnings.warn(
                            "colour frame without depth",
                            format!("colour frame at {:.3} s has no depth frame within the offset", rgb.stamp as f64 * 1e-9),
                        );
                    }
                }
            }
            if !waiting.is_empty() && (inputs.complete() || waiting.len() > MAX_WAITING) {
                for (rgb, depth) in waiting.drain(..) {
                    dispatch(rgb, depth, inputs, report);
                }
            }
        };

        let wanted_topics =
            [opts.rgb_topic.clone(), opts.depth_topic.clone(), rgb_info_topic.clone(), depth_info_topic.clone(), "/tf_static".to_string()];
        let wanted = |t: &str| wanted_topics.iter().any(|w| w == t);
        let mut visit = |m: BagMessage<'_>| -> ControlFlow<()> {
            let ty = normalise_type(m.type_name);
            if m.topic == "/tf_static" {
                match TfMessage::decode(m.data) {
                    Ok(tf) => {
                        let mut tree = (*inputs.tf).clone();
                        let bad = tree.add(&tf);
                        if bad > 0 {
                            warnings.warn(
                                "bad transform",
                                format!("/tf_static: {bad} transforms with an invalid rotation or frame name ignored"),
                            );
                        }
                        inputs.tf = Arc::new(tree);
                        inputs.tf_seen = true;
                    }
                    Err(e) => warnings.warn("bad message", format!("/tf_static at {} ns: {e}", m.log_time)),
                }
            }
            if m.topic == rgb_info_topic || m.topic == depth_info_topic {
                match CameraInfo::decode(m.data) {
                    Ok(info) => {
                        let info = Arc::new(info);
                        if m.topic == rgb_info_topic {
                            inputs.rgb_info = Some(info.clone());
                        }
                        if m.topic == depth_info_topic {
                            inputs.depth_info = Some(info);
                        }
                    }
                    Err(e) => warnings.warn("bad message", format!("{} at {} ns: {e}", m.topic, m.log_time)),
                }
            }
            let is_rgb = m.topic == opts.rgb_topic;
            if is_rgb || m.topic == opts.depth_topic {
                if is_rgb {
                    report.colour_frames += 1;
                } else {
                    report.depth_frames += 1;
                }
                if ty != messages::IMAGE && ty != messages::COMPRESSED_IMAGE {
                    warnings.warn("bad message", format!("{} carries {}, not an image", m.topic, m.type_name));
                    return ControlFlow::Continue(());
                }
                let header = match messages::read_header(m.data) {
                    Ok(h) => h,
                    Err(e) => {
                        warnings.warn("bad message", format!("{} at {} ns: {e}", m.topic, m.log_time));
                        *report
                            .skipped
                            .entry(format!("{} message does not decode", if is_rgb { "colour" } else { "depth" }))
                            .or_insert(0) += 1;
                        return ControlFlow::Continue(());
                    }
                };
                let item = Stamped {
                    stamp: header.stamp_ns(),
                    log_time: m.log_time,
                    item: HeldMessage { type_name: ty, frame_id: header.frame_id, data: m.data.to_vec() },
                };
                let out = if is_rgb { pairer.push_rgb(item) } else { pairer.push_depth(item) };
                handle(out, &inputs, &mut report, &mut waiting);
                if is_rgb {
                    progress.set(report.colour_frames, format!("{} pairs", report.pairs));
                }
            }
            ControlFlow::Continue(())
        };
        let read = bag.read(&wanted, &mut visit, warnings);
        let out = pairer.finish();
        handle(out, &inputs, &mut report, &mut waiting);
        for (rgb, depth) in waiting.drain(..) {
            dispatch(rgb, depth, &inputs, &mut report);
        }
        report.unused_depth = pairer.unused_depth();
        drop(tx);
        read.map(|_| ()).map_err(FromBagError::from)
    })?;
    progress.finish();

    // Gather what the workers did.
    let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut done: Vec<Done> = Vec::new();
    let mut details: BTreeMap<String, String> = BTreeMap::new();
    for o in outcomes {
        match o {
            Ok(d) => done.push(d),
            Err((reason, detail)) => {
                *report.skipped.entry(reason.clone()).or_insert(0) += 1;
                details.entry(reason).or_insert(detail);
            }
        }
    }
    report.warnings = warnings.counts();
    if report.colour_frames == 0 {
        return Err(FromBagError::Nothing(format!(
            "no messages on {} in {} (image topics: {})",
            opts.rgb_topic,
            opts.bag.display(),
            topic_list()
        )));
    }
    if report.depth_frames == 0 {
        return Err(FromBagError::Nothing(format!("no messages on {} in {}", opts.depth_topic, opts.bag.display())));
    }
    if done.is_empty() {
        let why = report
            .skipped
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(reason, n)| format!("{n} pairs skipped: {}", details.get(reason).cloned().unwrap_or_else(|| reason.clone())))
            .unwrap_or_else(|| "no pairs".into());
        return Err(FromBagError::Nothing(format!("nothing usable in {}: {why}", opts.bag.display())));
    }
    done.sort_by_key(|d| (d.stamp, d.name.clone()));
    let size = done[0].size;
    if let Some(d) = done.iter().find(|d| d.size != size) {
        return Err(FromBagError::Nothing(format!(
            "colour frames change size during the recording ({}x{} then {}x{}): export one size per dataset",
            size.0, size.1, d.size.0, d.size.1
        )));
    }
    let stamps: Vec<i64> = done.iter().map(|d| d.stamp).collect();
    let split = split_by_time(&stamps, opts.eval_fraction, opts.split_gap_ns);
    for &i in &split.dropped {
        writer.remove_sample(&done[i].name);
    }
    let line = |i: &usize| ListLine { name: done[*i].name.clone(), focal: done[*i].focal };
    writer.write_list("train.txt", &split.train.iter().map(line).collect::<Vec<_>>())?;
    writer.write_list("eval.txt", &split.eval.iter().map(line).collect::<Vec<_>>())?;
    // The range of every written pair (those left out between the splits
    // are the same recording).
    let hist = hist.into_inner().unwrap_or_else(|e| e.into_inner());
    for (i, d) in done.iter().enumerate() {
        if !split.dropped.contains(&i) {
            *report.registration.entry(d.registration).or_insert(0) += 1;
        }
    }
    if done.iter().all(|d| d.focal == 0.0) {
        warnings.warn("no camera_info", format!("no colour camera_info on {rgb_info_topic}: the file lists give focal 0"));
    }
    let samples: Vec<serde_json::Value> = done
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let split = if split.eval.contains(&i) {
                "eval"
            } else if split.dropped.contains(&i) {
                "left out"
            } else {
                "train"
            };
            json!({"name": d.name, "stamp_ns": d.stamp, "split": split, "registration": format!("{:?}", d.registration)})
        })
        .collect();
    report.exported = (split.train.len() + split.eval.len()) as u64;
    report.train = split.train.len();
    report.eval = split.eval.len();
    report.gap = split.dropped.len();
    report.coverage = hist.coverage();
    report.range = match (hist.quantile(0.0), hist.quantile(0.5), hist.quantile(0.99), hist.quantile(1.0)) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    report.max_depth = choose_max_depth(&hist);
    report.size = Some(size);
    let (iw, ih) = choose_input_size(size.0, size.1);
    let regs: Vec<&str> = report.registration.keys().map(|r| r.describe()).collect();
    report.config = write_config(&ConfigSpec {
        name: format!("robot_{}", opts.bag.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        root: writer.root().to_owned(),
        input_width: iw,
        input_height: ih,
        max_depth: report.max_depth,
        camera: done.iter().find_map(|d| d.camera),
        model_from: opts.model_from.clone(),
        overrides: opts.overrides.clone(),
        notes: vec![
            format!("Made by clip_depth dataset from-bag from {}", opts.bag.display()),
            format!("colour {}, depth {}; {}", opts.rgb_topic, opts.depth_topic, regs.join("; ")),
        ],
    })?;
    report.warnings = warnings.counts();
    let mut summary = summary_json(opts, &report);
    summary["samples"] = serde_json::Value::Array(samples);
    writer.write_json("summary.json", &summary)?;
    Ok(report)
}

fn summary_json(opts: &FromBagOptions, r: &FromBagReport) -> serde_json::Value {
    json!({
        "source": "rosbag",
        "bag": opts.bag.display().to_string(),
        "rgb_topic": opts.rgb_topic,
        "depth_topic": opts.depth_topic,
        "colour_frames": r.colour_frames,
        "depth_frames": r.depth_frames,
        "pairs": r.pairs,
        "thinned_by_every": r.thinned,
        "exported": r.exported,
        "train": r.train,
        "eval": r.eval,
        "left_out_between_splits": r.gap,
        "skipped": r.skipped,
        "registration": r.registration.iter().map(|(k, v)| (format!("{k:?}"), *v)).collect::<BTreeMap<_, _>>(),
        "unused_depth_frames": r.unused_depth,
        "depth_coverage": r.coverage,
        "depth_range_m": r.range.map(|[a, b, c, d]| json!({"min": a, "median": b, "p99": c, "max": d})),
        "max_depth": r.max_depth,
        "size": r.size.map(|(w, h)| json!([w, h])),
        "warnings": r.warnings,
    })
}

impl FromBagReport {
    /// The human summary the CLI prints.
    pub fn lines(&self) -> Vec<String> {
        let mut l = vec![format!(
            "{} colour and {} depth frames: {} pairs{}; {} exported ({} train, {} eval, {} left out between them)",
            self.colour_frames,
            self.depth_frames,
            self.pairs,
            if self.thinned > 0 { format!(" ({} left out by --every)", self.thinned) } else { String::new() },
            self.exported,
            self.train,
            self.eval,
            self.gap
        )];
        for (reg, n) in &self.registration {
            l.push(format!("{n} pairs: {}", reg.describe()));
        }
        if self.skipped.is_empty() {
            l.push("skipped: none".into());
        }
        for (reason, n) in &self.skipped {
            l.push(format!("skipped {n}: {reason}"));
        }
        if self.unused_depth > 0 {
            l.push(format!("{} depth frames matched no colour frame", self.unused_depth));
        }
        if let Some([a, b, c, d]) = self.range {
            l.push(format!(
                "depth coverage {:.1} %; range {a:.3} .. {d:.3} m (median {b:.2} m, 99th percentile {c:.2} m); max_depth {}",
                self.coverage * 100.0,
                self.max_depth
            ));
        }
        for (kind, n) in &self.warnings {
            l.push(format!("warnings: {n} x {kind}"));
        }
        l.push(format!("config: {}", self.config.display()));
        if let Some(warning) = self.split_warning() {
            l.push(warning);
        }
        l
    }

    /// A warning when the training set is empty or tiny, naming the flags
    /// that change the split.
    pub fn split_warning(&self) -> Option<String> {
        /// Fewer training pairs than this train nothing worth having.
        const TINY: usize = 8;
        if self.exported == 0 || self.train >= TINY {
            return None;
        }
        let what = if self.train == 0 { "no training pairs".to_string() } else { format!("only {} training pair(s)", self.train) };
        Some(format!(
            "warning: {what} of {} exported ({} held out, {} left out between the two): a recording this short needs \
             a shorter --split-gap (seconds left out between training and held-out frames) or a smaller \
             --eval-fraction, or a longer recording",
            self.exported, self.eval, self.gap
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_recording_says_which_flags_change_the_split() {
        let report = |train: usize, eval: usize, gap: usize| FromBagReport { exported: (train + eval + gap) as u64, train, eval, gap, ..Default::default() };
        let warning = report(0, 2, 8).split_warning().unwrap();
        assert!(warning.contains("no training pairs") && warning.contains("--split-gap") && warning.contains("--eval-fraction"), "{warning}");
        assert!(report(3, 1, 2).lines().iter().any(|l| l.contains("only 3 training pair(s)")));
        assert_eq!(report(40, 10, 4).split_warning(), None);
        assert_eq!(report(0, 0, 0).split_warning(), None, "nothing exported is said otherwise");
    }

    #[test]
    fn camera_info_topics_follow_image_transport() {
        assert_eq!(default_info_topic("/cam/color/image_raw", None), "/cam/color/camera_info");
        assert_eq!(default_info_topic("/cam/color/image_raw/compressed", None), "/cam/color/camera_info");
        assert_eq!(default_info_topic("/cam/depth/image_rect_raw/compressedDepth", None), "/cam/depth/camera_info");
        assert_eq!(default_info_topic("/cam/color/jpeg", Some("sensor_msgs/msg/CompressedImage")), "/cam/camera_info");
        assert_eq!(default_info_topic("image", None), "/camera_info");
        assert_eq!(normalise_type("sensor_msgs/Image"), "sensor_msgs/msg/Image");
    }
}
