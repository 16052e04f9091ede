//! The vision backbone's architecture, from a Hugging Face `config.json`
//! (`CLIPVisionConfig`, a full `CLIPConfig`, or their SigLIP twins) or from
//! the presets of the checkpoints SPACE-CLIP is used with.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Which transformer family: they differ in tokens (CLS or not), norms and pooler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackboneKind {
    /// OpenAI CLIP: CLS token, pre-LayerNorm, pooler = post-LN CLS.
    Clip,
    /// SigLIP: no CLS token, no pre-norm, attention-pooling head.
    Siglip,
}

pub use crate::kernels::activation::Activation;

/// The activation a config's `hidden_act` names.
pub(crate) fn parse_activation(name: &str) -> Result<Activation, String> {
    Ok(match name {
        "quick_gelu" => Activation::QuickGelu,
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => return Err(format!("unsupported hidden_act {other:?}")),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackboneConfig {
    pub kind: BackboneKind,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// Per-channel normalisation applied after /255 (RGB order).
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
const SIGLIP_MEAN: [f32; 3] = [0.5, 0.5, 0.5];
const SIGLIP_STD: [f32; 3] = [0.5, 0.5, 0.5];

impl BackboneConfig {
    /// The input a frame is prepared into (CPU, Pillow-exact).
    pub fn preprocessor(&self) -> crate::image::preprocess::Preprocessor {
        crate::image::preprocess::Preprocessor::new(self.image_size, self.image_mean, self.image_std)
    }

    /// The same on the model's device.
    pub fn device_preprocessor(&self) -> crate::image::device_preprocess::DevicePreprocessor {
        crate::image::device_preprocess::DevicePreprocessor::new(self.image_size, self.image_mean, self.image_std)
    }

    /// HF `CLIPVisionConfig` defaults (what a config.json may leave out).
    fn clip_defaults() -> Self {
        Self {
            kind: BackboneKind::Clip,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            image_mean: OPENAI_MEAN,
            image_std: OPENAI_STD,
        }
    }

    /// HF `SiglipVisionConfig` defaults.
    fn siglip_defaults() -> Self {
        Self {
            kind: BackboneKind::Siglip,
            patch_size: 16,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            image_mean: SIGLIP_MEAN,
            image_std: SIGLIP_STD,
            ..Self::clip_defaults()
        }
    }

    /// OpenAI CLIP ViT-B/16, SPACE-CLIP's default backbone.
    pub fn clip_vit_base_patch16() -> Self {
        Self { patch_size: 16, ..Self::clip_defaults() }
    }

    pub fn clip_vit_base_patch32() -> Self {
        Self::clip_defaults()
    }

    pub fn clip_vit_large_patch14() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            patch_size: 14,
            ..Self::clip_defaults()
        }
    }

    pub fn siglip_base_patch16_224() -> Self {
        Self::siglip_defaults()
    }

    /// The preset for a `clip_model_name`, matched on the HF repository name
    /// (an org prefix and letter case are ignored).
    pub fn from_preset(name: &str) -> Option<Self> {
        let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        Some(match base.as_str() {
            "clip-vit-base-patch16" | "vit-b-16" | "vit-b/16" => Self::clip_vit_base_patch16(),
            "clip-vit-base-patch32" | "vit-b-32" | "vit-b/32" => Self::clip_vit_base_patch32(),
            "clip-vit-large-patch14" | "vit-l-14" | "vit-l/14" => Self::clip_vit_large_patch14(),
            "siglip-base-patch16-224" => Self::siglip_base_patch16_224(),
            _ => return None,
        })
    }

    /// Names accepted by [`Self::from_preset`], for error messages.
    pub const PRESETS: [&'static str; 4] = [
        "openai/clip-vit-base-patch16",
        "openai/clip-vit-base-patch32",
        "openai/clip-vit-large-patch14",
        "google/siglip-base-patch16-224",
    ];

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a vision config, or the `vision_config` of a full model config.
    pub fn from_json_str(text: &str) -> Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        if !root.is_object() {
            return Err("expected a JSON object".into());
        }
        let top_type = root.get("model_type").and_then(Value::as_str).unwrap_or("");
        let (vision, model_type) = match root.get("vision_config") {
            Some(v) if v.is_object() => {
                let inner = v.get("model_type").and_then(Value::as_str).unwrap_or(top_type);
                (v, inner)
            }
            _ => (&root, top_type),
        };
        let mut cfg = if model_type.contains("siglip") {
            Self::siglip_defaults()
        } else if model_type.is_empty() || model_type.contains("clip") {
            Self::clip_defaults()
        } else {
            return Err(format!(
                "model_type {model_type:?} is not a CLIP or SigLIP vision model"
            ));
        };
        let usize_key = |key: &str, slot: &mut usize| -> Result<(), String> {
            if let Some(v) = vision.get(key) {
                *slot = v
                    .as_u64()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{key} must be a positive integer, got {v}"))?
                    as usize;
            }
            Ok(())
        };
        usize_key("hidden_size", &mut cfg.hidden_size)?;
        usize_key("intermediate_size", &mut cfg.intermediate_size)?;
        usize_key("num_hidden_layers", &mut cfg.num_hidden_layers)?;
        usize_key("num_attention_heads", &mut cfg.num_attention_heads)?;
        usize_key("num_channels", &mut cfg.num_channels)?;
        usize_key("image_size", &mut cfg.image_size)?;
        usize_key("patch_size", &mut cfg.patch_size)?;
        if let Some(v) = vision.get("hidden_act") {
            let name = v.as_str().ok_or_else(|| format!("hidden_act must be a string, got {v}"))?;
            cfg.hidden_act = parse_activation(name)?;
        }
        if let Some(v) = vision.get("layer_norm_eps") {
            cfg.layer_norm_eps = v
                .as_f64()
                .filter(|e| *e > 0.0)
                .ok_or_else(|| format!("layer_norm_eps must be a positive number, got {v}"))?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_channels != 3 {
            return Err(format!("num_channels {} is not 3 (RGB)", self.num_channels));
        }
        Ok(())
    }

    /// Patches along one side of the (square) input.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Tokens per image: patches plus CLIP's class token.
    pub fn num_tokens(&self) -> usize {
        match self.kind {
            BackboneKind::Clip => self.num_patches() + 1,
            BackboneKind::Siglip => self.num_patches(),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vision_config_overrides_defaults() {
        let cfg = BackboneConfig::from_json_str(
            r#"{"model_type":"clip_vision_model","hidden_size":64,"intermediate_size":256,
                "num_hidden_layers":12,"num_attention_heads":4,"patch_size":16,"image_size":224}"#,
        )
        .unwrap();
        assert_eq!(cfg.kind, BackboneKind::Clip);
        assert_eq!((cfg.hidden_size, cfg.head_dim(), cfg.num_tokens()), (64, 16, 197));
        assert_eq!(cfg.hidden_act, Activation::QuickGelu);
    }

    #[test]
    fn full_clip_config_uses_its_vision_config() {
        let cfg = BackboneConfig::from_json_str(
            r#"{"model_type":"clip","text_config":{"hidden_size":512},
                "vision_config":{"hidden_size":768,"patch_size":16}}"#,
        )
        .unwrap();
        assert_eq!(cfg, BackboneConfig::clip_vit_base_patch16());
    }

    #[test]
    fn siglip_is_recognised() {
        let cfg = BackboneConfig::from_json_str(
            r#"{"model_type":"siglip","vision_config":{"model_type":"siglip_vision_model"}}"#,
        )
        .unwrap();
        assert_eq!(cfg, BackboneConfig::siglip_base_patch16_224());
        assert_eq!(cfg.num_tokens(), 196);
        assert_eq!(cfg.image_mean, [0.5; 3]);
    }

    #[test]
    fn presets_by_name() {
        assert_eq!(
            BackboneConfig::from_preset("openai/clip-vit-base-patch16"),
            Some(BackboneConfig::clip_vit_base_patch16())
        );
        assert_eq!(BackboneConfig::from_preset("ViT-L-14").unwrap().num_hidden_layers, 24);
        assert!(BackboneConfig::from_preset("resnet50").is_none());
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = BackboneConfig::from_json_str(r#"{"hidden_size":100,"num_attention_heads":12}"#)
            .unwrap_err();
        assert!(err.contains("divisible"), "{err}");
        let err = BackboneConfig::from_json_str(r#"{"hidden_act":"swish"}"#).unwrap_err();
        assert!(err.contains("hidden_act"), "{err}");
        let err = BackboneConfig::from_json_str(r#"{"model_type":"bert"}"#).unwrap_err();
        assert!(err.contains("bert"), "{err}");
        assert!(BackboneConfig::from_json_str("{").is_err());
        let err = BackboneConfig::from_json_str(r#"{"patch_size":-3}"#).unwrap_err();
        assert!(err.contains("patch_size"), "{err}");
    }
}
