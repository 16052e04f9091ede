//! `clip_depth eval`: the standard depth metrics of a checkpoint (or of
//! saved predictions) over the config's evaluation list, with the authors'
//! `validate()` semantics: depth-range mask, dataset crop, optional median
//! scaling and flip test-time augmentation, clipping, per-image metrics
//! averaged over images.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use serde_json::json;

use clip_depth_ros::data::{read_list, DataSpec, Loader, Sample, SkipLog};
use clip_depth_ros::eval::visuals::{panel_row, save_png};
use clip_depth_ros::eval::{EvalConfig, EvalCrop, Metrics, NonFinite, RunningMetrics, NAMES};
use clip_depth_ros::image::preprocess::Preprocessor;
use clip_depth_ros::progress::Progress;
use clip_depth_ros::config_text::config_text;
use clip_depth_ros::data::sample::{flip_plane, flip_rgb};
use clip_depth_ros::image::PackedRgb;
use clip_depth_ros::kernels::mirror::flip_width;
use clip_depth_ros::model::EvalInput;
use clip_depth_ros::{DepthEstimator, ImageView, ModelFiles, PixelFormat};

use crate::args::{BackboneArgs, RunArgs};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The YAML naming the evaluation list (filenames_file_eval, data_path_eval, gt_path_eval, min/max_depth_eval, ...).
    #[arg(long)]
    config: PathBuf,
    /// The checkpoint to evaluate (train.py .pt, .safetensors, or a decoder with --clip-weights).
    #[arg(long, required_unless_present = "predictions")]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    backbone: BackboneArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Average with the prediction of the mirrored input (default: the config's eval_flip_tta).
    #[arg(long, overrides_with = "no_flip_tta")]
    flip_tta: bool,
    /// No mirrored input, whatever the config says.
    #[arg(long, overrides_with = "flip_tta")]
    no_flip_tta: bool,
    /// Evaluation crop (default: the config's eval_crop / eigen_crop / garg_crop).
    #[arg(long)]
    crop: Option<EvalCrop>,
    /// Scale each prediction by median(gt) / median(pred) (default: the config's median_scaling_eval).
    #[arg(long, overrides_with = "no_median_scaling")]
    median_scaling: bool,
    /// No median scaling, whatever the config says.
    #[arg(long, overrides_with = "median_scaling")]
    no_median_scaling: bool,
    /// Non-finite predictions at valid pixels: drop (NaN left out, as the
    /// authors' compute_errors does; infinities clipped to the eval range)
    /// or bts (NaN as min_depth_eval, +Inf as max_depth_eval: penalised, as
    /// BTS evaluates). Counted either way.
    #[arg(long, default_value = "drop")]
    non_finite: NonFinite,
    /// Write the metrics (and the protocol used) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one CSV row of metrics per image.
    #[arg(long)]
    per_image: Option<PathBuf>,
    /// Write RGB | ground truth | prediction | error pictures into DIR.
    #[arg(long)]
    visuals: Option<PathBuf>,
    /// How many pictures (evenly spread over the list).
    #[arg(long, default_value_t = 8, requires = "visuals")]
    count: usize,
    /// Evaluate saved predictions instead of a model: DIR/NNNNN.npy, float32
    /// (H, W) metres at the ground truth's size, NNNNN the 0-based line index.
    #[arg(long, conflicts_with = "checkpoint")]
    predictions: Option<PathBuf>,
    /// Save every prediction as DIR/NNNNN.npy (the format --predictions reads).
    #[arg(long)]
    save_predictions: Option<PathBuf>,
    /// Override a config key, e.g. --set max_depth_eval=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}


