//! The training settings, read from the authors' YAML as is: every key
//! their `train.py` and data loader read, with their defaults where they
//! have one (some differ from inference's, e.g. `w_ssim` 0.85 and no
//! auxiliary heads when absent); keys they require are required here.
//! Unknown keys are ignored; a wrong value is refused naming the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::error::{Error, Result};
pub use crate::config_text::config_text;
pub use crate::eval::EvalCrop;
use crate::model::{ModelFamily, Training};
use crate::model::DecoderConfig;

/// `aux_loss_weights`: one weight for every head, or one per head.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AuxWeights {
    One(f64),
    Each(Vec<f64>),
}

impl AuxWeights {
    pub fn as_list(&self) -> Vec<f64> {
        match self {
            AuxWeights::One(w) => vec![*w],
            AuxWeights::Each(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainConfig {
    #[serde(default = "d_name")]
    pub name: String,
    pub epochs: u64,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    #[serde(default = "d_workers")]
    pub workers: usize,
    /// The authors' resume file: read here as initial weights.
    #[serde(default)]
    pub checkpoint_path: Option<String>,
    #[serde(default)]
    pub random_seed: Option<u64>,
    #[serde(default = "d_scheduler")]
    pub scheduler: String,
    #[serde(default = "d_min_lr")]
    pub min_lr: f64,
    #[serde(default = "d_warmup_ratio")]
    pub warmup_ratio: f64,
    #[serde(default)]
    pub warmup_steps: i64,
    #[serde(default = "d_step_size")]
    pub step_lr_step_size: u64,
    #[serde(default = "d_step_gamma")]
    pub step_lr_gamma: f64,
    #[serde(default = "d_one")]
    pub validate_epochs: u64,
    #[serde(default = "d_log_images")]
    pub num_log_images: usize,
    #[serde(default = "d_log_every")]
    pub log_scalar_every_iters: u64,

    pub dataset: String,
    pub data_path: PathBuf,
    pub gt_path: PathBuf,
    pub filenames_file: PathBuf,
    #[serde(default)]
    pub data_path_eval: Option<PathBuf>,
    #[serde(default)]
    pub gt_path_eval: Option<PathBuf>,
    #[serde(default)]
    pub filenames_file_eval: Option<PathBuf>,
    /// Divisor from stored depth values to metres (default: 1000 for `nyu`,
    /// 256 for `kitti`, else 1, as the authors'); a value given wins.
    #[serde(default)]
    pub depth_scale: Option<f64>,

    #[serde(default = "d_input_height")]
    pub input_height: usize,
    #[serde(default = "d_input_width")]
    pub input_width: usize,
    #[serde(default = "d_clip_input")]
    pub clip_input_size: usize,
    #[serde(default)]
    pub do_random_rotate: bool,
    #[serde(default)]
    pub degree: Option<f64>,
    #[serde(default = "d_true")]
    pub do_nyu_crop: bool,
    #[serde(default)]
    pub do_nyu_crop_eval: bool,
    #[serde(default)]
    pub do_kb_crop: bool,

    #[serde(default = "d_min_depth")]
    pub min_depth: f64,
    #[serde(default = "d_max_depth")]
    pub max_depth: f64,
    #[serde(default)]
    pub min_depth_eval: Option<f64>,
    #[serde(default)]
    pub max_depth_eval: Option<f64>,
    #[serde(default)]
    pub eigen_crop: bool,
    #[serde(default)]
    pub garg_crop: bool,
    #[serde(default = "d_auto")]
    pub eval_crop: String,
    #[serde(default)]
    pub median_scaling_eval: bool,
    #[serde(default)]
    pub eval_flip_tta: bool,
    #[serde(default = "d_one_usize")]
    pub eval_batch_size: usize,

    #[serde(default)]
    pub use_multiscale_supervision: bool,
    #[serde(default = "d_aux")]
    pub aux_loss_weights: AuxWeights,
    #[serde(default = "d_dropout")]
    pub decoder_dropout: f64,
    #[serde(default = "d_w_ssim")]
    pub w_ssim: f64,
    #[serde(default)]
    pub w_grad: f64,

    #[serde(default)]
    pub use_ema: bool,
    #[serde(default = "d_ema_decay")]
    pub ema_decay: f64,
    #[serde(default)]
    pub eval_with_ema: Option<bool>,
    #[serde(default)]
    pub eval_both_for_best: bool,

    #[serde(default = "d_true")]
    pub freeze_clip_vision: bool,
    #[serde(default)]
    pub clip_interpolate_pos_encoding: bool,

    #[serde(default = "d_true")]
    pub warn_on_skipped_samples: bool,
    #[serde(default = "d_skip_limit")]
    pub skip_warning_limit: usize,
    #[serde(default)]
    pub strict_data_loading: bool,
}

fn d_name() -> String {
    "space_clip".into()
}
fn d_workers() -> usize {
    2
}
fn d_scheduler() -> String {
    "step".into()
}
fn d_min_lr() -> f64 {
    1e-6
}
fn d_warmup_ratio() -> f64 {
    0.05
}
fn d_step_size() -> u64 {
    10
}
fn d_step_gamma() -> f64 {
    0.5
}
fn d_one() -> u64 {
    1
}
fn d_one_usize() -> usize {
    1
}
fn d_log_images() -> usize {
    5
}
fn d_log_every() -> u64 {
    10
}
fn d_input_height() -> usize {
    352
}
fn d_input_width() -> usize {
    704
}
fn d_clip_input() -> usize {
    224
}
fn d_true() -> bool {
    true
}
fn d_min_depth() -> f64 {
    0.001
}
fn d_max_depth() -> f64 {
    80.0
}
fn d_auto() -> String {
    "auto".into()
}
fn d_aux() -> AuxWeights {
    AuxWeights::Each(vec![0.25, 0.125, 0.0625])
}
fn d_dropout() -> f64 {
    0.1
}
fn d_w_ssim() -> f64 {
    0.85
}
fn d_ema_decay() -> f64 {
    0.999
}
fn d_skip_limit() -> usize {
    20
}

impl TrainConfig {
    /// Parses and validates; errors name the key.
    pub fn from_yaml_str(text: &str) -> Result<Self, String> {
        let cfg: TrainConfig = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path, overrides: &[String]) -> Result<(Self, DecoderConfig)> {
        let text = config_text(path, overrides)?;
        let wrap = |message: String| Error::Config { path: path.to_owned(), message };
        // The decoder recipe: for the families that train a decoder.
        let family = match serde_norway::from_str::<Value>(&text).ok().as_ref().and_then(|v| v.get("model_type")) {
            Some(Value::String(name)) => ModelFamily::parse(name).map_err(wrap)?,
            _ => ModelFamily::SpaceClip,
        };
        match family.imp().training() {
            Training::Decoder => {}
            Training::Bins => return Err(wrap(format!("model_type {} trains its bins, not a decoder", family.name()))),
            Training::ZeroShot => return Err(wrap(format!("model_type {} has nothing to train ({} is zero-shot)", family.name(), family.title()))),
        }
        let train = Self::from_yaml_str(&text).map_err(wrap)?;
        let model = DecoderConfig::from_yaml_str(&text).map_err(wrap)?;
        Ok((train, model))
    }

    fn validate(&self) -> Result<(), String> {
        let positive = |v: f64, key: &str| if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("{key} must be > 0, got {v}")) };
        if self.epochs == 0 {
            return Err("epochs must be > 0".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size must be > 0".into());
        }
        positive(self.learning_rate, "learning_rate")?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!("weight_decay must be >= 0, got {}", self.weight_decay));
        }
        if !matches!(self.scheduler.to_ascii_lowercase().as_str(), "cosine_warmup" | "cosine" | "step") {
            return Err(format!("scheduler must be cosine_warmup, cosine or step, got {:?}", self.scheduler));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(format!("warmup_ratio must be in [0, 1], got {}", self.warmup_ratio));
        }
        if self.validate_epochs == 0 {
            return Err("validate_epochs must be > 0".into());
        }
        if self.input_height == 0 || self.input_width == 0 || self.clip_input_size == 0 {
            return Err("input_height, input_width and clip_input_size must be > 0".into());
        }
        if self.do_random_rotate {
            match self.degree {
                Some(d) if d.is_finite() && d >= 0.0 => {}
                Some(d) => return Err(format!("degree must be >= 0, got {d}")),
                None => return Err("do_random_rotate: true needs degree".into()),
            }
        }
        if !(self.min_depth >= 0.0 && self.max_depth > self.min_depth) {
            return Err(format!("need 0 <= min_depth < max_depth, got {} and {}", self.min_depth, self.max_depth));
        }
        if let (Some(lo), Some(hi)) = (self.min_depth_eval, self.max_depth_eval) {
            if !(lo >= 0.0 && hi > lo) {
                return Err(format!("need 0 <= min_depth_eval < max_depth_eval, got {lo} and {hi}"));
            }
        }
        if self.filenames_file_eval.is_some() && (self.min_depth_eval.is_none() || self.max_depth_eval.is_none()) {
            return Err("validation (filenames_file_eval) needs min_depth_eval and max_depth_eval".into());
        }
        if !(0.0..=1.0).contains(&self.w_ssim) {
            return Err(format!("w_ssim must be in [0, 1], got {}", self.w_ssim));
        }
        if !(self.w_grad >= 0.0) {
            return Err(format!("w_grad must be >= 0, got {}", self.w_grad));
        }
        if !(0.0..1.0).contains(&self.decoder_dropout) {
            return Err(format!("decoder_dropout must be in [0, 1), got {}", self.decoder_dropout));
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return Err(format!("ema_decay must be in [0, 1], got {}", self.ema_decay));
        }
        if !self.freeze_clip_vision {
            return Err("freeze_clip_vision: false (fine-tuning the backbone) is not supported for SPACE-CLIP".into());
        }
        if self.clip_interpolate_pos_encoding {
            return Err("clip_interpolate_pos_encoding: true is not supported (the backbone takes clip_input_size squares)".into());
        }
        if let Some(s) = self.depth_scale {
            positive(s, "depth_scale")?;
        }
        self.eval_crop()?;
        Ok(())
    }

    /// The evaluation crop the config asks for (`eval_crop`, or the older
    /// `garg_crop` / `eigen_crop` flags when it is `auto`).
    pub fn eval_crop(&self) -> Result<EvalCrop, String> {
        EvalCrop::resolve(&self.eval_crop, self.garg_crop, self.eigen_crop)
    }

    pub fn eval_with_ema(&self) -> bool {
        self.eval_with_ema.unwrap_or(self.use_ema)
    }

    /// Stored depth value -> metres.
    pub fn depth_divisor(&self) -> f64 {
        crate::data::depth::stored_depth_divisor(&self.dataset, self.depth_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "epochs: 2\nlearning_rate: 0.0001\nweight_decay: 0.01\nbatch_size: 4\n\
        dataset: nyu\ndata_path: d\ngt_path: g\nfilenames_file: f.txt\n";

    #[test]
    fn authors_defaults_apply() {
        let cfg = TrainConfig::from_yaml_str(MINIMAL).unwrap();
        assert_eq!(cfg.w_ssim, 0.85);
        assert!(!cfg.use_multiscale_supervision);
        assert_eq!(cfg.aux_loss_weights.as_list(), vec![0.25, 0.125, 0.0625]);
        assert_eq!(cfg.decoder_dropout, 0.1);
        assert!(cfg.do_nyu_crop && !cfg.do_nyu_crop_eval);
        assert_eq!(cfg.scheduler, "step");
        assert_eq!(cfg.depth_divisor(), 1000.0);
        assert_eq!(cfg.eval_crop().unwrap(), EvalCrop::None);
        let cfg = TrainConfig::from_yaml_str(&format!("{MINIMAL}aux_loss_weights: 0.2\neigen_crop: true\n")).unwrap();
        assert_eq!(cfg.aux_loss_weights.as_list(), vec![0.2]);
        assert_eq!(cfg.eval_crop().unwrap(), EvalCrop::Eigen);
    }

    #[test]
    fn wrong_values_name_the_key() {
        for (extra, key) in [
            ("scheduler: linear\n", "scheduler"),
            ("do_random_rotate: true\n", "degree"),
            ("eval_crop: middle\n", "eval_crop"),
            ("freeze_clip_vision: false\n", "freeze_clip_vision"),
            ("w_ssim: 2\n", "w_ssim"),
        ] {
            let err = TrainConfig::from_yaml_str(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let err = TrainConfig::from_yaml_str(&MINIMAL.replace("batch_size: 4", "batch_size: many")).unwrap_err();
        assert!(err.contains("batch_size"), "{err}");
        let err = TrainConfig::from_yaml_str(&MINIMAL.replace("epochs: 2\n", "")).unwrap_err();
        assert!(err.contains("epochs"), "{err}");
    }

    #[test]
    fn overrides_replace_and_add_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, MINIMAL).unwrap();
        let text = config_text(&path, &["epochs=5".into(), "use_ema=true".into(), "decoder_channels=[8, 8]".into()]).unwrap();
        let cfg = TrainConfig::from_yaml_str(&text).unwrap();
        assert_eq!(cfg.epochs, 5);
        assert!(cfg.use_ema);
        assert!(text.contains("decoder_channels"));
        assert!(config_text(&path, &["nonsense".into()]).is_err());
    }
}
