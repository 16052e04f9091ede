//! OpenAI CLIP's vision transformer with HF names (`embeddings`,
//! `pre_layrnorm`, `encoder`, `post_layernorm`) and every hidden state
//! available, including tap 0 (the pre-normed embeddings) that candle's own
//! CLIP model does not return.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::encoder::Encoder;
use crate::model::layers::{layer_norm, LayerNorm};
use super::patch_embedding::PatchEmbedding;
use crate::model::BackboneConfig;

#[derive(Debug, Clone)]
pub struct ClipVisionEmbeddings {
    class_embedding: Tensor,
    patch_embedding: PatchEmbedding,
    position_embedding: Tensor,
}

impl ClipVisionEmbeddings {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            class_embedding: vb.get(d, "class_embedding")?,
            patch_embedding: PatchEmbedding::new(vb.pp("patch_embedding"), cfg, false)?,
            position_embedding: vb.get((cfg.num_tokens(), d), "position_embedding.weight")?,
        })
    }

    /// (B, 3, S, S) -> (B, 1 + N, D): class token first, positions added.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let patches = self.patch_embedding.forward(pixels)?;
        let (b, _, d) = patches.dims3()?;
        let class = self.class_embedding.reshape((1, 1, d))?.expand((b, 1, d))?;
        Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)
    }
}

#[derive(Debug, Clone)]
pub struct ClipVisionTransformer {
    embeddings: ClipVisionEmbeddings,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
}

impl ClipVisionTransformer {
    /// `vb` points at the HF `vision_model` prefix.
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            embeddings: ClipVisionEmbeddings::new(vb.pp("embeddings"), cfg)?,
            pre_layrnorm: layer_norm(d, eps, vb.pp("pre_layrnorm"))?,
            encoder: Encoder::new(vb.pp("encoder"), cfg)?,
            post_layernorm: layer_norm(d, eps, vb.pp("post_layernorm"))?,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.num_layers()
    }

    /// Returns the requested hidden states (B, 1 + N, D) and the pooler
    /// output: post-LayerNorm of the last layer's class token (B, D).
    pub fn forward(&self, pixels: &Tensor, taps: &[usize]) -> Result<(Vec<Option<Tensor>>, Tensor)> {
        let h0 = self.pre_layrnorm.forward(&self.embeddings.forward(pixels)?)?;
        let (last, kept) = self.encoder.forward(&h0, taps)?;
        let cls = last.narrow(1, 0, 1)?.squeeze(1)?;
        let pooler = self.post_layernorm.forward(&cls)?;
        Ok((kept, pooler))
    }

    /// Drops the class token: (B, 1 + N, D) -> (B, N, D).
    pub fn patch_tokens(h: &Tensor) -> Result<Tensor> {
        let t = h.dim(1)?;
        h.narrow(1, 1, t - 1)
    }
}
