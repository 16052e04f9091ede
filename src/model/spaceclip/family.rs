//! SPACE-CLIP behind the front door ([`Family`], [`DepthNet`]): its
//! training YAML and checkpoint (with a separate Hugging Face CLIP when the
//! checkpoint holds the decoder only), read strictly; frames squashed to
//! the backbone's square input; the S x S depth resized to the frame.

use std::any::Any;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{expected_tensors, random_state_dict, SpaceClip};
use crate::error::{Error, Result};
use crate::model::family::{encoded_as, DepthGrid, DepthNet, Encoded, EvalInput, Family, ModelFamily, ModelFiles, Training};
use crate::model::input::InputGeometry;
use crate::model::prompt_bins::PromptOverrides;
use crate::model::{BackboneConfig, BackboneKind, DecoderConfig, VisionOutput};
use crate::weights::StateDict;

pub struct SpaceClipFamily;

pub static SPACE_CLIP: SpaceClipFamily = SpaceClipFamily;

impl Family for SpaceClipFamily {
    fn names(&self) -> &'static [&'static str] {
        &["space_clip", "spaceclip"]
    }

    fn title(&self) -> &'static str {
        "SPACE-CLIP"
    }

    fn load(&self, files: &ModelFiles, _: &PromptOverrides, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        let decoder_cfg = DecoderConfig::from_yaml_file(&files.config)?;
        let backbone_cfg = backbone_config(files, &decoder_cfg)?;
        decoder_cfg.check_taps(backbone_cfg.num_hidden_layers).map_err(|message| Error::Config { path: files.config.clone(), message })?;
        let state = StateDict::from_files(&files.checkpoint, files.clip_weights.as_deref())?;
        let expected = expected_tensors(&backbone_cfg, &decoder_cfg, &state.names())?;
        state.check(&expected).map_err(|e| match e {
            Error::WeightMismatch(report) => {
                let mut names = files.checkpoint.display().to_string();
                if let Some(clip) = &files.clip_weights {
                    names.push_str(&format!(" + {}", clip.display()));
                }
                Error::WeightMismatch(format!("{names}: {report}"))
            }
            other => other,
        })?;
        let vb = state.into_var_builder(dtype, device);
        Ok(Box::new(SpaceClip::new(vb, &backbone_cfg, &decoder_cfg)?))
    }

    fn random(&self, files: &ModelFiles, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        let decoder = DecoderConfig::from_yaml_file(&files.config)?;
        let backbone = backbone_config(files, &decoder)?;
        let vb = random_state_dict(&backbone, &decoder, 0)?.into_var_builder(dtype, device);
        Ok(Box::new(SpaceClip::new(vb, &backbone, &decoder)?))
    }

    fn training(&self) -> Training {
        Training::Decoder
    }

    fn eval_input(&self) -> EvalInput {
        EvalInput::LoaderPixels
    }
}

impl DepthNet for SpaceClip {
    fn family(&self) -> ModelFamily {
        ModelFamily::SpaceClip
    }

    fn name(&self) -> String {
        self.decoder_config().clip_model_name.clone()
    }

    fn describe(&self) -> String {
        let cfg = self.backbone_config();
        format!("SPACE-CLIP, backbone hidden {} x {} layers, patch {}, input {}", cfg.hidden_size, cfg.num_hidden_layers, cfg.patch_size, cfg.image_size)
    }

    fn geometry(&self) -> InputGeometry {
        InputGeometry::from_parts(None, self.backbone_config().preprocessor(), false)
    }

    fn device_preprocessing(&self) -> bool {
        true
    }

    fn encode(&self, pixels: &Tensor) -> candle_core::Result<Encoded> {
        Ok(Box::new(SpaceClip::encode(self, pixels)?))
    }

    fn decode(&self, encoded: &Encoded) -> candle_core::Result<DepthGrid> {
        Ok(DepthGrid { depth: SpaceClip::decode(self, encoded_as::<VisionOutput>(encoded)?)?, edge: None })
    }

    fn depth_range(&self) -> (f32, f32) {
        let cfg = self.decoder_config();
        (cfg.min_depth as f32, cfg.max_depth as f32)
    }

    fn input_description(&self) -> &BackboneConfig {
        self.backbone_config()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The backbone's architecture: `files.clip_config`, else the
/// `config.json` beside the CLIP weights, else the `clip_config.json`
/// training writes beside its checkpoints, else the preset
/// `clip_model_name` names; then the training config's backbone type and
/// normalisation applied.
pub fn backbone_config(files: &ModelFiles, decoder: &DecoderConfig) -> Result<BackboneConfig> {
    let mut cfg = backbone_architecture(files, decoder)?;
    let wants = if decoder.wants_siglip() { BackboneKind::Siglip } else { BackboneKind::Clip };
    if cfg.kind != wants {
        return Err(Error::Config {
            path: files.config.clone(),
            message: format!(
                "the config asks for a {wants:?} backbone (vision_backbone_type {:?}, clip_model_name {:?}) but the backbone config describes {:?}",
                decoder.vision_backbone_type, decoder.clip_model_name, cfg.kind
            ),
        });
    }
    if let Some(mean) = decoder.vision_image_mean {
        cfg.image_mean = mean;
    }
    if let Some(std) = decoder.vision_image_std {
        cfg.image_std = std;
    }
    Ok(cfg)
}

fn backbone_architecture(files: &ModelFiles, decoder: &DecoderConfig) -> Result<BackboneConfig> {
    if let Some(path) = &files.clip_config {
        return BackboneConfig::from_json_file(path);
    }
    if let Some(beside) = files.clip_weights.as_deref().and_then(Path::parent).map(|d| d.join("config.json")) {
        if beside.is_file() {
            return BackboneConfig::from_json_file(&beside);
        }
    }
    // Training writes the backbone's config beside its checkpoints.
    if let Some(beside) = files.checkpoint.parent().map(|d| d.join("clip_config.json")) {
        if beside.is_file() && BackboneConfig::from_preset(&decoder.clip_model_name).is_none() {
            return BackboneConfig::from_json_file(&beside);
        }
    }
    BackboneConfig::from_preset(&decoder.clip_model_name).ok_or_else(|| Error::Config {
        path: files.config.clone(),
        message: format!(
            "clip_model_name {:?} is not a known preset ({}); give the backbone's HF config.json",
            decoder.clip_model_name,
            BackboneConfig::PRESETS.join(", ")
        ),
    })
}
