//! Arguments every command that loads a model shares, so the flags mean
//! the same everywhere.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use clip_depth_ros::{DepthEstimator, DeviceSpec, ModelDType, ModelFiles};

/// The backbone's weight and config files, when not in the checkpoint.
#[derive(Args, Debug, Clone, Default)]
pub struct BackboneArgs {
    /// Separate HF CLIP model.safetensors, for a decoder-only checkpoint; DepthBLIP-2 with LAVIS weights: the image tower's file (eva_vit_g.pth, clip_vit_L.pth).
    #[arg(long)]
    pub clip_weights: Option<PathBuf>,
    /// HF config.json of the backbone (default: beside --clip-weights, else the preset of clip_model_name); DepthBLIP-2: the Hugging Face BLIP-2 config.json (default: beside the checkpoint).
    #[arg(long)]
    pub clip_config: Option<PathBuf>,
}

/// Where and in which precision the model runs.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Model precision: f32, f16 or bf16 (output is always f32).
    #[arg(long, default_value = "f32")]
    pub dtype: ModelDType,
}

/// A trained model: its config, checkpoint and backbone files.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Training YAML (decoder_channels, main_path_indices, max_depth, ...).
    #[arg(long)]
    pub config: PathBuf,
    /// Checkpoint: train.py .pt/.pth or a .safetensors state dict.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

impl ModelArgs {
    pub fn files(&self) -> ModelFiles {
        ModelFiles {
            config: self.config.clone(),
            checkpoint: self.checkpoint.clone(),
            clip_weights: self.backbone.clip_weights.clone(),
            clip_config: self.backbone.clip_config.clone(),
        }
    }

    pub fn load(&self) -> Result<DepthEstimator> {
        Ok(DepthEstimator::load(&self.files(), self.run.device, self.run.dtype)?)
    }
}

pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("size {s:?} is not WxH"))?;
    let w: usize = w.trim().parse().map_err(|_| format!("width in {s:?} is not a number"))?;
    let h: usize = h.trim().parse().map_err(|_| format!("height in {s:?} is not a number"))?;
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(format!("size {s:?} must be between 1x1 and 16384x16384"));
    }
    Ok((w, h))
}
