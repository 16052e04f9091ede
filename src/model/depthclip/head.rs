//! DepthCLIP's head: image tokens against the distance prompts' text
//! features. Each token is L2-normalised, thinned to the text width (every
//! s-th channel, the release's nearest-neighbour `F.interpolate` on the
//! channel axis), compared with every class by a scaled dot product,
//! softmaxed over the classes, and turned into depth as the
//! probability-weighted sum of the bins.

use candle_core::{DType, Result, Tensor, D};

use crate::model::layers::softmax_last;
use crate::model::prompt_bins::edge_margin;

#[derive(Debug, Clone)]
pub struct DepthHead {
    /// (E, K): one L2-normalised text feature per distance class.
    text_features: Tensor,
    /// (K, 1) depths in metres.
    bins: Tensor,
    /// logit_scale / temperature.
    scale: f64,
    channel_stride: usize,
    /// The smallest and largest bin: a weighted mean lies between them, and
    /// is clamped there so that rounding never puts it a hair outside
    /// (where a range test would call it too near or too far).
    limits: (f32, f32),
}

impl DepthHead {
    pub fn new(text_features: Tensor, bins: &[f64], scale: f64, channel_stride: usize) -> Result<Self> {
        let device = text_features.device().clone();
        let bins: Vec<f32> = bins.iter().map(|&b| b as f32).collect();
        let k = bins.len();
        let limits = (bins.iter().copied().fold(f32::INFINITY, f32::min), bins.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        Ok(Self {
            limits,
            text_features: text_features.to_dtype(DType::F32)?,
            bins: Tensor::from_vec(bins, (k, 1), &device)?,
            scale,
            channel_stride,
        })
    }

    /// (E, K) text features.
    pub fn text_features(&self) -> &Tensor {
        &self.text_features
    }

    /// Tokens (B, N, C) in any dtype -> depth (B, 1, gh, gw) in f32.
    pub fn forward(&self, tokens: &Tensor, grid: (usize, usize)) -> Result<Tensor> {
        let (b, p) = self.probabilities(tokens, grid)?;
        p.matmul(&self.bins)?.clamp(self.limits.0, self.limits.1)?.reshape((b, 1, grid.0, grid.1))
    }

    /// As [`Self::forward`], with the end classes' signed margin (B, 1, gh,
    /// gw) ([`crate::model::prompt_bins::edge_margin`]).
    pub fn forward_with_edges(&self, tokens: &Tensor, grid: (usize, usize)) -> Result<(Tensor, Tensor)> {
        let (b, p) = self.probabilities(tokens, grid)?;
        let depth = p.matmul(&self.bins)?.clamp(self.limits.0, self.limits.1)?.reshape((b, 1, grid.0, grid.1))?;
        let edge = edge_margin(&p, 1)?.reshape((b, 1, grid.0, grid.1))?;
        Ok((depth, edge))
    }

    /// The batch size and the class probabilities (B * N, K), f32.
    fn probabilities(&self, tokens: &Tensor, grid: (usize, usize)) -> Result<(usize, Tensor)> {
        let (b, n, c) = tokens.dims3()?;
        if n != grid.0 * grid.1 {
            candle_core::bail!("{n} tokens do not form a {}x{} grid", grid.0, grid.1);
        }
        let t = tokens.to_dtype(DType::F32)?;
        let norm = t.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::INFINITY)?;
        let mut f = t.broadcast_div(&norm)?;
        let s = self.channel_stride;
        if s > 1 {
            f = f.reshape((b, n, c / s, s))?.narrow(3, 0, 1)?.squeeze(3)?;
        }
        let e = f.dim(2)?;
        let logits = (f.contiguous()?.reshape((b * n, e))?.matmul(&self.text_features)? * self.scale)?;
        Ok((b, softmax_last(&logits)?))
    }
}
