//! DepthBLIP-2 behind the front door ([`Family`], [`DepthNet`]): its YAML
//! and BLIP-2 weights (LAVIS's Q-Former checkpoint with its tower's file,
//! or a Hugging Face Blip2ForImageTextRetrieval with its config) read
//! strictly, the tokenizer, the bins (adapted by the YAML's `adaptive_bins`
//! MLP when given); frames cropped and resized (Pillow bilinear); the map
//! placed in the crop, the end classes marked.

use std::any::Any;

use candle_core::{DType, Device, Tensor};

use super::{find_tokenizer, load_weights, DepthBlip2, DepthBlip2Config, Encoded as Tokens};
use crate::error::{Error, Result};
use crate::model::blip2::{random_blip2_state_dict, Blip2Config};
use crate::model::family::{encoded_as, DepthGrid, DepthNet, Encoded, Family, ModelFamily, ModelFiles, Training};
use crate::model::input::InputGeometry;
use crate::model::prompt_bins::PromptOverrides;
use crate::model::BackboneConfig;

pub struct DepthBlip2Family;

pub static DEPTH_BLIP2: DepthBlip2Family = DepthBlip2Family;

impl Family for DepthBlip2Family {
    fn names(&self) -> &'static [&'static str] {
        &["depthblip2", "depth_blip2", "depthblip_2", "depth_blip_2"]
    }

    fn title(&self) -> &'static str {
        "DepthBLIP-2"
    }

    fn load(&self, files: &ModelFiles, prompts: &PromptOverrides, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        let config_error = |message: String| Error::Config { path: files.config.clone(), message };
        let mut cfg = DepthBlip2Config::from_yaml_file(&files.config)?;
        cfg.apply(prompts).map_err(config_error)?;
        let (dict, arch) = load_weights(&cfg, &files.checkpoint, files.clip_weights.as_deref(), files.clip_config.as_deref())?;
        let tokenizer = find_tokenizer(&cfg, &files.checkpoint)?;
        let bins = cfg.class_bins()?;
        let vb = dict.into_var_builder(dtype, device);
        let model = DepthBlip2::new(vb, &cfg, &arch, &tokenizer, bins).map_err(|e| match e {
            Error::ModelConfig(message) => config_error(message),
            other => other,
        })?;
        Ok(Box::new(model))
    }

    /// A random BLIP-2 of the shapes `blip2_vis` names (or a Hugging Face
    /// `clip_config` describes), the YAML's bins.
    fn random(&self, files: &ModelFiles, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        let cfg = DepthBlip2Config::from_yaml_file(&files.config)?;
        let arch = match &files.clip_config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.clone(), source })?;
                Blip2Config::from_hf_json(&text, &cfg.hints()).map_err(|message| Error::Config { path: path.clone(), message })?
            }
            None => Blip2Config::preset(&cfg.blip2_vis).ok_or_else(|| Error::Config {
                path: files.config.clone(),
                message: format!("blip2_vis {:?} is not a known BLIP-2 ({}); give --clip-config", cfg.blip2_vis, Blip2Config::PRESETS.join(", ")),
            })?,
        };
        let vb = random_blip2_state_dict(&arch, 0)?.into_var_builder(dtype, device);
        // The YAML's tokenizer, else one beside the config.json, else bert-base-uncased.
        let tokenizer = find_tokenizer(&cfg, files.clip_config.as_deref().unwrap_or(std::path::Path::new("")))?;
        Ok(Box::new(DepthBlip2::new(vb, &cfg, &arch, &tokenizer, cfg.scaled_bins())?))
    }

    fn takes_prompts(&self) -> bool {
        true
    }

    fn training(&self) -> Training {
        Training::Bins
    }

    fn default_config(&self) -> Option<&'static str> {
        Some("depthblip2_nyu.yaml")
    }
}

impl DepthNet for DepthBlip2 {
    fn family(&self) -> ModelFamily {
        ModelFamily::DepthBlip2
    }

    fn name(&self) -> String {
        format!("DepthBLIP-2 ({})", self.blip2().config().describe())
    }

    fn describe(&self) -> String {
        let c = self.config();
        format!(
            "{}, input {}x{}, {} prompts batched{}",
            DepthNet::name(self),
            c.input_width,
            c.input_height,
            c.prompts().iter().map(Vec::len).sum::<usize>(),
            if c.flip_average { ", flip averaged" } else { "" }
        )
    }

    fn geometry(&self) -> InputGeometry {
        DepthBlip2::geometry(self)
    }

    fn encode(&self, pixels: &Tensor) -> candle_core::Result<Encoded> {
        Ok(Box::new(DepthBlip2::encode(self, pixels)?))
    }

    fn decode(&self, encoded: &Encoded) -> candle_core::Result<DepthGrid> {
        let (depth, edge) = self.decode_with_edges(encoded_as::<Tokens>(encoded)?)?;
        Ok(DepthGrid { depth, edge: Some(edge) })
    }

    fn depth_range(&self) -> (f32, f32) {
        let (lo, hi) = self.config().depth_range(self.bins());
        (lo as f32, hi as f32)
    }

    fn input_description(&self) -> &BackboneConfig {
        DepthBlip2::input_description(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
