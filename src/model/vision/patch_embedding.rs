//! Non-overlapping patch embedding (a conv with kernel = stride = patch) done
//! as one matmul over unfolded patches, which is what the conv computes.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::layers::Linear;
use crate::model::BackboneConfig;

#[derive(Debug, Clone)]
pub struct PatchEmbedding {
    proj: Linear,
    patch: usize,
}

impl PatchEmbedding {
    /// Reads `patch_embedding.weight` (D, C, P, P) and, when `bias`, `.bias`.
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig, bias: bool) -> Result<Self> {
        let (d, c, p) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
        let bias = if bias { Some(vb.get(d, "bias")?) } else { None };
        Self::from_weights(vb.get((d, c, p, p), "weight")?, bias)
    }

    /// From a conv weight (D, C, P, P) and optional bias (D), whatever
    /// the checkpoint calls them.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (d, c, p, _) = weight.dims4()?;
        Ok(Self { proj: Linear::from_weights(weight.reshape((d, c * p * p))?, bias)?, patch: p })
    }

    /// (B, C, H, W) -> (B, N, D), patches in row-major order.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let patches = pixels
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, gh * gw, c * p * p))?;
        self.proj.forward(&patches)
    }
}
