//! `clip_depth bench`: per-stage latency of the whole pipeline, from a
//! camera-sized RGB frame to a camera-sized depth map.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use clip_depth_ros::model::spaceclip::random_state_dict;
use clip_depth_ros::model::{BackboneConfig, DecoderConfig, ModelFiles, SpaceClip};
use clip_depth_ros::device::memory;
use clip_depth_ros::{DepthEstimator, DeviceSpec, ImageView, PixelFormat, StageTimings};

use crate::args::{parse_size, BackboneArgs, ModelArgs, RunArgs};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model YAML (SPACE-CLIP training YAML or `model_type: depthclip`);
    /// without --checkpoint the model gets random weights (DepthCLIP: of
    /// the CLIP its `clip_vis` names, e.g. RN50, ViT-B/16, or --clip-config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Real weights to time (needs --config).
    #[arg(long, requires = "config")]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Backbone preset for random weights when no --clip-config is given.
    #[arg(long, default_value = "openai/clip-vit-base-patch16")]
    preset: String,
    #[command(flatten)]
    run: RunArgs,
    /// Batch sizes to time (default: 1 4 on the CPU, 1 4 16 on CUDA).
    #[arg(long, num_args = 1..)]
    batch: Vec<usize>,
    /// Input frame and output depth size, WxH.
    #[arg(long, value_parser = parse_size, default_value = "640x480")]
    size: (usize, usize),
    /// Timed iterations per batch size (default 10; 3 with --train).
    #[arg(long)]
    iters: Option<usize>,
    /// Untimed iterations first (default 2; 1 with --train).
    #[arg(long)]
    warmup: Option<usize>,
    /// Time a training step instead (batch 8 by default; the ground truth at --size).
    #[arg(long)]
    train: bool,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Where frames are preprocessed: `device` (tensor ops on the model's
    /// device, the default on a GPU) or `cpu` (the default on the CPU).
    #[arg(long)]
    preprocess_on: Option<PreprocessOn>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreprocessOn {
    Cpu,
    Device,
}

fn load(args: &BenchArgs) -> Result<(DepthEstimator, &'static str)> {
    if let (Some(config), Some(checkpoint)) = (&args.config, &args.checkpoint) {
        let model = ModelArgs {
            config: config.clone(),
            checkpoint: checkpoint.clone(),
            backbone: args.backbone.clone(),
            run: args.run.clone(),
        };
        return Ok((model.load()?, "checkpoint"));
    }
    if let Some(config) = &args.config {
        // Random weights of the architecture the config (and --clip-config) describe.
        let files = ModelFiles { config: config.clone(), clip_config: args.backbone.clip_config.clone(), ..Default::default() };
        return Ok((DepthEstimator::random(&files, args.run.device, args.run.dtype)?, "random"));
    }
    // The official SPACE-CLIP at full size: its defaults on a preset backbone.
    let (backbone, decoder) = architecture(None, args.backbone.clip_config.as_deref(), &args.preset)?;
    let device = args.run.device.open()?;
    let vb = random_state_dict(&backbone, &decoder, 0)?.into_var_builder(args.run.dtype.0, &device);
    let model = SpaceClip::new(vb, &backbone, &decoder)?;
    Ok((DepthEstimator::new(Box::new(model), device, args.run.dtype.0).with_name(args.preset.clone()), "random"))
}

/// The architecture of random weights: the training YAML (or the official
/// defaults) and an HF config (or a preset).
fn architecture(
    config: Option<&std::path::Path>,
    clip_config: Option<&std::path::Path>,
    preset: &str,
) -> Result<(BackboneConfig, DecoderConfig)> {
    let decoder = match config {
        Some(path) => DecoderConfig::from_yaml_file(path)?,
        None => DecoderConfig::default(),
    };
    let backbone = match clip_config {
        Some(path) => BackboneConfig::from_json_file(path)?,
        None => BackboneConfig::from_preset(preset)
            .with_context(|| format!("unknown preset {preset:?} ({})", BackboneConfig::PRESETS.join(", ")))?,
    };
    Ok((backbone, decoder))
}

/// min / median / p95 of a sample, in ms.
fn stats(mut ms: Vec<f64>) -> [f64; 3] {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    [ms[0], at(0.5), at(0.95)]
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if args.train {
        clip_depth_ros::retain_freed_memory();
        if let Some(config) = &args.config {
            let family = clip_depth_ros::model::ModelFamily::of_config(config)?;
            anyhow::ensure!(
                family.imp().training() == clip_depth_ros::model::Training::Decoder,
                "--train times a decoder's training step: {} is a {} model, which has none",
                config.display(),
                family.title()
            );
        }
        let (backbone, decoder) = architecture(args.config.as_deref(), args.backbone.clip_config.as_deref(), &args.preset)?;
        anyhow::ensure!(args.batch.len() <= 1, "--train times one batch size");
        let bench = crate::bench_train::TrainBench {
            backbone,
            decoder,
            batch: args.batch.first().copied().unwrap_or(8),
            size: args.size,
            iters: args.iters.unwrap_or(3).max(1),
            warmup: args.warmup.unwrap_or(1),
            json: args.json,
            device: args.run.device.open()?,
        };
        return crate::bench_train::run(bench);
    }
    let iters = args.iters.unwrap_or(10);
    let warmup = args.warmup.unwrap_or(2);
    anyhow::ensure!(iters > 0, "--iters must be at least 1");
    anyhow::ensure!(args.batch.iter().all(|&b| b > 0), "--batch sizes must be at least 1");
    let (mut estimator, weights) = load(&args)?;
    if let Some(on) = args.preprocess_on {
        estimator.set_device_preprocessing(on == PreprocessOn::Device);
    }
    let batches = if !args.batch.is_empty() {
        args.batch.clone()
    } else if args.run.device == DeviceSpec::Cpu {
        vec![1, 4]
    } else {
        vec![1, 4, 16]
    };
    let (w, h) = args.size;
    // A textured synthetic frame: timing must not depend on content, but
    // keep it realistic for the resizer.
    let frame: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7 + i / (w * 3) * 13) % 251) as u8).collect();
    let view = ImageView::packed(&frame, w, h, PixelFormat::Rgb8)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    let mut results = Vec::new();
    for &batch in &batches {
        let views = vec![view; batch];
        memory::reset_peak(estimator.device());
        for _ in 0..warmup {
            estimator.estimate_batch(&views, (w, h))?;
        }
        let mut samples: Vec<StageTimings> = Vec::with_capacity(iters);
        for _ in 0..iters {
            samples.push(estimator.estimate_batch(&views, (w, h))?.1);
        }
        let ms = |f: fn(&StageTimings) -> Duration| {
            stats(samples.iter().map(|t| f(t).as_secs_f64() * 1e3).collect())
        };
        let stages = [
            ("preprocess", ms(|t| t.preprocess)),
            ("encoder", ms(|t| t.encoder)),
            ("decoder", ms(|t| t.decoder)),
            ("resize", ms(|t| t.resize)),
            ("total", ms(|t| t.total())),
        ];
        let fps = batch as f64 * 1e3 / stages[4].1[1];
        results.push((batch, stages, fps, memory::peak_mib(estimator.device())));
    }
    let peak = peak_rss_mib();
    let model_desc = estimator.model().describe();
    let (in_w, in_h) = estimator.input_dims();
    let cfg = estimator.model().input_description();
    if args.json {
        let doc = serde_json::json!({
            "device": args.run.device.to_string(),
            "dtype": args.run.dtype.to_string(),
            "threads": threads,
            "weights": weights,
            "model": model_desc,
            "input": [in_w, in_h],
            "backbone": {"hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "patch": cfg.patch_size, "image": cfg.image_size},
            "size": [w, h],
            "iters": iters,
            "peak_host_memory_mib": peak,
            "preprocess_on": if estimator.device_preprocessing() { "device" } else { "cpu" },
            "results": results.iter().map(|(batch, stages, fps, device_peak)| serde_json::json!({
                "batch": batch,
                "frames_per_s": fps,
                "peak_device_memory_mib": device_peak,
                "stages_ms": stages.iter().map(|(name, [min, med, p95])| (name.to_string(), serde_json::json!({"min": min, "median": med, "p95": p95}))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "clip_depth bench: {} weights, {model_desc}; {w}x{h} frames, preprocessed on the {}; device {}, dtype {}, {threads} threads; {} iterations after {} warm-up",
        weights,
        if estimator.device_preprocessing() { "device" } else { "cpu" },
        args.run.device,
        args.run.dtype,
        iters,
        warmup
    );
    println!("{:>5} {:<11} {:>9} {:>9} {:>9}", "batch", "stage", "min ms", "median", "p95");
    for (batch, stages, fps, device_peak) in &results {
        for (name, [min, med, p95]) in stages {
            println!("{batch:>5} {name:<11} {min:>9.2} {med:>9.2} {p95:>9.2}");
        }
        println!("{batch:>5} {:<11} {fps:>9.2}", "frames/s");
        if let Some(peak) = device_peak {
            println!("{batch:>5} {:<11} {peak:>9.0} MiB (device pool)", "peak memory");
        }
    }
    if let Some(peak) = peak {
        println!("peak host memory: {peak:.0} MiB");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct RandomCheckpointArgs {
    /// Training YAML for the decoder (default: the official settings).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Backbone HF config.json (default: --preset).
    #[arg(long)]
    clip_config: Option<PathBuf>,
    #[arg(long, default_value = "openai/clip-vit-base-patch16")]
    preset: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the .safetensors file.
    #[arg(long)]
    output: PathBuf,
}

pub fn write_random_checkpoint(args: RandomCheckpointArgs) -> Result<ExitCode> {
    let (backbone, decoder) = architecture(args.config.as_deref(), args.clip_config.as_deref(), &args.preset)?;
    let dict = random_state_dict(&backbone, &decoder, args.seed)?;
    candle_core::safetensors::save(dict.tensors(), &args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "{} random tensors written to {} (NOT trained: for timing and plumbing only)",
        dict.tensors().len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
