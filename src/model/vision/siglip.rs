//! SigLIP's vision transformer (HF `SiglipVisionTransformer` names): no class
//! token and no pre-norm, so every token is a patch; the pooler is a learned
//! probe attending over the post-normed tokens (`head`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::encoder::{Encoder, Mlp};
use crate::model::layers::{layer_norm, softmax_last, LayerNorm, Linear};
use super::patch_embedding::PatchEmbedding;
use crate::model::BackboneConfig;

#[derive(Debug, Clone)]
pub struct SiglipVisionEmbeddings {
    patch_embedding: PatchEmbedding,
    position_embedding: Tensor,
}

impl SiglipVisionEmbeddings {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        Ok(Self {
            patch_embedding: PatchEmbedding::new(vb.pp("patch_embedding"), cfg, true)?,
            position_embedding: vb
                .get((cfg.num_patches(), cfg.hidden_size), "position_embedding.weight")?,
        })
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.patch_embedding.forward(pixels)?.broadcast_add(&self.position_embedding)
    }
}

/// `MultiheadAttentionPoolingHead`: one probe query, PyTorch
/// `nn.MultiheadAttention` weights (`in_proj_weight` holds q, k, v stacked).
#[derive(Debug, Clone)]
pub struct AttentionPoolingHead {
    query: Tensor,
    kv_proj: Linear,
    out_proj: Linear,
    layernorm: LayerNorm,
    mlp: Mlp,
    num_heads: usize,
}

impl AttentionPoolingHead {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        let probe = vb.get((1, 1, d), "probe")?.reshape((1, d))?;
        let attn = vb.pp("attention");
        let in_w = attn.get((3 * d, d), "in_proj_weight")?;
        let in_b = attn.get(3 * d, "in_proj_bias")?;
        // The probe is constant: project it once at load.
        let q_proj = Linear::from_weights(in_w.narrow(0, 0, d)?, Some(in_b.narrow(0, 0, d)?))?;
        let query = (q_proj.forward(&probe)? * (cfg.head_dim() as f64).powf(-0.5))?;
        let kv_proj = Linear::from_weights(in_w.narrow(0, d, 2 * d)?, Some(in_b.narrow(0, d, 2 * d)?))?;
        Ok(Self {
            query,
            kv_proj,
            out_proj: Linear::new(d, d, attn.pp("out_proj"))?,
            layernorm: layer_norm(d, cfg.layer_norm_eps, vb.pp("layernorm"))?,
            mlp: Mlp::new(vb.pp("mlp"), cfg)?,
            num_heads: cfg.num_attention_heads,
        })
    }

    /// (B, N, D) -> (B, D)
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let (b, n, d) = h.dims3()?;
        let hd = d / self.num_heads;
        let kv = self.kv_proj.forward(h)?.reshape((b, n, 2, self.num_heads, hd))?.permute((2, 0, 3, 1, 4))?;
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let q = self
            .query
            .reshape((1, self.num_heads, 1, hd))?
            .broadcast_as((b, self.num_heads, 1, hd))?
            .contiguous()?;
        let attn = softmax_last(&q.matmul(&k.t()?)?)?;
        let pooled = attn.matmul(&v)?.reshape((b, d))?;
        let pooled = self.out_proj.forward(&pooled)?;
        &pooled + self.mlp.forward(&self.layernorm.forward(&pooled)?)?
    }
}

#[derive(Debug, Clone)]
pub struct SiglipVisionTransformer {
    embeddings: SiglipVisionEmbeddings,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    head: AttentionPoolingHead,
}

impl SiglipVisionTransformer {
    /// `vb` points at the HF `vision_model` prefix.
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        Ok(Self {
            embeddings: SiglipVisionEmbeddings::new(vb.pp("embeddings"), cfg)?,
            encoder: Encoder::new(vb.pp("encoder"), cfg)?,
            post_layernorm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("post_layernorm"))?,
            head: AttentionPoolingHead::new(vb.pp("head"), cfg)?,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.num_layers()
    }

    /// The requested hidden states (B, N, D) and the attention-pooled output (B, D).
    pub fn forward(&self, pixels: &Tensor, taps: &[usize]) -> Result<(Vec<Option<Tensor>>, Tensor)> {
        let h0 = self.embeddings.forward(pixels)?;
        let (last, kept) = self.encoder.forward(&h0, taps)?;
        let pooler = self.head.forward(&self.post_layernorm.forward(&last)?)?;
        Ok((kept, pooler))
    }
}
