//! FiLM: the pooled image embedding sets a per-channel scale and shift for
//! each semantic tap's tokens (`film_param_generators.{i}.0`, `.2`: Linear
//! -> ReLU -> Linear, chunked into gamma, beta). All generators run as one
//! stacked first layer and one batched second layer: two launches on a GPU
//! instead of eight.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::Activation;
use crate::model::layers::Linear;

#[derive(Debug, Clone)]
pub struct FilmGenerators {
    /// The first layers stacked: dim -> count * hidden, ReLU fused.
    first: Linear,
    /// (count, hidden, 2 dim): the second layers, transposed for matmul.
    second_t: Tensor,
    /// (count, 1, 2 dim)
    second_bias: Tensor,
    count: usize,
    hidden: usize,
    dim: usize,
}

impl FilmGenerators {
    /// `vb` points at `film_param_generators`.
    pub fn new(vb: VarBuilder, count: usize, dim: usize, hidden: usize) -> Result<Self> {
        let mut w1 = Vec::with_capacity(count);
        let mut b1 = Vec::with_capacity(count);
        let mut w2 = Vec::with_capacity(count);
        let mut b2 = Vec::with_capacity(count);
        for i in 0..count {
            let g = vb.pp(i);
            w1.push(g.get((hidden, dim), "0.weight")?);
            b1.push(g.get(hidden, "0.bias")?);
            w2.push(g.get((2 * dim, hidden), "2.weight")?.t()?);
            b2.push(g.get(2 * dim, "2.bias")?.reshape((1, 2 * dim))?);
        }
        Ok(Self {
            first: Linear::from_weights(Tensor::cat(&w1, 0)?, Some(Tensor::cat(&b1, 0)?))?
                .with_activation(Activation::Relu),
            second_t: Tensor::stack(&w2, 0)?.contiguous()?,
            second_bias: Tensor::stack(&b2, 0)?,
            count,
            hidden,
            dim,
        })
    }

    /// (gamma, beta) per generator, each (B, 1, D); pooler (B, D).
    pub fn params(&self, pooler: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let b = pooler.dim(0)?;
        let h = self
            .first
            .forward(pooler)?
            .reshape((b, self.count, self.hidden))?
            .transpose(0, 1)?
            .contiguous()?;
        let p = h.matmul(&self.second_t)?.broadcast_add(&self.second_bias)?; // (count, B, 2D)
        (0..self.count)
            .map(|i| {
                let pi = p.get(i)?.unsqueeze(1)?;
                Ok((pi.narrow(2, 0, self.dim)?, pi.narrow(2, self.dim, self.dim)?))
            })
            .collect()
    }
}

/// `gamma * tokens + beta` (plain gamma, not 1 + gamma, as the authors).
pub fn modulate(tokens: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    tokens.broadcast_mul(gamma)?.broadcast_add(beta)
}
