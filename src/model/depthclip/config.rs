//! DepthCLIP's settings, from the model YAML (`model_type: depthclip`).
//! The release keeps them as globals of `monoclip.py`; the keys carry
//! their names (`depth_templates`, `obj_classes`, `depth_classes`,
//! `bin_list`, `temperature`, `clip_vis`) and their values as defaults.
//! Keys DepthCLIP does not use (evaluation paths, ...) are ignored, so one
//! YAML can serve `clip_depth eval` too.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::prompt_bins::settings::{
    clamp_range, default_classes, default_crop_frame, default_mean, default_objects, default_std, default_temperature, default_templates, one, yes, PromptSettings,
};
use crate::model::prompt_bins::PromptOverrides;

pub use crate::model::prompt_bins::settings::{IMAGENET_MEAN, IMAGENET_STD};

/// How a ViT's position table reaches another token grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitPositions {
    /// The release: the whole (1 + N) x D table, class position included,
    /// resampled as one 1-D sequence (`F.interpolate(mode="linear")`).
    SequenceLinear,
    /// The grid resized in 2-D (bilinear, align_corners = false), the class
    /// position kept.
    GridBilinear,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DepthClipConfig {
    /// `space_clip` or `depthclip` (this struct is read for `depthclip`).
    #[serde(default)]
    pub model_type: String,
    /// The CLIP's name, for logs (`RN50` in the release).
    #[serde(default = "default_clip_vis", alias = "clip_model_name")]
    pub clip_vis: String,
    /// Sentence templates with two `{}`: the object, then the distance.
    #[serde(default = "default_templates")]
    pub depth_templates: Vec<String>,
    #[serde(default = "default_objects", alias = "depth_objects")]
    pub obj_classes: Vec<String>,
    /// Distance words, nearest first; one depth bin each.
    #[serde(default = "default_classes")]
    pub depth_classes: Vec<String>,
    /// Depth of each class in metres (before `depth_scale`).
    #[serde(default = "default_bins", alias = "depth_bins")]
    pub bin_list: Vec<f64>,
    /// Multiplies every bin: the bins' shape kept, another scene's scale.
    #[serde(default = "one")]
    pub depth_scale: f64,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// CLIP's trained logit scale, which the release writes as 100.
    #[serde(default = "default_logit_scale")]
    pub logit_scale: f64,
    /// The image tower's input (the release: the 416 x 544 NYU crop).
    #[serde(default = "default_height")]
    pub input_height: usize,
    #[serde(default = "default_width")]
    pub input_width: usize,
    /// (left, top, right, bottom) in pixels of a `crop_frame`-sized frame,
    /// cut before the resize; depth outside it is NaN (no reading). The
    /// release: (60, 56, 604, 472) of NYU's 640x480.
    #[serde(default)]
    pub crop: Option<[usize; 4]>,
    /// (width, height) of the frame `crop` is given for: other frame sizes
    /// are cut at the same fractions.
    #[serde(default = "default_crop_frame")]
    pub crop_frame: [usize; 2],
    #[serde(default = "default_mean")]
    pub image_mean: [f32; 3],
    #[serde(default = "default_std")]
    pub image_std: [f32; 3],
    /// Average with the mirrored frame's depth, as the paper's evaluation.
    #[serde(default)]
    pub flip_average: bool,
    /// Upsample the token-grid depth with align_corners = true (the release).
    #[serde(default = "yes")]
    pub upsample_align_corners: bool,
    #[serde(default = "default_vit_positions")]
    pub vit_position_embedding: VitPositions,
    /// `bpe_simple_vocab_16e6.txt.gz` or a `tokenizer.json`, relative to this
    /// file; default: `tokenizer.json` beside the weights, else the
    /// built-in copy of OpenAI's vocabulary.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Clamp range of the output; default: the smallest and largest bin.
    #[serde(default)]
    pub min_depth: Option<f64>,
    #[serde(default)]
    pub max_depth: Option<f64>,
}

fn default_clip_vis() -> String {
    "RN50".into()
}
fn default_bins() -> Vec<f64> {
    vec![1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00]
}
fn default_logit_scale() -> f64 {
    100.0
}
fn default_height() -> usize {
    416
}
fn default_width() -> usize {
    544
}
fn default_vit_positions() -> VitPositions {
    VitPositions::SequenceLinear
}

