//! A whole CLIP's architecture (image tower, text tower, joint width), from
//! the config file that comes with its weights (Hugging Face `config.json`
//! or OpenCLIP `open_clip_config.json`), or read from the tensors' shapes
//! as OpenAI's `build_model` does for its TorchScript files (heads = width / 64).

use crate::model::shapes::{count_layers, dims, square_grid, Shapes};
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::text::TextConfig;
use crate::model::vision::config::parse_activation;
use crate::model::{Activation, BackboneConfig, BackboneKind, ResnetConfig};

#[derive(Debug, Clone, PartialEq)]
pub enum ImageTowerConfig {
    Resnet(ResnetConfig),
    /// A CLIP ViT and the width of its `visual_projection`.
    Vit { vision: BackboneConfig, embed_dim: usize },
}

impl ImageTowerConfig {
    /// Width of the tokens the tower gives (ResNet: the map's channels).
    pub fn token_width(&self) -> usize {
        match self {
            Self::Resnet(r) => r.channels(),
            Self::Vit { embed_dim, .. } => *embed_dim,
        }
    }

    /// Pixels per token along each side.
    pub fn stride(&self) -> usize {
        match self {
            Self::Resnet(_) => ResnetConfig::STRIDE,
            Self::Vit { vision, .. } => vision.patch_size,
        }
    }

    /// The square resolution the tower was trained at.
    pub fn native_size(&self) -> usize {
        match self {
            Self::Resnet(r) => r.image_size,
            Self::Vit { vision, .. } => vision.image_size,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Resnet(r) => format!("ResNet {:?} width {} ({} channels)", r.layers, r.width, r.channels()),
            Self::Vit { vision, embed_dim } => format!(
                "ViT patch {} width {} x {} layers -> {embed_dim}",
                vision.patch_size, vision.hidden_size, vision.num_hidden_layers
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClipArchitecture {
    pub image: ImageTowerConfig,
    pub text: TextConfig,
}

fn get_usize(v: &Value, key: &str, default: usize) -> std::result::Result<usize, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_u64().filter(|&n| n > 0).map(|n| n as usize).ok_or_else(|| format!("{key} must be a positive integer, got {x}")),
    }
}

fn get_f64(v: &Value, key: &str, default: f64) -> std::result::Result<f64, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_f64().filter(|f| *f > 0.0).ok_or_else(|| format!("{key} must be a positive number, got {x}")),
    }
}

impl ClipArchitecture {
    /// Names accepted by [`Self::preset`] (OpenAI's model names).
    pub const PRESETS: [&'static str; 6] = ["RN50", "RN101", "RN50x4", "ViT-B/32", "ViT-B/16", "ViT-L/14"];

    /// OpenAI's released CLIPs by name (`RN50`, `ViT-B/16`, also spelt
    /// `ViT-B-16` or `openai/clip-vit-base-patch16`), for random-weight
    /// timing; real weights bring their own shapes.
    pub fn preset(name: &str) -> Option<Self> {
        let lower = name.trim().to_ascii_lowercase();
        // A hub name's organisation goes; "ViT-B/16" keeps its slash's digits.
        let base = if lower.contains("clip-vit") { lower.rsplit('/').next().unwrap_or(&lower) } else { &lower };
        let key: String = base.chars().filter(char::is_ascii_alphanumeric).collect();
        let text = |width: usize, embed_dim: usize| TextConfig { width, heads: width / 64, intermediate_size: 4 * width, embed_dim, ..TextConfig::default() };
        let resnet = |layers: [usize; 4], width: usize, out: usize, image_size: usize, text_width: usize| Self {
            image: ImageTowerConfig::Resnet(ResnetConfig { layers, width, heads: width * 32 / 64, output_dim: out, image_size }),
            text: text(text_width, out),
        };
        let vit = |vision: BackboneConfig, embed: usize, text_width: usize| Self {
            image: ImageTowerConfig::Vit { vision, embed_dim: embed },
            text: text(text_width, embed),
        };
        Some(match key.as_str() {
            "rn50" => resnet([3, 4, 6, 3], 64, 1024, 224, 512),
            "rn101" => resnet([3, 4, 23, 3], 64, 512, 224, 512),
            "rn50x4" => resnet([4, 6, 10, 6], 80, 640, 288, 640),
            "vitb32" | "clipvitbasepatch32" => vit(BackboneConfig::clip_vit_base_patch32(), 512, 512),
            "vitb16" | "clipvitbasepatch16" => vit(BackboneConfig::clip_vit_base_patch16(), 512, 512),
            "vitl14" | "clipvitlargepatch14" => vit(BackboneConfig::clip_vit_large_patch14(), 768, 768),
            _ => return None,
        })
    }

    /// A Hugging Face `config.json` (a `CLIPModel`'s) or an OpenCLIP
    /// `open_clip_config.json`, told apart by their keys.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::from_json_str(&text).map_err(|message| Error::Config { path: path.to_owned(), message })
    }