/// The prediction for one sample at its own size, unclamped. SPACE-CLIP
/// takes the loader's exact input tensor (mirrored as a tensor for flip
/// TTA, as the authors do); other families prepare the processed image
/// their own way (DepthCLIP: its crop and size), mirrored as an image.
fn predict(estimator: &DepthEstimator, sample: &Sample, flip: bool) -> Result<Vec<f32>> {
    let size = (sample.width, sample.height);
    let raw = |rgb: &[u8]| -> Result<Vec<f32>> {
        let view = ImageView::packed(rgb, sample.width, sample.height, PixelFormat::Rgb8)?;
        Ok(estimator.estimate_sized_raw(&[view], &[size])?.0.remove(0).data)
    };
    let mut depth;
    let mirrored;
    if estimator.family().imp().eval_input() == EvalInput::LoaderPixels {
        let s = estimator.input_size();
        let pixels = Tensor::from_vec(sample.pixels.clone(), (1, 3, s, s), &Device::Cpu)?;
        depth = estimator.depth_from_pixels(&pixels, size, false)?.remove(0).data;
        if !flip {
            return Ok(depth);
        }
        mirrored = estimator.depth_from_pixels(&flip_width(&pixels)?, size, false)?.remove(0).data;
    } else {
        depth = raw(&sample.rgb)?;
        if !flip {
            return Ok(depth);
        }
        let rgb = PackedRgb { data: sample.rgb.clone(), width: sample.width, height: sample.height };
        mirrored = raw(&flip_rgb(&rgb).data)?;
    }
    let back = flip_plane(&mirrored, sample.width);
    depth.iter_mut().zip(back).for_each(|(a, b)| *a = 0.5 * (*a + b));
    Ok(depth)
}

