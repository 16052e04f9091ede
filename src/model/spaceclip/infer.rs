//! Guessing the architecture from the tensors alone, for `inspect`: sizes
//! are in the shapes; attention heads and tap indices are not.

use crate::weights::StateDict;
use crate::model::{BackboneConfig, BackboneKind, DecoderConfig};
use crate::model::shapes::{count_layers, dims, square_grid, Shapes};
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

fn shapes(dict: &StateDict) -> Shapes {
    dict.tensors().iter().map(|(n, t)| (n.clone(), t.dims().to_vec())).collect()
}

/// The `N` dims of `name`; `None` when absent or of another rank (a guess
/// from shapes reports what it can tell).
fn dims_of<const N: usize>(shapes: &Shapes, name: &str) -> Option<[usize; N]> {
    dims::<N>(shapes, name).ok()
}

pub fn infer_architecture(dict: &StateDict) -> InferredArchitecture {
    let shapes = shapes(dict);
    InferredArchitecture { backbone: infer_backbone(&shapes), decoder: infer_decoder(&shapes) }
}

fn infer_backbone(shapes: &Shapes) -> Option<BackboneConfig> {
    let p = BACKBONE_PREFIX;
    let [hidden, _, patch_size, _] = dims_of::<4>(shapes, &format!("{p}.embeddings.patch_embedding.weight"))?;
    let clip = shapes.contains_key(&format!("{p}.embeddings.class_embedding"));
    let [positions, _] = dims_of::<2>(shapes, &format!("{p}.embeddings.position_embedding.weight"))?;
    let grid = square_grid(positions, usize::from(clip), "the position table").ok()?;
    let base = if clip { BackboneConfig::clip_vit_base_patch16() } else { BackboneConfig::siglip_base_patch16_224() };
    let [intermediate, _] = dims_of::<2>(shapes, &format!("{p}.encoder.layers.0.mlp.fc1.weight"))?;
    Some(BackboneConfig {
        kind: if clip { BackboneKind::Clip } else { BackboneKind::Siglip },
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: count_layers(shapes, &format!("{p}.encoder.layers")),
        num_attention_heads: (hidden / 64).max(1),
        patch_size,
        image_size: grid * patch_size,
        ..base
    })
}

fn infer_decoder(shapes: &Shapes) -> Option<DecoderConfig> {
    let stages = count_layers(shapes, "main_path_projections");
    if stages == 0 {
        return None;
    }
    let decoder_channels = (0..stages)
        .map(|i| dims_of::<4>(shapes, &format!("main_path_projections.{i}.weight")).map(|d| d[0]))
        .collect::<Option<Vec<_>>>()?;
    let film = dims_of::<2>(shapes, "film_param_generators.0.0.weight");
    let structural = count_layers(shapes, "structural_path_projections") > 0;
    let defaults = DecoderConfig::default();
    Some(DecoderConfig {
        use_film: film.is_some(),
        film_param_hidden_dim: film.map(|d| d[0]).unwrap_or(defaults.film_param_hidden_dim),
        use_structural_pathway: structural,
        use_multiscale_supervision: count_layers(shapes, "aux_depth_heads") > 0,
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