impl Default for DepthClipConfig {
    fn default() -> Self {
        Self::from_yaml_str("model_type: depthclip").unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

impl DepthClipConfig {
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let mut cfg = Self::from_yaml_str(&text).map_err(|message| Error::Config { path: path.to_owned(), message })?;
        if let (Some(tok), Some(dir)) = (&cfg.tokenizer, path.parent()) {
            if tok.is_relative() {
                cfg.tokenizer = Some(dir.join(tok));
            }
        }
        Ok(cfg)
    }

    pub fn from_yaml_str(text: &str) -> std::result::Result<Self, String> {
        let cfg: Self = serde_norway::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn apply(&mut self, overrides: &PromptOverrides) -> std::result::Result<(), String> {
        overrides.apply(
            (&mut self.depth_templates, &mut self.obj_classes, &mut self.depth_classes),
            &mut self.bin_list,
            &mut self.depth_scale,
            &mut self.temperature,
        );
        self.validate()
    }

    /// Checks everything that does not depend on the weights; each message
    /// names its key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.settings().validate()?;
        if !(self.logit_scale.is_finite() && self.logit_scale > 0.0) {
            return Err(format!("logit_scale must be a positive number, got {}", self.logit_scale));
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

    /// The crop, the input (Pillow bicubic) and the output placement.
    pub fn geometry(&self) -> crate::model::input::InputGeometry {
        let pre = crate::image::preprocess::Preprocessor::new_rect(self.input_width, self.input_height, self.image_mean, self.image_std);
        let crop = self.crop.map(|edges| crate::model::input::Crop { edges, frame: self.crop_frame });
        crate::model::input::InputGeometry::from_parts(crop, pre, self.upsample_align_corners)
    }

    /// The bins in metres.
    pub fn bins(&self) -> Vec<f64> {
        self.settings().bins()
    }

    /// The output's clamp range: `min_depth`/`max_depth`, else the bins'.
    pub fn depth_range(&self) -> (f64, f64) {
        let s = self.settings();
        clamp_range(&s.bins(), s.min_depth, s.max_depth)
    }

    /// Per distance class, every template x object sentence.
    pub fn prompts(&self) -> Vec<Vec<String>> {
        self.settings().prompts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_release() {
        let cfg = DepthClipConfig::default();
        assert_eq!(cfg.prompts()[0], vec!["This object is giant".to_string()]);
        assert_eq!(cfg.prompts()[6], vec!["This object is unseen".to_string()]);
        assert_eq!(cfg.bins(), vec![1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0]);
        assert_eq!((cfg.temperature, cfg.logit_scale), (0.1, 100.0));
        assert_eq!((cfg.input_height, cfg.input_width), (416, 544));
        assert_eq!(cfg.depth_range(), (1.0, 3.0));
    }

    #[test]
    fn prompts_cross_templates_and_objects() {
        let cfg = DepthClipConfig::from_yaml_str(
            "depth_templates: ['This {} is {}', 'a {} that is {}.']\nobj_classes: [object, wall]\ndepth_classes: [near, far]\nbin_list: [1, 4]\ndepth_scale: 2",
        )
        .unwrap();
        assert_eq!(cfg.prompts()[1], ["This object is far", "This wall is far", "a object that is far.", "a wall that is far."]);
        assert_eq!(cfg.bins(), vec![2.0, 8.0]);
    }

    #[test]
    fn bad_lists_name_their_key() {
        let bad = |yaml: &str, key: &str| {
            let err = DepthClipConfig::from_yaml_str(yaml).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        };
        bad("depth_templates: []", "depth_templates");
        bad("depth_templates: ['only {}']", "depth_templates[0]");
        bad("depth_templates: ['{} {} {}']", "depth_templates[0]");
        bad("depth_classes: [near]\nbin_list: [1]", "depth_classes");
        bad("bin_list: [1, 2]", "bin_list has 2");
        bad("bin_list: [1, 2, 3, 4, 5, 6, -7]", "bin_list[6]");
        bad("obj_classes: ['']", "obj_classes[0]");
        bad("depth_classes: [near, near]\nbin_list: [1, 2]", "twice");
        bad("temperature: 0", "temperature");
        bad("crop: [10, 0, 5, 10]", "crop");
        bad("image_std: [0.2, 0, 0.2]", "image_std[1]");
    }

    #[test]
    fn overrides_replace_and_are_checked() {
        let mut cfg = DepthClipConfig::default();
        let o = PromptOverrides { depth_classes: Some(vec!["near".into(), "far".into()]), bin_list: Some(vec![0.5, 5.0]), ..Default::default() };
        cfg.apply(&o).unwrap();
        assert_eq!(cfg.prompts().len(), 2);
        let o = PromptOverrides { bin_list: Some(vec![1.0]), ..Default::default() };
        assert!(cfg.apply(&o).unwrap_err().contains("bin_list"));
    }
}
