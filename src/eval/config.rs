//! The evaluation settings of a training YAML (the authors' keys): which
//! list, which roots, the input size and crops, the depth range and the
//! protocol options. Only what evaluation needs is required.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::protocol::{EvalCrop, NonFinite, Protocol};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct EvalConfig {
    pub dataset: String,
    #[serde(default)]
    pub data_path: Option<PathBuf>,
    #[serde(default)]
    pub gt_path: Option<PathBuf>,
    #[serde(default)]
    pub data_path_eval: Option<PathBuf>,
    #[serde(default)]
    pub gt_path_eval: Option<PathBuf>,
    pub filenames_file_eval: PathBuf,
    /// Divisor from stored depth values to metres (default: 1000 for `nyu`,
    /// 256 for `kitti`, else 1); a value given wins.
    #[serde(default)]
    pub depth_scale: Option<f64>,
    #[serde(default = "d_input_height")]
    pub input_height: usize,
    #[serde(default = "d_input_width")]
    pub input_width: usize,
    #[serde(default)]
    pub do_kb_crop: bool,
    #[serde(default)]
    pub do_nyu_crop_eval: bool,
    pub min_depth_eval: f64,
    pub max_depth_eval: f64,
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
    #[serde(default = "d_workers")]
    pub workers: usize,
    #[serde(default = "d_true")]
    pub warn_on_skipped_samples: bool,
    #[serde(default = "d_skip_limit")]
    pub skip_warning_limit: usize,
    #[serde(default)]
    pub strict_data_loading: bool,
}

fn d_input_height() -> usize {
    352
}
fn d_input_width() -> usize {
    704
}
fn d_auto() -> String {
    "auto".into()
}
fn d_workers() -> usize {
    2
}
fn d_true() -> bool {
    true
}
fn d_skip_limit() -> usize {
    20
}

impl EvalConfig {
    pub fn from_yaml_str(text: &str) -> Result<Self, String> {
        let cfg: Self = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if !(cfg.min_depth_eval >= 0.0 && cfg.max_depth_eval > cfg.min_depth_eval) {
            return Err(format!(
                "need 0 <= min_depth_eval < max_depth_eval, got {} and {}",
                cfg.min_depth_eval, cfg.max_depth_eval
            ));
        }
        if cfg.input_height == 0 || cfg.input_width == 0 {
            return Err("input_height and input_width must be > 0".into());
        }
        if cfg.data_path_eval.is_none() && cfg.data_path.is_none() {
            return Err("data_path_eval (or data_path) is required".into());
        }
        if let Some(s) = cfg.depth_scale {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("depth_scale must be > 0, got {s}"));
            }
        }
        cfg.crop()?;
        Ok(cfg)
    }

    pub fn load(path: &Path, text: &str) -> Result<Self> {
        Self::from_yaml_str(text).map_err(|message| Error::Config { path: path.to_owned(), message })
    }

    pub fn crop(&self) -> Result<EvalCrop, String> {
        EvalCrop::resolve(&self.eval_crop, self.garg_crop, self.eigen_crop)
    }

    pub fn data_root(&self) -> PathBuf {
        self.data_path_eval.clone().or_else(|| self.data_path.clone()).unwrap_or_default()
    }

    pub fn gt_root(&self) -> Option<PathBuf> {
        self.gt_path_eval.clone().or_else(|| self.gt_path.clone())
    }

    pub fn depth_divisor(&self) -> f64 {
        crate::data::depth::stored_depth_divisor(&self.dataset, self.depth_scale)
    }

    pub fn protocol(&self) -> Result<Protocol, String> {
        Ok(Protocol {
            dataset: self.dataset.to_ascii_lowercase(),
            min_depth: self.min_depth_eval,
            max_depth: self.max_depth_eval,
            crop: self.crop()?,
            median_scaling: self.median_scaling_eval,
            non_finite: NonFinite::default(),
        })
    }
}
