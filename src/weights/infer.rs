//! Guessing the architecture from the tensors alone, for `inspect`: sizes
//! are in the shapes; attention heads and tap indices are not.

use super::state_dict::StateDict;
use crate::model::{BackboneConfig, BackboneKind, DecoderConfig};
use crate::model::BACKBONE_PREFIX;

/// What the tensors say; `None` where a part is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredArchitecture {
    /// Heads cannot be read from weights: assumed hidden / 64 (true of
    /// every OpenAI CLIP and SigLIP base model).
    pub backbone: Option<BackboneConfig>,
    /// Tap indices, depth range and backbone name keep their official
    /// defaults: they are not in the weights.
    pub decoder: Option<DecoderConfig>,
}

fn dims(dict: &StateDict, name: &str) -> Option<Vec<usize>> {
    dict.tensors().get(name).map(|t| t.dims().to_vec())
}

fn count_indexed(dict: &StateDict, prefix: &str) -> usize {
    let mut n = 0;
    while dict.tensors().keys().any(|k| k.starts_with(&format!("{prefix}.{n}."))) {
        n += 1;
    }
    n
}

pub fn infer_architecture(dict: &StateDict) -> InferredArchitecture {
    InferredArchitecture { backbone: infer_backbone(dict), decoder: infer_decoder(dict) }
}

fn infer_backbone(dict: &StateDict) -> Option<BackboneConfig> {
    let p = BACKBONE_PREFIX;
    let patch = dims(dict, &format!("{p}.embeddings.patch_embedding.weight"))?;
    let (hidden, patch_size) = (patch[0], *patch.get(2)?);
    let clip = dict.tensors().contains_key(&format!("{p}.embeddings.class_embedding"));
    let positions = dims(dict, &format!("{p}.embeddings.position_embedding.weight"))?[0];
    let grid = ((positions - usize::from(clip)) as f64).sqrt().round() as usize;
    let base = if clip { BackboneConfig::clip_vit_base_patch16() } else { BackboneConfig::siglip_base_patch16_224() };
    let intermediate = dims(dict, &format!("{p}.encoder.layers.0.mlp.fc1.weight")).map(|d| d[0])?;
    Some(BackboneConfig {
        kind: if clip { BackboneKind::Clip } else { BackboneKind::Siglip },
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: count_indexed(dict, &format!("{p}.encoder.layers")),
        num_attention_heads: (hidden / 64).max(1),
        patch_size,
        image_size: grid * patch_size,
        ..base
    })
}

fn infer_decoder(dict: &StateDict) -> Option<DecoderConfig> {
    let stages = count_indexed(dict, "main_path_projections");
    if stages == 0 {
        return None;
    }
    let decoder_channels = (0..stages)
        .map(|i| dims(dict, &format!("main_path_projections.{i}.weight")).map(|d| d[0]))
        .collect::<Option<Vec<_>>>()?;
    let film = dims(dict, "film_param_generators.0.0.weight");
    let structural = count_indexed(dict, "structural_path_projections") > 0;
    let defaults = DecoderConfig::default();
    Some(DecoderConfig {
        use_film: film.is_some(),
        film_param_hidden_dim: film.map(|d| d[0]).unwrap_or(defaults.film_param_hidden_dim),
        use_structural_pathway: structural,
        use_multiscale_supervision: count_indexed(dict, "aux_depth_heads") > 0,
        main_path_indices: if stages == defaults.decoder_channels.len() {
            defaults.main_path_indices.clone()
        } else {
            Vec::new()
        },
        structural_path_indices: if stages == defaults.decoder_channels.len() {
            defaults.structural_path_indices.clone()
        } else {
            Vec::new()
        },
        decoder_channels,
        ..defaults
    })
}
