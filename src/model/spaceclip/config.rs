//! The SPACE-CLIP decoder's settings, read from the official training YAML
//! (`configs/nyu.yaml` style). Keys the decoder does not use (learning rate,
//! data paths, ...) are ignored so a training config can be passed as is.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderConfig {
    /// Name of the CLIP backbone (`openai/clip-vit-base-patch16`, ...): picks
    /// a preset when no HF `config.json` is given.
    #[serde(default = "default_clip_model_name")]
    pub clip_model_name: String,
    /// Output channels of the decoder stages, coarse to fine.
    #[serde(default = "default_decoder_channels")]
    pub decoder_channels: Vec<usize>,
    /// Encoder taps of the semantic (FiLM-conditioned) pathway, one per stage.
    #[serde(default = "default_main_path_indices")]
    pub main_path_indices: Vec<usize>,
    /// Encoder taps of the structural pathway, one per stage but the last.
    #[serde(default = "default_structural_path_indices")]
    pub structural_path_indices: Vec<usize>,
    #[serde(default = "default_film_hidden")]
    pub film_param_hidden_dim: usize,
    #[serde(default = "default_true")]
    pub use_film: bool,
    #[serde(default = "default_true")]
    pub use_structural_pathway: bool,
    /// Training-time auxiliary heads; loaded when the checkpoint has them,
    /// never run at inference.
    #[serde(default = "default_true")]
    pub use_multiscale_supervision: bool,
    /// Inference ignores dropout; kept so configs round-trip.
    #[serde(default)]
    pub decoder_dropout: f64,
    #[serde(default = "default_max_depth")]
    pub max_depth: f64,
    #[serde(default = "default_min_depth")]
    pub min_depth: f64,
    /// `auto` (SigLIP when `clip_model_name` contains "siglip"), `clip` or `siglip`.
    #[serde(default = "default_backbone_type")]
    pub vision_backbone_type: String,
    /// Input normalisation overriding the backbone's (RGB order).
    #[serde(default)]
    pub vision_image_mean: Option<[f32; 3]>,
    #[serde(default)]
    pub vision_image_std: Option<[f32; 3]>,
    /// Feeding full-size images to the backbone is a training option this
    /// inference path does not implement; refused rather than ignored.
    #[serde(default)]
    pub use_image_orig_for_clip: bool,
}

fn default_clip_model_name() -> String {
    "openai/clip-vit-base-patch16".into()
}
fn default_decoder_channels() -> Vec<usize> {
    vec![256, 128, 64, 32]
}
fn default_main_path_indices() -> Vec<usize> {
    vec![12, 9, 6, 3]
}
fn default_structural_path_indices() -> Vec<usize> {
    vec![2, 1, 0]
}
fn default_film_hidden() -> usize {
    256
}
fn default_backbone_type() -> String {
    "auto".into()
}
fn default_true() -> bool {
    true
}
fn default_max_depth() -> f64 {
    10.0
}
fn default_min_depth() -> f64 {
    1e-3
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            clip_model_name: default_clip_model_name(),
            decoder_channels: default_decoder_channels(),
            main_path_indices: default_main_path_indices(),
            structural_path_indices: default_structural_path_indices(),
            film_param_hidden_dim: default_film_hidden(),
            use_film: true,
            use_structural_pathway: true,
            use_multiscale_supervision: true,
            decoder_dropout: 0.0,
            max_depth: default_max_depth(),
            min_depth: default_min_depth(),
            vision_backbone_type: default_backbone_type(),
            vision_image_mean: None,
            vision_image_std: None,
            use_image_orig_for_clip: false,
        }
    }
}

