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

/// DepthBLIP-2: only the adaptive-bins MLP trains. The frozen BLIP-2's
/// class probabilities are computed once per image, then the MLP trains
/// for the YAML's epochs; the best (lowest validation loss) MLP is written
/// to `bins_mlp.safetensors` with `bins.json`, and `config.yaml` (the model
/// YAML with `adaptive_bins` pointing at it) beside them.
fn train_depthblip2_bins(args: TrainArgs) -> Result<ExitCode> {
    use clip_depth_ros::data::DataSpec;
    use clip_depth_ros::model::depthblip2::DepthBlip2Config;
    use clip_depth_ros::train::bins::{cache_samples, fit, BinsTrainConfig, TrainableBins};
    use clip_depth_ros::{DepthEstimator, ModelFiles};

    anyhow::ensure!(args.resume.is_none() && args.cache_features.is_none() && args.max_steps.is_none(),
        "--resume, --cache-features and --max-steps are SPACE-CLIP options: DepthBLIP-2 bin training caches its features itself and takes a few seconds");
    anyhow::ensure!(args.dtype == "f32", "DepthBLIP-2 bin training runs in f32");
    let Some(checkpoint) = args.init.clone() else {
        bail!("DepthBLIP-2 bin training needs the BLIP-2 weights: --init <checkpoint> (with --clip-weights <tower file> for LAVIS's)");
    };
    let text = config_text(&args.config, &args.set)?;
    let mut cfg = BinsTrainConfig::from_yaml_str(&text).map_err(anyhow::Error::msg).with_context(|| args.config.display().to_string())?;
    if let Some(epochs) = args.epochs {
        anyhow::ensure!(epochs > 0, "--epochs must be > 0");
        cfg.epochs = epochs as usize;
    }
    // The model config with --set applied, beside the outputs: the model
    // runs on it, and the final config.yaml is it with the trained bins.
    // Paths in it that were relative to the given config are made absolute.
    std::fs::create_dir_all(&args.output_dir).with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    let mut model_yaml: serde_norway::Value = serde_norway::from_str(&text).with_context(|| args.config.display().to_string())?;
    let base = args.config.parent().map(|d| d.to_path_buf()).unwrap_or_default();
    for key in ["tokenizer", "adaptive_bins"] {
        if let Some(serde_norway::Value::String(p)) = model_yaml.get_mut(key) {
            if std::path::Path::new(p.as_str()).is_relative() {
                *p = std::path::absolute(base.join(&*p)).unwrap_or_else(|_| base.join(&*p)).display().to_string();
            }
        }
    }
    let effective = args.output_dir.join("config.yaml");
    std::fs::write(&effective, serde_norway::to_string(&model_yaml)?).context("cannot write config.yaml")?;
    let model_cfg = DepthBlip2Config::from_yaml_file(&effective)?;
    let seed = args.seed.or(cfg.random_seed).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let files = ModelFiles { config: effective.clone(), checkpoint, clip_weights: args.backbone.clip_weights.clone(), clip_config: args.backbone.clip_config.clone() };
    let est = DepthEstimator::load(&files, args.device, Default::default())?;
    let spec = |data: &std::path::Path, gt: Option<&std::path::Path>| DataSpec {
        dataset: cfg.dataset.to_ascii_lowercase(),
        data_root: data.to_path_buf(),
        gt_root: gt.map(|g| g.to_path_buf()),
        input_height: 0,
        input_width: 0,
        kb_crop: false,
        nyu_crop: false,
        rotate_degree: None,
        depth_divisor: cfg.divisor(),
        preprocessor: est.preprocessor().clone(),
    };
    let t = std::time::Instant::now();
    let train = cache_samples(&est, &spec(&cfg.data_path, cfg.gt_path.as_deref()), &cfg.filenames_file)?;
    let val = match &cfg.filenames_file_eval {
        Some(list) => {
            let data = cfg.data_path_eval.clone().unwrap_or_else(|| cfg.data_path.clone());
            let gt = cfg.gt_path_eval.clone().or_else(|| cfg.gt_path.clone());
            cache_samples(&est, &spec(&data, gt.as_deref()), list)?
        }
        None => Vec::new(),
    };
    eprintln!(
        "class probabilities of {} training and {} validation images computed in {:.1} s ({})",
        train.len(),
        val.len(),
        t.elapsed().as_secs_f64(),
        est.model_name()
    );
    let bins = model_cfg.scaled_bins();
    let device = candle_core::Device::Cpu;
    let mlp = match &model_cfg.adaptive_bins {
        Some(path) => {
            eprintln!("starting from {}", path.display());
            TrainableBins::from_file(path, &bins, cfg.bins_dropout, &device)?
        }
        None => TrainableBins::new(&bins, cfg.bins_dropout, None, seed, &device)?,
    };
    let t = std::time::Instant::now();
    let outcome = fit(&mlp, &cfg, &train, &val, seed, |epoch, loss, val| match val {
        Some(v) => eprintln!("epoch {:>3}: train loss {loss:.4}, validation loss {v:.4}", epoch + 1),
        None => eprintln!("epoch {:>3}: train loss {loss:.4}", epoch + 1),
    })?;
    let weights = args.output_dir.join("bins_mlp.safetensors");
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    clip_depth_ros::weights::write_safetensors(&weights, &mlp.state_dict(), &meta)?;
    let summary = serde_json::json!({
        "bin_list": bins,
        "bins": outcome.bins_after,
        "initial_bins": outcome.bins_before,
        "best_epoch": outcome.best_epoch + 1,
        "train_loss": outcome.train_loss,
        "validation_loss": outcome.val_loss,
        "seed": seed,
    });
    std::fs::write(args.output_dir.join("bins.json"), serde_json::to_string_pretty(&summary)? + "\n").context("cannot write bins.json")?;
    if let serde_norway::Value::Mapping(map) = &mut model_yaml {
        map.insert("adaptive_bins".into(), "bins_mlp.safetensors".into());
    }
    std::fs::write(&effective, serde_norway::to_string(&model_yaml)?).context("cannot write config.yaml")?;
    let show = |b: &[f64]| b.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ");
    eprintln!("bins [{}] -> [{}] (epoch {} of {}, {:.1} s)", show(&outcome.bins_before), show(&outcome.bins_after), outcome.best_epoch + 1, cfg.epochs, t.elapsed().as_secs_f64());
    eprintln!("wrote {} (use {} as the model config)", weights.display(), args.output_dir.join("config.yaml").display());
    Ok(ExitCode::SUCCESS)
}