    pub fn from_json_str(text: &str) -> std::result::Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let arch = if root.get("model_cfg").is_some() || root.get("vision_cfg").is_some() {
            Self::from_open_clip(root.get("model_cfg").unwrap_or(&root))?
        } else if root.get("text_config").is_some() || root.get("vision_config").is_some() {
            Self::from_hugging_face(&root, text)?
        } else {
            return Err("neither a Hugging Face CLIP config.json (text_config, vision_config) nor an OpenCLIP \
                        open_clip_config.json (model_cfg): DepthCLIP needs a whole CLIP's config"
                .into());
        };
        arch.validate()?;
        Ok(arch)
    }

    fn from_hugging_face(root: &Value, text: &str) -> std::result::Result<Self, String> {
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or("clip");
        if model_type != "clip" {
            return Err(format!("model_type {model_type:?}: DepthCLIP needs a CLIP (a text tower with a causal mask and an end-of-text token)"));
        }
        let t = root.get("text_config").ok_or("has no text_config: DepthCLIP needs CLIP's text tower too")?;
        let embed_dim = get_usize(root, "projection_dim", get_usize(t, "projection_dim", 512)?)?;
        let mut text_cfg = TextConfig {
            vocab_size: get_usize(t, "vocab_size", 49408)?,
            context_length: get_usize(t, "max_position_embeddings", 77)?,
            width: get_usize(t, "hidden_size", 512)?,
            heads: get_usize(t, "num_attention_heads", 8)?,
            layers: get_usize(t, "num_hidden_layers", 12)?,
            intermediate_size: get_usize(t, "intermediate_size", 2048)?,
            layer_norm_eps: get_f64(t, "layer_norm_eps", 1e-5)?,
            embed_dim,
            ..TextConfig::default()
        };
        if let Some(act) = t.get("hidden_act") {
            text_cfg.hidden_act = parse_activation(act.as_str().ok_or("hidden_act must be a string")?)?;
        }
        let vision = BackboneConfig::from_json_str(text)?;
        if vision.kind != BackboneKind::Clip {
            return Err("the vision tower is not a CLIP ViT".into());
        }
        Ok(Self { image: ImageTowerConfig::Vit { vision, embed_dim }, text: text_cfg })
    }

    fn from_open_clip(cfg: &Value) -> std::result::Result<Self, String> {
        let embed_dim = get_usize(cfg, "embed_dim", 0).and_then(|e| if e == 0 { Err("model_cfg has no embed_dim".to_string()) } else { Ok(e) })?;
        let act = if cfg.get("quick_gelu").and_then(Value::as_bool).unwrap_or(false) { Activation::QuickGelu } else { Activation::Gelu };
        let v = cfg.get("vision_cfg").ok_or("model_cfg has no vision_cfg")?;
        let t = cfg.get("text_cfg").ok_or("model_cfg has no text_cfg: DepthCLIP needs CLIP's text tower too")?;
        refuse_features(v, "vision_cfg", &["timm_model_name", "ls_init_value", "attentional_pool", "no_ln_pre", "final_ln_after_pool", "act_kwargs", "norm_kwargs"])?;
        refuse_features(t, "text_cfg", &["hf_model_name", "ls_init_value", "embed_cls", "no_causal_mask", "proj_bias", "final_ln_after_pool", "act_kwargs", "norm_kwargs"])?;
        if let Some(pool) = t.get("pool_type").and_then(Value::as_str) {
            if pool != "argmax" {
                return Err(format!("text_cfg pool_type {pool:?} is not supported (only CLIP's argmax: the end-of-text token)"));
            }
        }
        if let Some(proj) = t.get("proj_type").and_then(Value::as_str) {
            if proj != "linear" {
                return Err(format!("text_cfg proj_type {proj:?} is not supported (only linear)"));
            }
        }
        let image_size = match v.get("image_size") {
            Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => a[0].as_u64().unwrap_or(0) as usize,
            Some(Value::Array(_)) => return Err("vision_cfg image_size must be square".into()),
            _ => get_usize(v, "image_size", 224)?,
        };
        let width = get_usize(v, "width", 768)?;
        let head_width = get_usize(v, "head_width", 64)?;
        let image = match v.get("layers") {
            Some(Value::Array(layers)) => {
                let l: Vec<usize> = layers.iter().map(|x| x.as_u64().unwrap_or(0) as usize).collect();
                let layers: [usize; 4] = l.clone().try_into().map_err(|_| format!("vision_cfg layers {l:?} must list 4 stages"))?;
                ImageTowerConfig::Resnet(ResnetConfig { layers, width, heads: (width * 32 / head_width).max(1), output_dim: embed_dim, image_size })
            }
            _ => {
                let layers = get_usize(v, "layers", 12)?;
                let mlp_ratio = get_f64(v, "mlp_ratio", 4.0)?;
                let vision = BackboneConfig {
                    kind: BackboneKind::Clip,
                    hidden_size: width,
                    intermediate_size: (width as f64 * mlp_ratio) as usize,
                    num_hidden_layers: layers,
                    num_attention_heads: (width / head_width).max(1),
                    num_channels: 3,
                    image_size,
                    patch_size: get_usize(v, "patch_size", 16)?,
                    hidden_act: act,
                    layer_norm_eps: 1e-5,
                    ..BackboneConfig::clip_vit_base_patch16()
                };
                ImageTowerConfig::Vit { vision, embed_dim }
            }
        };
        let text_width = get_usize(t, "width", 512)?;
        let text = TextConfig {
            vocab_size: get_usize(t, "vocab_size", 49408)?,
            context_length: get_usize(t, "context_length", 77)?,
            width: text_width,
            heads: get_usize(t, "heads", 8)?,
            layers: get_usize(t, "layers", 12)?,
            intermediate_size: (text_width as f64 * get_f64(t, "mlp_ratio", 4.0)?) as usize,
            hidden_act: act,
            layer_norm_eps: 1e-5,
            embed_dim,
        };
        Ok(Self { image, text })
    }

    /// Read from tensor shapes under canonical names, as OpenAI's
    /// `build_model` reads its state dicts: heads = width / 64, QuickGELU.
    pub fn infer(shapes: &Shapes) -> std::result::Result<Self, String> {
        let [embed_dim, _] = dims(shapes, "text_projection.weight")?;
        let [vocab_size, width] = dims(shapes, "text_model.embeddings.token_embedding.weight")?;
        let [context_length, _] = dims(shapes, "text_model.embeddings.position_embedding.weight")?;
        let [intermediate_size, _] = dims(shapes, "text_model.encoder.layers.0.mlp.fc1.weight")?;
        let text = TextConfig {
            vocab_size,
            context_length,
            width,
            heads: (width / 64).max(1),
            layers: count_layers(shapes, "text_model.encoder.layers"),
            intermediate_size,
            embed_dim,
            ..TextConfig::default()
        };
        let image = if shapes.contains_key("visual.layer1.0.conv1.weight") {
            let [width, ..] = dims::<4>(shapes, "visual.layer1.0.conv1.weight")?;
            let layers = ["visual.layer1", "visual.layer2", "visual.layer3", "visual.layer4"].map(|p| count_layers(shapes, p));
            let [rows, _] = dims(shapes, "visual.attnpool.positional_embedding")?;
            let grid = square_grid(rows, 1, "visual.attnpool.positional_embedding")?;
            let [output_dim, _] = dims(shapes, "visual.attnpool.c_proj.weight")?;
            ImageTowerConfig::Resnet(ResnetConfig { layers, width, heads: (width * 32 / 64).max(1), output_dim, image_size: grid * 32 })
        } else if shapes.contains_key("vision_model.embeddings.patch_embedding.weight") {
            let [hidden, _, patch, _] = dims(shapes, "vision_model.embeddings.patch_embedding.weight")?;
            let [rows, _] = dims(shapes, "vision_model.embeddings.position_embedding.weight")?;
            let grid = square_grid(rows, 1, "the vision position table")?;
            let vision = BackboneConfig {
                hidden_size: hidden,
                intermediate_size: dims::<2>(shapes, "vision_model.encoder.layers.0.mlp.fc1.weight")?[0],
                num_hidden_layers: count_layers(shapes, "vision_model.encoder.layers"),
                num_attention_heads: (hidden / 64).max(1),
                patch_size: patch,
                image_size: grid * patch,
                ..BackboneConfig::clip_vit_base_patch16()
            };
            let [embed, _] = dims(shapes, "visual_projection.weight")?;
            ImageTowerConfig::Vit { vision, embed_dim: embed }
        } else {
            return Err("no image tower found (neither visual.layer1.* of a ResNet nor a ViT's patch embedding)".into());
        };
        let arch = Self { image, text };
        arch.validate()?;
        Ok(arch)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.text.validate()?;
        match &self.image {
            ImageTowerConfig::Resnet(r) => r.validate(),
            ImageTowerConfig::Vit { vision, embed_dim } => {
                if *embed_dim == 0 || vision.num_attention_heads == 0 || !vision.hidden_size.is_multiple_of(vision.num_attention_heads) {
                    return Err(format!("ViT width {} / {} heads / projection {embed_dim} do not fit", vision.hidden_size, vision.num_attention_heads));
                }
                if vision.patch_size == 0 || !vision.image_size.is_multiple_of(vision.patch_size) {
                    return Err(format!("ViT image size {} is not a multiple of patch {}", vision.image_size, vision.patch_size));
                }
                Ok(())
            }
        }
    }

    /// How many token channels map to one text channel: the release keeps
    /// every second of RN50's 2048 to meet its 1024-wide text space.
    pub fn channel_stride(&self) -> std::result::Result<usize, String> {
        let (img, txt) = (self.image.token_width(), self.text.embed_dim);
        if img % txt != 0 {
            return Err(format!(
                "image tokens are {img} wide and text embeddings {txt}: the image width must be the text width times a whole number"
            ));
        }
        Ok(img / txt)
    }
}

