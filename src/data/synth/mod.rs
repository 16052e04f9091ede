//! Synthetic RGB-D datasets with exact ground truth, made by ray casting
//! procedural scenes: for tests of the trainer, for CI, and for demos that
//! report true error figures. The same scenes can also be written as a
//! rosbag2 recording (colour, depth, both camera_infos, `/tf_static`), with
//! the depth camera beside the colour camera when unregistered, to exercise
//! the bag path end to end.

pub mod render;
pub mod scene;
pub mod shapes;
pub mod texture;

use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use serde_json::json;

use crate::data::export::{
    choose_input_size, choose_max_depth, split_by_time, write_config, ConfigSpec, DatasetWriter, DepthHistogram, ExportError, ListLine,
};
use crate::data::rosbag::depth::metres_to_mm;
use crate::data::rosbag::messages::{self, CameraInfo, Header, Image, TfMessage, TransformStamped};
use crate::data::rosbag::writer::BagWriter;
use crate::data::rosbag::BagError;
use crate::geometry::{CameraInfoData, PinholeIntrinsics};
use crate::progress::Progress;
pub use render::{intrinsics_for, render, render_depth, View};
pub use scene::{generate, Pose, Scene, SceneKind};

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub out: PathBuf,
    pub count: usize,
    pub width: usize,
    pub height: usize,
    pub seed: u64,
    pub kind: SceneKind,
    pub bag: Option<PathBuf>,
    /// The bag's depth from a second camera beside the colour camera.
    pub unregistered: bool,
    pub eval_fraction: f64,
    pub threads: usize,
    pub model_from: Option<PathBuf>,
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SynthReport {
    pub train: usize,
    pub eval: usize,
    pub coverage: f64,
    pub range: Option<[f64; 3]>,
    pub max_depth: f64,
    pub intrinsics: PinholeIntrinsics,
    pub config: PathBuf,
    pub bag: Option<PathBuf>,
}

/// Horizontal fields of view: a typical RGB-D colour camera, and its depth
/// camera (wider, as on RealSense and Orbbec units).
pub const COLOUR_HFOV: f64 = 60.0 * std::f64::consts::PI / 180.0;
pub const DEPTH_HFOV: f64 = 70.0 * std::f64::consts::PI / 180.0;

pub const COLOUR_FRAME: &str = "camera_color_optical_frame";
pub const DEPTH_FRAME: &str = "camera_depth_optical_frame";
pub const RIG_FRAME: &str = "camera_link";
pub const COLOUR_TOPIC: &str = "/camera/color/image_raw";
pub const COLOUR_INFO_TOPIC: &str = "/camera/color/camera_info";
pub const DEPTH_TOPIC: &str = "/camera/depth/image_raw";
pub const DEPTH_INFO_TOPIC: &str = "/camera/depth/camera_info";

