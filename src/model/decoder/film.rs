//! FiLM: the pooled image embedding sets a per-channel scale and shift for
//! the semantic pathway's tokens (`film_param_generators.{i}.0`, `.2`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::layers::Linear;

#[derive(Debug, Clone)]
pub struct FilmGenerator {
    fc0: Linear,
    fc2: Linear,
    dim: usize,
}

impl FilmGenerator {
    pub fn new(vb: VarBuilder, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            fc0: Linear::new(dim, hidden, vb.pp("0"))?,
            fc2: Linear::new(hidden, 2 * dim, vb.pp("2"))?,
            dim,
        })
    }

    /// `gamma * tokens + beta` with (gamma, beta) = chunk(MLP(pooler), 2);
    /// tokens (B, N, D), pooler (B, D).
    pub fn modulate(&self, tokens: &Tensor, pooler: &Tensor) -> Result<Tensor> {
        let params = self.fc2.forward(&self.fc0.forward(pooler)?.relu()?)?.unsqueeze(1)?;
        let gamma = params.narrow(2, 0, self.dim)?;
        let beta = params.narrow(2, self.dim, self.dim)?;
        tokens.broadcast_mul(&gamma)?.broadcast_add(&beta)
    }
}