/// OpenCLIP options this port does not implement, refused by name.
fn refuse_features(cfg: &Value, section: &str, keys: &[&str]) -> std::result::Result<(), String> {
    for key in keys {
        match cfg.get(*key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(v) => return Err(format!("{section} {key} = {v} is not supported by this CLIP port")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_rn50_config() {
        let arch = ClipArchitecture::from_json_str(
            r#"{"model_cfg": {"embed_dim": 1024, "quick_gelu": true, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}}"#,
        )
        .unwrap();
        assert_eq!(arch.image, ImageTowerConfig::Resnet(ResnetConfig { layers: [3, 4, 6, 3], width: 64, heads: 32, output_dim: 1024, image_size: 224 }));
        assert_eq!(arch.channel_stride().unwrap(), 2);
        assert_eq!(arch.text.hidden_act, Activation::QuickGelu);
    }

    #[test]
    fn hugging_face_clip_config() {
        let arch = ClipArchitecture::from_json_str(
            r#"{"model_type": "clip", "projection_dim": 512, "text_config": {"hidden_size": 512, "num_attention_heads": 8},
                "vision_config": {"hidden_size": 768, "patch_size": 16, "image_size": 224}}"#,
        )
        .unwrap();
        assert_eq!(arch.image.token_width(), 512);
        assert_eq!(arch.channel_stride().unwrap(), 1);
        assert_eq!(arch.image.stride(), 16);
    }

    #[test]
    fn presets_by_openai_name() {
        let rn50 = ClipArchitecture::preset("RN50").unwrap();
        assert_eq!(rn50.channel_stride().unwrap(), 2);
        assert_eq!(rn50.text.embed_dim, 1024);
        for name in ["ViT-B/16", "ViT-B-16", "openai/clip-vit-base-patch16"] {
            let arch = ClipArchitecture::preset(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((arch.image.stride(), arch.image.token_width()), (16, 512), "{name}");
        }
        assert_eq!(ClipArchitecture::preset("ViT-L/14").unwrap().text.heads, 12);
        assert!(ClipArchitecture::preset("RN42").is_none());
    }

    #[test]
    fn unsupported_configs_are_named() {
        let err = ClipArchitecture::from_json_str(r#"{"model_type": "siglip", "text_config": {}, "vision_config": {}}"#).unwrap_err();
        assert!(err.contains("siglip"), "{err}");
        let err = ClipArchitecture::from_json_str(r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {"timm_model_name": "x"}, "text_cfg": {}}}"#).unwrap_err();
        assert!(err.contains("timm_model_name"), "{err}");
        let err = ClipArchitecture::from_json_str(r#"{"hidden_size": 768}"#).unwrap_err();
        assert!(err.contains("whole CLIP"), "{err}");
    }
}