impl DecoderConfig {
    /// Reads and validates a YAML file. The official configs sometimes nest
    /// the model keys under `model:`; both layouts are accepted.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml_str(&text).map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses YAML text; the error is a plain message for the caller to wrap.
    pub fn from_yaml_str(text: &str) -> Result<Self, String> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        if !value.is_mapping() {
            return Err("expected a mapping of training-config keys".into());
        }
        // Parse from text (not from the Value) so errors carry the key path.
        let cfg: DecoderConfig = match value.get("model") {
            Some(inner) if inner.is_mapping() && inner.get("decoder_channels").is_some() => {
                let text = serde_norway::to_string(inner).map_err(|e| e.to_string())?;
                serde_norway::from_str(&text).map_err(|e| format!("model.{e}"))?
            }
            _ => serde_norway::from_str(text).map_err(|e| e.to_string())?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Number of decoder stages.
    pub fn num_stages(&self) -> usize {
        self.decoder_channels.len()
    }

    /// Whether stage `i` has a structural block feeding it.
    pub fn has_structural_stage(&self, i: usize) -> bool {
        self.use_structural_pathway && i + 1 < self.num_stages()
    }

    /// Whether the config asks for a SigLIP backbone (`None` = CLIP).
    pub fn wants_siglip(&self) -> bool {
        match self.vision_backbone_type.as_str() {
            "siglip" => true,
            "clip" => false,
            _ => self.clip_model_name.to_ascii_lowercase().contains("siglip"),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !matches!(self.vision_backbone_type.as_str(), "auto" | "clip" | "siglip") {
            return Err(format!(
                "vision_backbone_type must be auto, clip or siglip, got {:?}",
                self.vision_backbone_type
            ));
        }
        if self.use_image_orig_for_clip {
            return Err("use_image_orig_for_clip: true is not supported (the backbone takes the 224x224 resize)".into());
        }
        if let Some(std) = self.vision_image_std {
            if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(format!("vision_image_std must be positive, got {std:?}"));
            }
        }
        let n = self.decoder_channels.len();
        if n == 0 {
            return Err("decoder_channels is empty".into());
        }
        if let Some(c) = self.decoder_channels.iter().find(|&&c| c == 0) {
            return Err(format!("decoder_channels has a zero entry ({c})"));
        }
        if self.main_path_indices.len() != n {
            return Err(format!(
                "main_path_indices has {} entries, decoder_channels has {n}: they must match",
                self.main_path_indices.len()
            ));
        }
        if self.use_structural_pathway && self.structural_path_indices.len() + 1 != n {
            return Err(format!(
                "structural_path_indices has {} entries, expected {} (one fewer than decoder_channels)",
                self.structural_path_indices.len(),
                n - 1
            ));
        }
        if self.use_film && self.film_param_hidden_dim == 0 {
            return Err("film_param_hidden_dim must be > 0".into());
        }
        if !(self.min_depth.is_finite() && self.max_depth.is_finite())
            || self.min_depth < 0.0
            || self.max_depth <= self.min_depth
        {
            return Err(format!(
                "need 0 <= min_depth < max_depth, got min_depth {} and max_depth {}",
                self.min_depth, self.max_depth
            ));
        }
        Ok(())
    }

    /// Checks the tap indices against the backbone's depth (taps 0..=layers).
    pub fn check_taps(&self, num_layers: usize) -> Result<(), String> {
        let structural: &[usize] = if self.use_structural_pathway {
            &self.structural_path_indices
        } else {
            &[]
        };
        for (key, list) in [
            ("main_path_indices", &self.main_path_indices[..]),
            ("structural_path_indices", structural),
        ] {
            if let Some(bad) = list.iter().find(|&&i| i > num_layers) {
                return Err(format!(
                    "{key} has tap {bad}, but the backbone has only taps 0..={num_layers}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_keys_parse_and_unknown_keys_are_ignored() {
        let yaml = "clip_model_name: openai/clip-vit-base-patch16\n\
                    decoder_channels: [256, 128, 64, 32]\n\
                    main_path_indices: [12, 9, 6, 3]\n\
                    structural_path_indices: [2, 1, 0]\n\
                    film_param_hidden_dim: 256\nuse_film: true\n\
                    use_structural_pathway: true\nuse_multiscale_supervision: true\n\
                    decoder_dropout: 0.1\nmax_depth: 80.0\nmin_depth: 0.001\n\
                    lr: 0.0001\nbatch_size: 64\n";
        let cfg = DecoderConfig::from_yaml_str(yaml).unwrap();
        assert_eq!(cfg.max_depth, 80.0);
        assert_eq!(cfg.decoder_channels, vec![256, 128, 64, 32]);
        assert!(cfg.has_structural_stage(2) && !cfg.has_structural_stage(3));
    }

    #[test]
    fn nested_model_section_is_accepted() {
        let cfg = DecoderConfig::from_yaml_str("model:\n  decoder_channels: [8, 8]\n  main_path_indices: [2, 1]\n  structural_path_indices: [0]\n").unwrap();
        assert_eq!(cfg.decoder_channels, vec![8, 8]);
    }

    #[test]
    fn mismatched_lengths_are_refused_with_the_key_named() {
        let err = DecoderConfig::from_yaml_str("decoder_channels: [8, 8]\n").unwrap_err();
        assert!(err.contains("main_path_indices"), "{err}");
        let err = DecoderConfig::from_yaml_str("max_depth: -1\n").unwrap_err();
        assert!(err.contains("max_depth"), "{err}");
        let err = DecoderConfig::from_yaml_str("decoder_channels: fast\n").unwrap_err();
        assert!(err.contains("decoder_channels"), "{err}");
        assert!(DecoderConfig::from_yaml_str("- a\n- b\n").is_err());
    }

    #[test]
    fn backbone_type_and_normalisation_keys() {
        let cfg = DecoderConfig::from_yaml_str("clip_model_name: google/SigLIP-base-patch16-224\n").unwrap();
        assert!(cfg.wants_siglip());
        let cfg = DecoderConfig::from_yaml_str("clip_model_name: my-siglip\nvision_backbone_type: clip\nvision_image_mean: [0.5, 0.5, 0.5]\n").unwrap();
        assert!(!cfg.wants_siglip());
        assert_eq!(cfg.vision_image_mean, Some([0.5; 3]));
        assert!(DecoderConfig::from_yaml_str("vision_backbone_type: resnet\n").unwrap_err().contains("vision_backbone_type"));
        assert!(DecoderConfig::from_yaml_str("use_image_orig_for_clip: true\n").unwrap_err().contains("use_image_orig_for_clip"));
        assert!(DecoderConfig::from_yaml_str("vision_image_std: [0.5, 0, 0.5]\n").unwrap_err().contains("vision_image_std"));
    }

    #[test]
    fn taps_beyond_the_backbone_are_refused() {
        let cfg = DecoderConfig::default();
        assert!(cfg.check_taps(12).is_ok());
        assert!(cfg.check_taps(6).unwrap_err().contains("main_path_indices"));
    }
}