fn npy_name(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index:05}.npy"))
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let text = config_text(&args.config, &args.set)?;
    let cfg = EvalConfig::load(&args.config, &text)?;
    let mut protocol = cfg.protocol().map_err(anyhow::Error::msg)?;
    if let Some(crop) = args.crop {
        protocol.crop = crop;
    }
    if args.median_scaling || args.no_median_scaling {
        protocol.median_scaling = args.median_scaling;
    }
    protocol.non_finite = args.non_finite;
    let flip = if args.flip_tta || args.no_flip_tta { args.flip_tta } else { cfg.eval_flip_tta };
    let entries = Arc::new(read_list(&cfg.filenames_file_eval)?);
    anyhow::ensure!(!entries.is_empty(), "{} lists no samples", cfg.filenames_file_eval.display());

    let estimator = match &args.checkpoint {
        Some(checkpoint) => {
            let files = ModelFiles {
                config: args.config.clone(),
                checkpoint: checkpoint.clone(),
                clip_weights: args.backbone.clip_weights.clone(),
                clip_config: args.backbone.clip_config.clone(),
            };
            Some(DepthEstimator::load(&files, args.run.device, args.run.dtype)?)
        }
        None => None,
    };
    let preprocessor = match &estimator {
        Some(e) => e.preprocessor().clone(),
        // Saved predictions: the model input is not needed, only the image.
        None => Preprocessor::new(16, [0.0; 3], [1.0; 3]),
    };
    // SPACE-CLIP configs give the dataset's image size (the authors' eval
    // resizes to it); the prompt families take whole frames (their crop is
    // their own).
    let frames_as_they_are = estimator.as_ref().is_some_and(|e| e.family().imp().eval_input() == EvalInput::Frames);
    let (input_width, input_height) = if frames_as_they_are { (0, 0) } else { (cfg.input_width, cfg.input_height) };
    let spec = DataSpec {
        dataset: cfg.dataset.to_ascii_lowercase(),
        data_root: cfg.data_root(),
        gt_root: cfg.gt_root(),
        input_height,
        input_width,
        kb_crop: cfg.do_kb_crop,
        nyu_crop: cfg.do_nyu_crop_eval,
        rotate_degree: None,
        depth_divisor: cfg.depth_divisor(),
        preprocessor,
    };
    for dir in [&args.visuals, &args.save_predictions].into_iter().flatten() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let picks: Vec<usize> = if args.visuals.is_some() {
        let (n, k) = (entries.len(), args.count.min(entries.len()));
        (0..k).map(|i| if k == 1 { 0 } else { i * (n - 1) / (k - 1) }).collect()
    } else {
        Vec::new()
    };

    let e2 = entries.clone();
    let load = Arc::new(move |i: usize| spec.load_eval(&e2[i], i));
    let mut loader = Loader::new(entries.len(), cfg.workers.clamp(1, 4), 4, load);
    let skips = SkipLog::new(cfg.warn_on_skipped_samples, cfg.skip_warning_limit);
    let mut average = RunningMetrics::default();
    let mut rows: Vec<(usize, Metrics)> = Vec::new();
    let mut progress = Progress::new("eval", entries.len() as u64, "images");
    let (mut no_gt, mut no_valid, mut non_finite) = (0usize, 0usize, 0usize);
    while let Some((i, r)) = loader.next_item() {
        let line = entries[i].line_no;
        let sample = match r {
            Ok(s) => s,
            Err(reason) => {
                anyhow::ensure!(!cfg.strict_data_loading, "evaluation list line {line}: {reason} (strict_data_loading)");
                skips.skip(&format!("{} line {line}", cfg.filenames_file_eval.display()), &reason);
                continue;
            }
        };
        let Some(gt) = sample.depth.as_deref() else {
            no_gt += 1;
            progress.set(i as u64 + 1, "");
            continue;
        };
        let pred = match (&estimator, &args.predictions) {
            (Some(est), _) => predict(est, &sample, flip)?,
            (None, Some(dir)) => {
                let path = npy_name(dir, i);
                let t = Tensor::read_npy(&path).with_context(|| format!("cannot read prediction {}", path.display()))?;
                let t = t.to_dtype(candle_core::DType::F32)?;
                anyhow::ensure!(
                    t.dims() == [sample.height, sample.width],
                    "{} is {:?}, the ground truth is {}x{}",
                    path.display(),
                    t.dims(),
                    sample.height,
                    sample.width
                );
                t.flatten_all()?.to_vec1::<f32>()?
            }
            (None, None) => unreachable!("clap requires --checkpoint or --predictions"),
        };
        if let Some(dir) = &args.save_predictions {
            Tensor::from_slice(&pred, (sample.height, sample.width), &Device::Cpu)?.write_npy(npy_name(dir, i))?;
        }
        non_finite += protocol.non_finite_predictions(gt, &pred, sample.height, sample.width);
        match protocol.image_metrics(gt, &pred, sample.height, sample.width) {
            Some(m) if m.all_finite() => {
                average.add(&m);
                rows.push((i, m));
            }
            _ => no_valid += 1,
        }
        if let (Some(dir), true) = (&args.visuals, picks.contains(&i)) {
            let (px, w, h) = panel_row(&sample.rgb, Some(gt), &pred, sample.width, sample.height);
            save_png(&dir.join(format!("{i:05}.png")), &px, w, h)?;
        }
        let shown = average.value().map(|m| format!("AbsRel {:.4} d1 {:.4}", m.abs_rel, m.a1)).unwrap_or_default();
        progress.set(i as u64 + 1, shown);
    }
    progress.finish();
    let metrics = average.value().context("no image had valid ground truth: nothing to evaluate")?;

    println!(
        "{} images evaluated ({} skipped, {} without ground truth, {} without valid pixels); crop {:?}, median scaling {}, flip TTA {}",
        average.count,
        skips.count(),
        no_gt,
        no_valid,
        protocol.crop,
        protocol.median_scaling,
        flip
    );
    if non_finite > 0 {
        let how = match protocol.non_finite {
            NonFinite::Drop => "NaN left out of the metrics, infinities clipped to the eval range (--non-finite bts penalises NaN too)",
            NonFinite::Bts => "counted as min_depth_eval (NaN, -Inf) or max_depth_eval (+Inf)",
        };
        println!("{non_finite} valid pixel(s) had a non-finite prediction: {how}");
    }
    let mut header = String::new();
    let mut values = String::new();
    for (name, v) in NAMES.iter().zip(metrics.values()) {
        let _ = write!(header, "{name:>10}");
        let _ = write!(values, "{v:>10.4}");
    }
    println!("{header}\n{values}");
    if let Some(path) = &args.json {
        let mut m = serde_json::Map::new();
        for (name, v) in NAMES.iter().zip(metrics.values()) {
            m.insert(name.to_string(), json!(v));
        }
        let doc = json!({
            "metrics": m,
            "images": average.count,
            "skipped": skips.count(),
            "non_finite_predictions": non_finite,
            "protocol": {
                "dataset": protocol.dataset, "min_depth_eval": protocol.min_depth, "max_depth_eval": protocol.max_depth,
                "crop": format!("{:?}", protocol.crop).to_lowercase(), "median_scaling": protocol.median_scaling, "flip_tta": flip,
                "non_finite": format!("{:?}", protocol.non_finite).to_lowercase(),
            },
            "checkpoint": args.checkpoint.as_ref().map(|p| p.display().to_string()),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.per_image {
        let mut csv = format!("index,line,rgb,{}\n", NAMES.join(","));
        for (i, m) in &rows {
            let e = &entries[*i];
            let rgb = e.text.split_whitespace().next().unwrap_or("");
            let vals: Vec<String> = m.values().iter().map(|v| format!("{v:.8}")).collect();
            let _ = writeln!(csv, "{i},{},{rgb},{}", e.line_no, vals.join(","));
        }
        std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
