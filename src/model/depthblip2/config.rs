//! DepthBLIP-2's settings, from the model YAML (`model_type: depthblip2`):
//! DepthCLIP's prompt keys (`depth_templates`, `obj_classes`,
//! `depth_classes`, `bin_list`, `temperature`) and the release's head
//! (`map_groups` x `map_height` x width per class, reduced over the groups
//! with `group_reduce`), the input (`crop`, `input_height`/`input_width`,
//! Pillow bilinear), `flip_average`, and optional adaptive bins. Other
//! keys (evaluation, training) are left to the tools that read them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::blip2::ArchitectureHints;
use crate::model::prompt_bins::settings::{self as shared, clamp_range, PromptSettings};
use crate::model::prompt_bins::PromptOverrides;

/// How the class maps' groups become one logit map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupReduce {
    /// The release: the maximum over the groups.
    Max,
    Mean,
}

/// Where the groups lie in a class embedding read as a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MapLayout {
    /// Each group a contiguous block of channels: channel `g * h * w + i *
    /// w + j` is group g's (i, j) (the release's v2, `reshape(B, K, G, h,
    /// w)`).
    #[default]
    GroupsOuter,
    /// The groups interleaved: channel `(i * w + j) * G + g` (the release's
    /// v1, `reshape(B, K, h, w, G).permute(0, 1, 4, 2, 3)`).
    GroupsInner,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DepthBlip2Config {
    #[serde(default)]
    pub model_type: String,
    /// The BLIP-2, for logs and random-weight timing (`clip_depth bench`):
    /// eva_vit_g or clip_vit_l. Real weights bring their shapes.
    #[serde(default = "default_vis")]
    pub blip2_vis: String,
    #[serde(default = "shared::default_templates")]
    pub depth_templates: Vec<String>,
    #[serde(default = "shared::default_objects", alias = "depth_objects")]
    pub obj_classes: Vec<String>,
    #[serde(default = "shared::default_classes")]
    pub depth_classes: Vec<String>,
    /// Depth of each class in metres (the release's 1.00 .. 3.50).
    #[serde(default = "default_bins", alias = "depth_bins")]
    pub bin_list: Vec<f64>,
    /// Multiplies every bin (before any adaptation).
    #[serde(default = "shared::one")]
    pub depth_scale: f64,
    #[serde(default = "shared::default_temperature")]
    pub temperature: f64,
    /// The per-class embedding (Q-Former width C) is read as
    /// (map_groups, map_height, C / (map_groups * map_height)).
    #[serde(default = "default_groups")]
    pub map_groups: usize,
    #[serde(default = "default_map_height")]
    pub map_height: usize,
    #[serde(default = "default_reduce")]
    pub group_reduce: GroupReduce,
    #[serde(default)]
    pub map_layout: MapLayout,
    #[serde(default)]
    pub flip_average: bool,
    /// (left, top, right, bottom) in pixels of a `crop_frame`-sized frame,
    /// cut before the resize; NaN outside. Other frame sizes are cut at the
    /// same fractions.
    #[serde(default)]
    pub crop: Option<[usize; 4]>,
    #[serde(default = "shared::default_crop_frame")]
    pub crop_frame: [usize; 2],
    #[serde(default = "default_side")]
    pub input_height: usize,
    #[serde(default = "default_side")]
    pub input_width: usize,
    #[serde(default = "shared::default_mean")]
    pub image_mean: [f32; 3],
    #[serde(default = "shared::default_std")]
    pub image_std: [f32; 3],
    #[serde(default = "shared::yes")]
    pub upsample_align_corners: bool,
    /// `vocab.txt` or `tokenizer.json`, relative to this file; default: one
    /// beside the weights, else the built-in bert-base-uncased vocabulary.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// The adaptive-bins MLP (`.pth` of the release or `.safetensors`),
    /// relative to this file; the bins it gives replace `bin_list`.
    #[serde(default)]
    pub adaptive_bins: Option<PathBuf>,
    /// Image tower layers to run (LAVIS's CLIP ViT-L: 23 of its file's 24).
    #[serde(default)]
    pub vision_layers: Option<usize>,
    #[serde(default)]
    pub vision_heads: Option<usize>,
    #[serde(default)]
    pub qformer_heads: Option<usize>,
    /// Clamp range of the output; default: the smallest and largest bin.
    #[serde(default)]
    pub min_depth: Option<f64>,
    #[serde(default)]
    pub max_depth: Option<f64>,
}

