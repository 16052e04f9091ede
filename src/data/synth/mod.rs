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
use crate::data::depth::metres_to_mm;
use crate::geometry::PinholeIntrinsics;
use crate::progress::Progress;
pub use render::{intrinsics_for, render, render_depth, View};
pub use scene::{generate, Pose, Scene, SceneKind};

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The sink the scenes also go to (a recording) failed.
    #[error("{0}")]
    Sink(String),
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
    /// Also render each scene from a depth camera beside the colour camera
    /// ([`depth_rig`]), for a sink that records an unregistered rig.
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
}

/// Where rendered scenes go besides the dataset folder (a recording:
/// `rosbag::scenes::SceneBag`). Called in scene order.
pub trait SceneSink {
    fn scene(&mut self, scene: &RenderedScene<'_>) -> Result<(), String>;
}

/// One rendered scene as a sink sees it.
pub struct RenderedScene<'a> {
    pub index: usize,
    /// Packed RGB8 of the colour camera.
    pub rgb: &'a [u8],
    /// The colour camera's exact depth, millimetres (0 = none).
    pub depth_mm: &'a [u16],
    /// (width, height) and intrinsics of the colour camera.
    pub size: (usize, usize),
    pub intrinsics: &'a PinholeIntrinsics,
    /// With `unregistered`: the depth camera's map in metres, its size and
    /// intrinsics.
    pub rig_depth: Option<(&'a [f32], (usize, usize), &'a PinholeIntrinsics)>,
}

/// Horizontal fields of view: a typical RGB-D colour camera, and its depth
/// camera (wider, as on RealSense and Orbbec units).
pub const COLOUR_HFOV: f64 = 60.0 * std::f64::consts::PI / 180.0;
pub const DEPTH_HFOV: f64 = 70.0 * std::f64::consts::PI / 180.0;

/// The depth camera of the unregistered rig relative to the colour camera
/// (its optical frame): 5 cm to the left, turned 1.5 degrees about the
/// vertical axis.
pub fn depth_rig() -> ([f64; 3], [[f64; 3]; 3]) {
    let a: f64 = 1.5f64.to_radians();
    let (s, c) = a.sin_cos();
    ([-0.05, 0.0, 0.0], [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
}

struct Rendered {
    index: usize,
    rgb: Vec<u8>,
    depth_mm: Vec<u16>,
    /// The depth camera's map (unregistered bags), metres.
    rig_depth: Option<Vec<f32>>,
}

/// Renders the scenes into a dataset folder (and into `sink`, when given),
/// writes the train / eval lists and a training config.
pub fn synthesize(opts: &SynthOptions, mut sink: Option<&mut dyn SceneSink>) -> Result<SynthReport, SynthError> {
    if opts.count == 0 {
        return Err(SynthError::Invalid("--count must be at least 1".into()));
    }
    if opts.unregistered && sink.is_none() {
        return Err(SynthError::Invalid("--unregistered describes the bag: give --bag too".into()));
    }
    let writer = DatasetWriter::create(&opts.out)?;
    let (w, h) = (opts.width, opts.height);
    let intr = intrinsics_for(w, h, COLOUR_HFOV);
    let (dw, dh) = (((w as f64) * 0.8).round().max(1.0) as usize, ((h as f64) * 0.8).round().max(1.0) as usize);
    let depth_intr = intrinsics_for(dw, dh, DEPTH_HFOV);
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
                    let rig_depth = opts.unregistered.then(|| {
                        let rig = View { intrinsics: depth_intr, width: dw, height: dh, pose: pose.rig(rig_offset, rig_turn) };
                        render_depth(&scene, &rig)
                    });
                    Ok(Rendered { index, rgb, depth_mm, rig_depth })
                })
                .collect()
        });
        for r in rendered {
            let r = r?;
            if let Some(sink) = sink.as_deref_mut() {
                let scene = RenderedScene {
                    index: r.index,
                    rgb: &r.rgb,
                    depth_mm: &r.depth_mm,
                    size: (w, h),
                    intrinsics: &intr,
                    rig_depth: r.rig_depth.as_deref().map(|d| (d, (dw, dh), &depth_intr)),
                };
                sink.scene(&scene).map_err(SynthError::Sink)?;
            }
            progress.set(r.index as u64 + 1, "");
        }
    }
    progress.finish();
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
            "unregistered": opts.unregistered,
        }),
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
