//! BLIP-2 as DepthBLIP-2 reads it (LAVIS's `Blip2Qformer`, the parts its
//! `extract_features(mode="multimodal")` runs): a frozen image tower (EVA
//! ViT-g/14 or CLIP ViT-L/14), `ln_vision` over all its tokens, and the
//! Q-Former fusing 32 learned queries with a prompt while cross-attending
//! to the image. Names are LAVIS's state-dict names; Hugging Face
//! `Blip2ForImageTextRetrieval` files are renamed to them at load.

mod config;
mod positions;
mod qformer;
mod random;
mod vision;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{ArchitectureHints, Blip2Config, QFormerConfig, VisionConfig, VisionKind, EVA_HEAD_DIM, HEAD_DIM};
pub use positions::resize_positions;
pub use qformer::{mean_queries, QFormer};
pub use random::random_blip2_state_dict;
pub use vision::VisionTower;

use crate::model::layers::{layer_norm, LayerNorm};

#[derive(Debug, Clone)]
pub struct Blip2 {
    visual_encoder: VisionTower,
    ln_vision: LayerNorm,
    query_tokens: Tensor,
    qformer: QFormer,
    cfg: Blip2Config,
}

impl Blip2 {
    /// `vb` points at the root of a LAVIS state dict.
    pub fn new(vb: VarBuilder, cfg: &Blip2Config) -> Result<Self> {
        Ok(Self {
            visual_encoder: VisionTower::new(vb.pp("visual_encoder"), &cfg.vision)?,
            ln_vision: layer_norm(cfg.vision.width, cfg.ln_vision_eps, vb.pp("ln_vision"))?,
            query_tokens: vb.get((1, cfg.queries, cfg.qformer.hidden), "query_tokens")?,
            qformer: QFormer::new(vb.pp("Qformer.bert"), &cfg.qformer)?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Blip2Config {
        &self.cfg
    }

    pub fn patch_size(&self) -> usize {
        self.cfg.vision.patch
    }

    /// Normalised pixels (B, 3, H, W) -> `ln_vision` of all the tower's
    /// tokens (B, 1 + HW, D).
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        self.ln_vision.forward(&self.visual_encoder.forward(pixels)?)
    }

    /// The prompts' embeddings and mask (see [`QFormer::embed`]).
    pub fn embed_prompts(&self, ids: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
        self.qformer.embed(&self.query_tokens, ids, mask)
    }

    /// Multimodal query outputs (B, P, Q, H) of every prompt with every image.
    pub fn multimodal(&self, image_embeds: &Tensor, embedded: &Tensor, additive: &Tensor) -> Result<Tensor> {
        self.qformer.multimodal(image_embeds, embedded, additive, self.cfg.queries)
    }
}
