//! DepthCLIP behind the front door ([`Family`], [`DepthNet`]): its YAML and
//! a whole CLIP (OpenAI TorchScript, OpenCLIP or Hugging Face weights) read
//! strictly, the architecture from the config beside the weights or from
//! the tensors; frames cropped and squashed to the tower's input; the
//! token-grid depth placed in the crop, the end classes marked.

use std::any::Any;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{declare_towers, random_clip_state_dict, ClipArchitecture, DepthClip, DepthClipConfig, Encoded as Tokens};
use crate::error::{Error, Result};
use crate::model::family::{encoded_as, DepthGrid, DepthNet, Encoded, Family, ModelFamily, ModelFiles, Training};
use crate::model::input::InputGeometry;
use crate::model::prompt_bins::PromptOverrides;
use crate::model::text::ClipTokenizer;
use crate::model::BackboneConfig;
use crate::weights::{record_tensors, ClipLayout, ClipStateDict};

pub struct DepthClipFamily;

pub static DEPTH_CLIP: DepthClipFamily = DepthClipFamily;

impl Family for DepthClipFamily {
    fn names(&self) -> &'static [&'static str] {
        &["depthclip", "depth_clip"]
    }

    fn title(&self) -> &'static str {
        "DepthCLIP"
    }

    fn load(&self, files: &ModelFiles, prompts: &PromptOverrides, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        let config_error = |message: String| Error::Config { path: files.config.clone(), message };
        let mut cfg = DepthClipConfig::from_yaml_file(&files.config)?;
        cfg.apply(prompts).map_err(config_error)?;
        if let Some(clip) = &files.clip_weights {
            return Err(Error::Weights {
                path: clip.clone(),
                message: "separate CLIP weights are a SPACE-CLIP setting: DepthCLIP reads the whole CLIP from the checkpoint".into(),
            });
        }
        let dict = ClipStateDict::from_file(&files.checkpoint)?;
        let arch = clip_architecture(files, &dict)?;
        let expected = record_tensors(&dict.names(), |vb| declare_towers(vb, &arch))?;
        dict.check(&expected)?;
        let tokenizer = match (&cfg.tokenizer, files.checkpoint.parent().map(|d| d.join("tokenizer.json"))) {
            (Some(path), _) => ClipTokenizer::from_file(path)?,
            (None, Some(beside)) if beside.is_file() && dict.layout() == ClipLayout::HuggingFace => ClipTokenizer::from_file(&beside)?,
            _ => ClipTokenizer::openai(),
        };
        let vb = dict.into_var_builder(dtype, device);
        let model = DepthClip::new(vb, &cfg, &arch, &tokenizer).map_err(|e| match e {
            Error::ModelConfig(message) => config_error(message),
            other => other,
        })?;
        Ok(Box::new(model))
    }

    /// A random CLIP of the architecture `clip_vis` names (or `clip_config`
    /// describes); the text features come from random text weights too,
    /// which costs nothing at inference.
    fn random(&self, files: &ModelFiles, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        let cfg = DepthClipConfig::from_yaml_file(&files.config)?;
        let arch = match &files.clip_config {
            Some(path) => ClipArchitecture::from_json_file(path)?,
            None => ClipArchitecture::preset(&cfg.clip_vis).ok_or_else(|| Error::Config {
                path: files.config.clone(),
                message: format!("clip_vis {:?} is not a known CLIP ({}); give --clip-config", cfg.clip_vis, ClipArchitecture::PRESETS.join(", ")),
            })?,
        };
        let vb = random_clip_state_dict(&arch, 0)?.into_var_builder(dtype, device);
        Ok(Box::new(DepthClip::new(vb, &cfg, &arch, &ClipTokenizer::openai())?))
    }

    fn takes_prompts(&self) -> bool {
        true
    }

    fn training(&self) -> Training {
        Training::ZeroShot
    }

    fn default_config(&self) -> Option<&'static str> {
        Some("depthclip_nyu.yaml")
    }
}

impl DepthNet for DepthClip {
    fn family(&self) -> ModelFamily {
        ModelFamily::DepthClip
    }

    fn name(&self) -> String {
        format!("DepthCLIP ({})", self.architecture().image.describe())
    }

    fn describe(&self) -> String {
        let c = self.config();
        format!(
            "{}, input {}x{}{}",
            DepthNet::name(self),
            c.input_width,
            c.input_height,
            if c.flip_average { ", flip averaged" } else { "" }
        )
    }

    fn geometry(&self) -> InputGeometry {
        self.config().geometry()
    }

    fn encode(&self, pixels: &Tensor) -> candle_core::Result<Encoded> {
        Ok(Box::new(DepthClip::encode(self, pixels)?))
    }

    fn decode(&self, encoded: &Encoded) -> candle_core::Result<DepthGrid> {
        let (depth, edge) = self.decode_with_edges(encoded_as::<Tokens>(encoded)?)?;
        Ok(DepthGrid { depth, edge: Some(edge) })
    }

    fn depth_range(&self) -> (f32, f32) {
        let (lo, hi) = self.config().depth_range();
        (lo as f32, hi as f32)
    }

    fn input_description(&self) -> &BackboneConfig {
        DepthClip::input_description(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A whole CLIP's architecture: the config file given or found beside the
/// weights (`open_clip_config.json`, `config.json`), else read from the
/// tensors (OpenAI's files carry none).
fn clip_architecture(files: &ModelFiles, dict: &ClipStateDict) -> Result<ClipArchitecture> {
    if let Some(path) = &files.clip_config {
        return ClipArchitecture::from_json_file(path);
    }
    let dir = files.checkpoint.parent().map(Path::to_path_buf).unwrap_or_default();
    for name in ["open_clip_config.json", "config.json"] {
        let beside = dir.join(name);
        if beside.is_file() {
            return ClipArchitecture::from_json_file(&beside);
        }
    }
    if dict.layout() == ClipLayout::HuggingFace {
        return Err(Error::Weights {
            path: files.checkpoint.clone(),
            message: "Hugging Face CLIP weights need their config.json (beside them, or --clip-config)".into(),
        });
    }
    ClipArchitecture::infer(&dict.shapes()).map_err(|message| Error::Weights { path: files.checkpoint.clone(), message })
}