fn default_vis() -> String {
    "eva_vit_g".into()
}
fn default_bins() -> Vec<f64> {
    vec![1.00, 1.75, 2.25, 2.50, 2.75, 3.00, 3.50]
}
fn default_groups() -> usize {
    3
}
fn default_map_height() -> usize {
    16
}
fn default_reduce() -> GroupReduce {
    GroupReduce::Max
}
fn default_side() -> usize {
    224
}

impl Default for DepthBlip2Config {
    fn default() -> Self {
        Self::from_yaml_str("model_type: depthblip2").unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

impl DepthBlip2Config {
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let mut cfg = Self::from_yaml_str(&text).map_err(|message| Error::Config { path: path.to_owned(), message })?;
        if let Some(dir) = path.parent() {
            for p in [&mut cfg.tokenizer, &mut cfg.adaptive_bins].into_iter().flatten() {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        Ok(cfg)
    }

    pub fn from_yaml_str(text: &str) -> std::result::Result<Self, String> {
        let cfg: Self = serde_norway::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The prompt families' shared checks, then its own; each names its key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.settings().validate()?;
        if self.map_groups == 0 || self.map_height == 0 {
            return Err(format!("map_groups {} and map_height {} must be positive", self.map_groups, self.map_height));
        }
        for (key, v) in [("vision_layers", self.vision_layers), ("vision_heads", self.vision_heads), ("qformer_heads", self.qformer_heads)] {
            if v == Some(0) {
                return Err(format!("{key} must be positive"));
            }
        }
        Ok(())
    }

    /// The settings every prompt family shares, borrowed.
    pub fn settings(&self) -> PromptSettings<'_> {
        PromptSettings {
            depth_templates: &self.depth_templates,
            obj_classes: &self.obj_classes,
            depth_classes: &self.depth_classes,
            bin_list: &self.bin_list,
            depth_scale: self.depth_scale,
            temperature: self.temperature,
            input: (self.input_width, self.input_height),
            crop: self.crop,
            crop_frame: self.crop_frame,
            image_mean: self.image_mean,
            image_std: self.image_std,
            min_depth: self.min_depth,
            max_depth: self.max_depth,
        }
    }

    /// Replaces the prompt and bin settings (the node's parameters).
    pub fn apply(&mut self, overrides: &PromptOverrides) -> std::result::Result<(), String> {
        overrides.apply(
            (&mut self.depth_templates, &mut self.obj_classes, &mut self.depth_classes),
            &mut self.bin_list,
            &mut self.depth_scale,
            &mut self.temperature,
        );
        self.validate()
    }

    /// The YAML's bins in metres (`bin_list` x `depth_scale`).
    pub fn scaled_bins(&self) -> Vec<f64> {
        self.settings().bins()
    }

    /// The bins the model uses: the scaled bins, adapted by the
    /// `adaptive_bins` MLP when the YAML names one.
    pub fn class_bins(&self) -> Result<Vec<f64>> {
        let bins = self.scaled_bins();
        match &self.adaptive_bins {
            None => Ok(bins),
            Some(path) => super::bins::BinsMlp::from_file(path, bins.len())?.bins(&bins),
        }
    }

    pub fn hints(&self) -> ArchitectureHints {
        ArchitectureHints { vision_layers: self.vision_layers, vision_heads: self.vision_heads, qformer_heads: self.qformer_heads }
    }

    /// Per distance class, every template x object sentence.
    pub fn prompts(&self) -> Vec<Vec<String>> {
        self.settings().prompts()
    }

    /// The clamp range: `min_depth`/`max_depth`, else the given bins' range.
    pub fn depth_range(&self, bins: &[f64]) -> (f64, f64) {
        clamp_range(bins, self.min_depth, self.max_depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_release() {
        let cfg = DepthBlip2Config::default();
        assert_eq!(cfg.bin_list, vec![1.0, 1.75, 2.25, 2.5, 2.75, 3.0, 3.5]);
        assert_eq!((cfg.map_groups, cfg.map_height, cfg.group_reduce), (3, 16, GroupReduce::Max));
        assert_eq!((cfg.input_height, cfg.input_width), (224, 224));
        assert_eq!(cfg.prompts()[3], vec!["This object is not in distance".to_string()]);
    }

    #[test]
    fn bad_settings_name_their_key() {
        for (yaml, key) in [("map_groups: 0", "map_groups"), ("bin_list: [1, 2]", "bin_list"), ("temperature: -1", "temperature"), ("vision_layers: 0", "vision_layers"), ("group_reduce: median", "group_reduce")] {
            let err = DepthBlip2Config::from_yaml_str(yaml).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
