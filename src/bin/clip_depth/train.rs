//! `clip_depth train`: trains a model's trainable part (for SPACE-CLIP the
//! decoder, FiLM generators and auxiliary heads) with the authors' recipe,
//! from their YAML as is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::DType;
use clap::Args;

use clip_depth_ros::model::{Precision, TrainOptions};
use clip_depth_ros::config_text::config_text;
use clip_depth_ros::train::{load_trainable, RunOptions, TrainConfig, Trainer, WeightSources};
use clip_depth_ros::DeviceSpec;

use crate::args::BackboneArgs;
use clip_depth_ros::model::{ModelFamily, Training};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The training YAML (the authors' format: configs/nyu.yaml, configs/kitti.yaml).
    #[arg(long)]
    config: PathBuf,
    /// Where last/best/ema weights, train_state, metrics.jsonl and curves.png go.
    #[arg(long)]
    output_dir: PathBuf,
    /// Start from this checkpoint (whole model, or the decoder with --clip-weights).
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Train this many epochs instead of the config's.
    #[arg(long)]
    epochs: Option<u64>,
    /// Stop after N optimiser steps in all (the schedule still spans the epochs).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Continue the run saved in DIR (its last.safetensors and train_state.safetensors).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No rotation, flip or colour jitter; crops at the origin.
    #[arg(long)]
    no_augment: bool,
    /// Keep the file order.
    #[arg(long)]
    no_shuffle: bool,
    /// Store the frozen encoder's features in DIR once and train from them
    /// (no rotation, random crop or colour jitter; the flip is kept).
    #[arg(long)]
    cache_features: Option<PathBuf>,
    /// Seed for initialisation, data order, augmentation and dropout
    /// (default: the config's random_seed, else from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// f32; bf16 on a GPU (the frozen encoder in bf16, training in f32); or
    /// f64 everywhere (a slow reference precision, for checking numerics).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Override a config key, e.g. --set batch_size=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Ctrl-C once: stop after the current step and save; twice: exit now.
fn install_interrupt(stop: Arc<AtomicBool>) {
    let presses = Arc::new(AtomicUsize::new(0));
    let _ = ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\ninterrupt: finishing the current step, then saving last.safetensors and train_state.safetensors (Ctrl-C again to quit at once)");
            stop.store(true, Ordering::SeqCst);
        } else {
            eprintln!("interrupt: quitting without saving");
            std::process::exit(130);
        }
    });
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    clip_depth_ros::retain_freed_memory();
    if ModelFamily::of_config(&args.config)?.imp().training() == Training::Bins {
        return train_depthblip2_bins(args);
    }
    let (mut cfg, decoder) = TrainConfig::load(&args.config, &args.set)?;
    if let Some(epochs) = args.epochs {
        anyhow::ensure!(epochs > 0, "--epochs must be > 0");
        cfg.epochs = epochs;
    }
    let precision = match args.dtype.as_str() {
        "f32" => Precision::default(),
        "bf16" if args.device != DeviceSpec::Cpu => Precision { encoder: DType::BF16, train: DType::F32 },
        "bf16" => bail!("--dtype bf16 needs a CUDA device (the CPU has no bf16 matmul)"),
        "f64" => Precision { encoder: DType::F64, train: DType::F64 },
        other => bail!("--dtype {other:?}: training takes f32, bf16 (GPU) or f64 (reference precision, slow)"),
    };
    let seed = args.seed.or(cfg.random_seed).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let init = match (&args.init, &args.resume, cfg.checkpoint_path.as_deref().filter(|p| !p.trim().is_empty())) {
        (Some(p), _, _) => Some(p.clone()),
        (None, Some(dir), _) => {
            let last = dir.join("last.safetensors");
            anyhow::ensure!(last.is_file(), "--resume {}: no last.safetensors there", dir.display());
            Some(last)
        }
        (None, None, Some(path)) => {
            eprintln!("note: checkpoint_path {path:?} is used as the initial weights (its optimiser state is not restored)");
            Some(PathBuf::from(path))
        }
        _ => None,
    };
    let device = args.device.open()?;
    let sources = WeightSources {
        config: args.config.clone(),
        init,
        clip_weights: args.backbone.clip_weights.clone(),
        clip_config: args.backbone.clip_config.clone(),
    };
    let opts = TrainOptions { aux_heads: cfg.use_multiscale_supervision, dropout: cfg.decoder_dropout };
    let model = load_trainable(&sources, &decoder, opts, seed, &device, precision)?;
    std::fs::create_dir_all(&args.output_dir).with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    // The effective config beside the weights: `infer --config DIR/config.yaml` works.
    let text = config_text(&args.config, &args.set)?;
    std::fs::write(args.output_dir.join("config.yaml"), text).context("cannot write config.yaml")?;

    // And the backbone's HF config, for names without a preset.
    let backbone_json = args.backbone.clip_config.clone().or_else(|| {
        let beside = args.backbone.clip_weights.as_ref()?.parent()?.join("config.json");
        beside.is_file().then_some(beside)
    });
    if let Some(json) = backbone_json {
        std::fs::copy(&json, args.output_dir.join("clip_config.json"))
            .with_context(|| format!("cannot copy {} into the output directory", json.display()))?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    install_interrupt(stop.clone());
    let run = RunOptions {
        output_dir: args.output_dir.clone(),
        max_steps: args.max_steps,
        resume: args.resume.clone(),
        augment: !args.no_augment,
        shuffle: !args.no_shuffle,
        cache_dir: args.cache_features.clone(),
        device,
        stop,
        config_path: args.config.clone(),
    };
    let (epochs, batch) = (cfg.epochs, cfg.batch_size);
    let mut trainer = Trainer::new(cfg, model, run, seed)?;
    let trainable: usize = trainer.model().store().num_elements(clip_depth_ros::model::nn::Role::Trainable);
    let frozen: usize = trainer.model().store().num_elements(clip_depth_ros::model::nn::Role::Frozen);
    eprintln!(
        "training {} ({:.2} M trainable, {:.2} M frozen parameters) on {} for {} epochs, batch {}, seed {seed}",
        decoder.clip_model_name,
        trainable as f64 / 1e6,
        frozen as f64 / 1e6,
        args.device,
        epochs,
        batch
    );
    let outcome = trainer.run()?;
    let best = if outcome.best_abs_rel.is_finite() { format!(", best AbsRel {:.4}", outcome.best_abs_rel) } else { String::new() };
    eprintln!(
        "{} after {} steps{best}; {} samples skipped; outputs in {}",
        if outcome.interrupted {
            "interrupted, saved"
        } else if outcome.finished {
            "finished"
        } else {
            "stopped at --max-steps"
        },
        outcome.steps,
        outcome.skipped,
        args.output_dir.display()
    );
    Ok(if outcome.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// DepthBLIP-2's bins from a few images ([`clip_depth_ros::train::bins::run`]).
fn train_depthblip2_bins(args: TrainArgs) -> Result<ExitCode> {
    use clip_depth_ros::train::bins::{run as train_bins, BinsRun};
    anyhow::ensure!(args.resume.is_none() && args.cache_features.is_none() && args.max_steps.is_none(),
        "--resume, --cache-features and --max-steps are SPACE-CLIP options: DepthBLIP-2 bin training caches its features itself and takes a few seconds");
    anyhow::ensure!(args.dtype == "f32", "DepthBLIP-2 bin training runs in f32");
    let Some(checkpoint) = args.init.clone() else {
        bail!("DepthBLIP-2 bin training needs the BLIP-2 weights: --init <checkpoint> (with --clip-weights <tower file> for LAVIS's)");
    };
    if let Some(epochs) = args.epochs {
        anyhow::ensure!(epochs > 0, "--epochs must be > 0");
    }
    let run = BinsRun {
        config: args.config.clone(),
        overrides: args.set.clone(),
        output_dir: args.output_dir.clone(),
        checkpoint,
        clip_weights: args.backbone.clip_weights.clone(),
        clip_config: args.backbone.clip_config.clone(),
        device: args.device,
        epochs: args.epochs.map(|e| e as usize),
        seed: args.seed,
    };
    let report = train_bins(&run, &|line: &str| eprintln!("{line}"))?;
    eprintln!("wrote {} (use {} as the model config)", report.weights.display(), report.config.display());
    Ok(ExitCode::SUCCESS)
}
