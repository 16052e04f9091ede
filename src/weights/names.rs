//! The naming variants of SPACE-CLIP weights, mapped to one canonical form:
//! `clip_vision_model.vision_model.<HF name>` for the backbone, the
//! decoder's own names for the rest.

/// Where a SPACE-CLIP checkpoint keeps its CLIP vision tower.
pub const BACKBONE_PREFIX: &str = "clip_vision_model.vision_model";

/// What a stored tensor name is to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameClass {
    /// A tensor the model may use, under its canonical name.
    Model(String),
    /// Stored but never used at inference: BN step counters, HF position
    /// id buffers, the text tower and projections of a full CLIP file.
    Ignored,
}

const IGNORED_ROOTS: [&str; 5] =
    ["text_model.", "visual_projection.", "text_projection.", "logit_scale", "logit_bias"];
const IGNORED_LEAVES: [&str; 2] = ["num_batches_tracked", "position_ids"];

/// Maps one stored name:
/// - a DataParallel `module.` prefix is dropped;
/// - `clip_vision_model.<hf>` (transformers 5) gains `vision_model.`;
/// - `vision_model.<hf>` (a stand-alone HF CLIP file) gains `clip_vision_model.`.
pub fn canonical_name(stored: &str) -> NameClass {
    let name = stored.strip_prefix("module.").unwrap_or(stored);
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if IGNORED_LEAVES.contains(&leaf) || IGNORED_ROOTS.iter().any(|r| name.starts_with(r)) {
        return NameClass::Ignored;
    }
    if let Some(rest) = name.strip_prefix("clip_vision_model.") {
        let rest = rest.strip_prefix("vision_model.").unwrap_or(rest);
        if IGNORED_ROOTS.iter().any(|r| rest.starts_with(r)) {
            return NameClass::Ignored;
        }
        return NameClass::Model(format!("{BACKBONE_PREFIX}.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("vision_model.") {
        return NameClass::Model(format!("{BACKBONE_PREFIX}.{rest}"));
    }
    NameClass::Model(name.to_string())
}

/// The name a tensor takes in a training model: the canonical name, with
/// the BatchNorm step counters kept (training updates and saves them).
/// `None` for tensors no SPACE-CLIP model holds (text tower, ...).
pub fn training_name(stored: &str) -> Option<String> {
    let name = stored.strip_prefix("module.").unwrap_or(stored);
    if name.ends_with(".num_batches_tracked") {
        return Some(name.to_string());
    }
    match canonical_name(stored) {
        NameClass::Model(n) => Some(n),
        NameClass::Ignored => None,
    }
}

/// Whether a canonical name belongs to the backbone.
pub fn is_backbone(canonical: &str) -> bool {
    canonical.starts_with(BACKBONE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(s: &str) -> NameClass {
        NameClass::Model(s.to_string())
    }

    #[test]
    fn every_backbone_variant_maps_to_one_name() {
        let want = model("clip_vision_model.vision_model.encoder.layers.0.mlp.fc1.weight");
        for stored in [
            "clip_vision_model.vision_model.encoder.layers.0.mlp.fc1.weight",
            "clip_vision_model.encoder.layers.0.mlp.fc1.weight",
            "module.clip_vision_model.vision_model.encoder.layers.0.mlp.fc1.weight",
            "module.clip_vision_model.encoder.layers.0.mlp.fc1.weight",
            "vision_model.encoder.layers.0.mlp.fc1.weight",
        ] {
            assert_eq!(canonical_name(stored), want, "{stored}");
        }
    }

    #[test]
    fn decoder_names_pass_through_without_module_prefix() {
        assert_eq!(canonical_name("module.main_path_projections.0.weight"), model("main_path_projections.0.weight"));
        assert_eq!(canonical_name("depth_prediction_head.3.bias"), model("depth_prediction_head.3.bias"));
    }

    #[test]
    fn training_names_keep_the_batch_norm_counters() {
        let n = "module.main_decoder_blocks.0.fusion_conv.1.num_batches_tracked";
        assert_eq!(training_name(n).as_deref(), Some("main_decoder_blocks.0.fusion_conv.1.num_batches_tracked"));
        assert_eq!(training_name("text_model.x"), None);
        assert_eq!(
            training_name("vision_model.post_layernorm.weight").as_deref(),
            Some("clip_vision_model.vision_model.post_layernorm.weight")
        );
    }

    #[test]
    fn unused_tensors_are_ignored() {
        for stored in [
            "main_decoder_blocks.0.fusion_conv.1.num_batches_tracked",
            "text_model.embeddings.token_embedding.weight",
            "visual_projection.weight",
            "logit_scale",
            "clip_vision_model.vision_model.embeddings.position_ids",
            "vision_model.embeddings.position_ids",
        ] {
            assert_eq!(canonical_name(stored), NameClass::Ignored, "{stored}");
        }
    }
}