/// The depth camera of the unregistered rig relative to the colour camera
/// (its optical frame): 5 cm to the left, turned 1.5 degrees about the
/// vertical axis.
pub fn depth_rig() -> ([f64; 3], [[f64; 3]; 3]) {
    let a: f64 = 1.5f64.to_radians();
    let (s, c) = a.sin_cos();
    ([-0.05, 0.0, 0.0], [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
}

/// The rotation from a body frame (x forward, y left, z up) to the optical
/// frame (x right, y down, z forward), REP 103: columns are the optical
/// axes in body coordinates.
const BODY_FROM_OPTICAL: [[f64; 3]; 3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]];

fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// A rotation matrix as a quaternion (x, y, z, w).
pub fn quaternion(m: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = m[0][0] + m[1][1] + m[2][2];
    if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [(m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s, 0.25 * s]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s, (m[2][1] - m[1][2]) / s]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [(m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s, (m[0][2] - m[2][0]) / s]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [(m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s, (m[1][0] - m[0][1]) / s]
    }
}

/// The `/tf_static` message of the rig: the colour optical frame at the
/// rig's origin, the depth optical frame offset as [`depth_rig`] says (or,
/// registered, at the colour frame's place).
pub fn rig_transforms(stamp_ns: i64, unregistered: bool) -> TfMessage {
    let colour = TransformStamped {
        header: Header::from_ns(stamp_ns, RIG_FRAME),
        child_frame_id: COLOUR_FRAME.into(),
        translation: [0.0; 3],
        rotation: quaternion(&BODY_FROM_OPTICAL),
    };
    let (offset, turn) = if unregistered { depth_rig() } else { ([0.0; 3], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) };
    let t = |v: [f64; 3]| -> [f64; 3] {
        let m = &BODY_FROM_OPTICAL;
        [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
    };
    let depth = TransformStamped {
        header: Header::from_ns(stamp_ns, RIG_FRAME),
        child_frame_id: DEPTH_FRAME.into(),
        translation: t(offset),
        rotation: quaternion(&matmul(&BODY_FROM_OPTICAL, &turn)),
    };
    TfMessage { transforms: vec![colour, depth] }
}

/// A `sensor_msgs/CameraInfo` for rectified pinhole intrinsics.
pub fn camera_info(i: &PinholeIntrinsics, width: usize, height: usize, header: Header) -> CameraInfo {
    CameraInfo {
        header,
        info: CameraInfoData {
            width: width as u32,
            height: height as u32,
            distortion_model: "plumb_bob".into(),
            d: vec![0.0; 5],
            k: [i.fx, 0.0, i.cx, 0.0, i.fy, i.cy, 0.0, 0.0, 1.0],
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [i.fx, 0.0, i.cx, 0.0, 0.0, i.fy, i.cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            ..Default::default()
        },
    }
}

/// Stamps of the scenes in a bag: 10 frames a second from a fixed start.
pub fn stamp_of(index: usize) -> i64 {
    1_700_000_000_000_000_000 + index as i64 * 100_000_000
}

struct Rendered {
    index: usize,
    rgb: Vec<u8>,
    depth_mm: Vec<u16>,
    /// The depth camera's map (unregistered bags), metres.
    rig_depth: Option<Vec<f32>>,
}

pub fn synthesize(opts: &SynthOptions) -> Result<SynthReport, SynthError> {
    if opts.count == 0 {
        return Err(SynthError::Invalid("--count must be at least 1".into()));
    }
    if opts.unregistered && opts.bag.is_none() {
        return Err(SynthError::Invalid("--unregistered describes the bag: give --bag too".into()));
    }
    let writer = DatasetWriter::create(&opts.out)?;
    let (w, h) = (opts.width, opts.height);
    let intr = intrinsics_for(w, h, COLOUR_HFOV);
    let (dw, dh) = (((w as f64) * 0.8).round().max(1.0) as usize, ((h as f64) * 0.8).round().max(1.0) as usize);
    let depth_intr = intrinsics_for(dw, dh, DEPTH_HFOV);
    let mut bag = match &opts.bag {
        Some(path) => {
            let mut b = BagWriter::create(path)?;
            b.add_topic("/tf_static", messages::TF_MESSAGE, true)?;
            for (topic, ty) in [
                (COLOUR_TOPIC, messages::IMAGE),
                (COLOUR_INFO_TOPIC, messages::CAMERA_INFO),
                (DEPTH_TOPIC, messages::IMAGE),
                (DEPTH_INFO_TOPIC, messages::CAMERA_INFO),
            ] {
                b.add_topic(topic, ty, false)?;
            }
            b.write("/tf_static", stamp_of(0), &rig_transforms(stamp_of(0), opts.unregistered).encode())?;
            Some(b)
        }
        None => None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| SynthError::Invalid(format!("cannot start worker threads: {e}")))?;
    let hist = Mutex::new(DepthHistogram::default());
    let mut progress = Progress::new("synth", opts.count as u64, "scenes");
    let chunk = pool.current_num_threads().max(1) * 4;
    let (rig_offset, rig_turn) = depth_rig();
    for start in (0..opts.count).step_by(chunk) {
        let end = (start + chunk).min(opts.count);
        let rendered: Vec<Result<Rendered, ExportError>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map(|index| {
                    let (scene, pose) = generate(opts.kind, opts.seed, index as u64);
                    let view = View { intrinsics: intr, width: w, height: h, pose };
                    let (rgb, depth) = render(&scene, &view);
                    let depth_mm: Vec<u16> = depth.iter().map(|&d| if d > 0.0 { metres_to_mm(f64::from(d)) } else { 0 }).collect();
                    writer.write_sample(&format!("{index:06}"), &rgb, &depth_mm, w, h)?;
                    let mut local = DepthHistogram::default();
                    local.add(&depth_mm);
                    hist.lock().unwrap_or_else(|e| e.into_inner()).merge(&local);
                    let rig_depth = (opts.bag.is_some() && opts.unregistered).then(|| {
                        let rig = View { intrinsics: depth_intr, width: dw, height: dh, pose: pose.rig(rig_offset, rig_turn) };
                        render_depth(&scene, &rig)
                    });
                    Ok(Rendered { index, rgb, depth_mm, rig_depth })
                })
                .collect()
        });
        for r in rendered {
            let r = r?;
            if let Some(b) = bag.as_mut() {
                write_bag_frame(b, &r, (w, h, &intr), (dw, dh, &depth_intr))?;
            }
            progress.set(r.index as u64 + 1, "");
        }
    }
    progress.finish();
    let bag_path = match bag {
        Some(b) => Some(b.finish()?),
        None => None,
    };
    let stamps: Vec<i64> = (0..opts.count).map(|i| i as i64).collect();
    let split = split_by_time(&stamps, opts.eval_fraction, 0);
    let line = |i: &usize| ListLine { name: format!("{i:06}"), focal: intr.fx };
    writer.write_list("train.txt", &split.train.iter().map(line).collect::<Vec<_>>())?;
    writer.write_list("eval.txt", &split.eval.iter().map(line).collect::<Vec<_>>())?;
    let hist = hist.into_inner().unwrap_or_else(|e| e.into_inner());
    let max_depth = choose_max_depth(&hist);
    let (iw, ih) = choose_input_size(w, h);
    let kind = match opts.kind {
        SceneKind::Indoor => "indoor",
        SceneKind::Street => "street",
    };
    let config = write_config(&ConfigSpec {
        name: format!("synth_{kind}"),
        root: writer.root().to_owned(),
        input_width: iw,
        input_height: ih,
        max_depth,
        camera: Some([intr.fx, intr.fy, intr.cx, intr.cy, w as f64, h as f64]),
        model_from: opts.model_from.clone(),
        overrides: opts.overrides.clone(),
        notes: vec![format!(
            "Synthetic {kind} scenes made by clip_depth dataset synth (seed {}, {} scenes, {w}x{h}): exact ray-cast depth",
            opts.seed, opts.count
        )],
    })?;
    let range = match (hist.quantile(0.0), hist.quantile(0.5), hist.quantile(1.0)) {
        (Some(a), Some(b), Some(c)) => Some([a, b, c]),
        _ => None,
    };
    let report = SynthReport {
        train: split.train.len(),
        eval: split.eval.len(),
        coverage: hist.coverage(),
        range,
        max_depth,
        intrinsics: intr,
        config,
        bag: bag_path,
    };
    writer.write_json(
        "summary.json",
        &json!({
            "source": "synth",
            "kind": kind,
            "seed": opts.seed,
            "count": opts.count,
            "size": [w, h],
            "train": report.train,
            "eval": report.eval,
            "depth_coverage": report.coverage,
            "depth_range_m": range.map(|[a, b, c]| json!({"min": a, "median": b, "max": c})),
            "max_depth": max_depth,
            "intrinsics": {"fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy},
            "bag": report.bag.as_ref().map(|p| p.display().to_string()),
            "unregistered": opts.unregistered,
        }),
    )?;
    Ok(report)
}

fn write_bag_frame(
    b: &mut BagWriter,
    r: &Rendered,
    (w, h, intr): (usize, usize, &PinholeIntrinsics),
    (dw, dh, dintr): (usize, usize, &PinholeIntrinsics),
) -> Result<(), BagError> {
    let stamp = stamp_of(r.index);
    let log = stamp + 2_000_000;
    let colour = Image {
        header: Header::from_ns(stamp, COLOUR_FRAME),
        height: h as u32,
        width: w as u32,
        encoding: "rgb8".into(),
        is_bigendian: false,
        step: (w * 3) as u32,
        data: &r.rgb,
    };
    b.write(COLOUR_TOPIC, log, &colour.encode())?;
    b.write(COLOUR_INFO_TOPIC, log, &camera_info(intr, w, h, Header::from_ns(stamp, COLOUR_FRAME)).encode())?;
    let (bytes, frame, dw, dh, dintr): (Vec<u8>, &str, usize, usize, &PinholeIntrinsics) = match &r.rig_depth {
        Some(d) => (
            d.iter().flat_map(|&m| (if m > 0.0 { metres_to_mm(f64::from(m)) } else { 0 }).to_le_bytes()).collect(),
            DEPTH_FRAME,
            dw,
            dh,
            dintr,
        ),
        None => (r.depth_mm.iter().flat_map(|v| v.to_le_bytes()).collect(), COLOUR_FRAME, w, h, intr),
    };
    let depth = Image {
        header: Header::from_ns(stamp, frame),
        height: dh as u32,
        width: dw as u32,
        encoding: "16UC1".into(),
        is_bigendian: false,
        step: (dw * 2) as u32,
        data: &bytes,
    };
    b.write(DEPTH_TOPIC, log + 1_000_000, &depth.encode())?;
    b.write(DEPTH_INFO_TOPIC, log + 1_000_000, &camera_info(dintr, dw, dh, Header::from_ns(stamp, frame)).encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rosbag::tf::{Rigid, TfTree};

    #[test]
    fn depth_is_exact_and_scenes_are_reproducible() {
        for kind in [SceneKind::Indoor, SceneKind::Street] {
            let (scene, pose) = generate(kind, 11, 3);
            let view = View { intrinsics: intrinsics_for(40, 30, COLOUR_HFOV), width: 40, height: 30, pose };
            let (rgb, depth) = render(&scene, &view);
            let mut valid = 0;
            for v in 0..30 {
                for u in 0..40 {
                    let z = f64::from(depth[v * 40 + u]);
                    if z == 0.0 {
                        continue;
                    }
                    valid += 1;
                    // Back-projected with the intrinsics, the point lies on a surface.
                    let (o, d) = view.ray(u as f64, v as f64);
                    let p = shapes::add(o, shapes::scale(d, z));
                    let near = scene.objects.iter().map(|(s, _)| s.distance(p)).fold(f64::INFINITY, f64::min);
                    assert!(near < 1e-5 * (1.0 + z), "{kind:?} ({u}, {v}) at {z} m is {near} m from every surface");
                }
            }
            assert!(valid > 600, "{kind:?}: {valid}");
            let (scene2, pose2) = generate(kind, 11, 3);
            assert_eq!(render(&scene2, &View { pose: pose2, ..view }).0, rgb);
            assert_ne!(generate(kind, 11, 4).1, pose);
            // Texture and shading: far from flat.
            let distinct: std::collections::HashSet<&[u8]> = rgb.chunks(3).collect();
            assert!(distinct.len() > 50, "{kind:?}: {} colours", distinct.len());
        }
    }

    #[test]
    fn the_rig_in_tf_matches_the_rendered_rig() {
        let mut tree = TfTree::default();
        tree.add(&rig_transforms(0, true));
        let t = tree.lookup(COLOUR_FRAME, DEPTH_FRAME).unwrap();
        let (offset, turn) = depth_rig();
        let want = Rigid { r: turn, t: offset };
        for p in [[0.0, 0.0, 1.0], [0.3, -0.2, 2.5]] {
            let (a, b) = (t.apply(p), want.apply(p));
            assert!((0..3).all(|i| (a[i] - b[i]).abs() < 1e-12), "{a:?} vs {b:?}");
        }
        // And the rig pose places the depth camera where the transform says.
        let pose = Pose::looking([1.0, 1.5, -2.0], 0.7, -0.2, 0.03);
        let rig = pose.rig(offset, turn);
        let world = |pose: &Pose, p: [f64; 3]| (0..3).fold(pose.position, |acc, k| shapes::add(acc, shapes::scale(pose.axes[k], p[k])));
        let p = [0.2, 0.1, 3.0];
        let (a, b) = (world(&rig, p), world(&pose, t.apply(p)));
        assert!((0..3).all(|i| (a[i] - b[i]).abs() < 1e-12));
    }
}
