//! Random weights in the official layout, for benchmarks and for tests that
//! need a model of a given size without a trained checkpoint.

use std::collections::HashSet;

use candle_core::{Device, Tensor};

use super::expected::{record_tensors, ExpectedTensor};
use crate::error::Result;

/// A small deterministic generator (xorshift64*), so a seed gives the same
/// weights on every machine.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Every tensor `build` reads (see [`record_tensors`]), filled uniformly
/// from `seed` (see [`fill_uniform`]).
pub fn random_tensors(
    present: &HashSet<String>,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> candle_core::Result<()>,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    fill_uniform(record_tensors(present, build)?, seed)
}

/// Random values for every tensor of `expected`, from `seed`: weights in
/// +-1/sqrt(fan_in), LayerNorm/BatchNorm scales near 1, biases and BN
/// means near 0, BN variances positive. Every random-weight model uses it.
pub fn fill_uniform(expected: Vec<ExpectedTensor>, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut tensors = Vec::with_capacity(expected.len());
    for e in expected {
        let dims = e.shape.dims();
        let fan_in = if dims.len() > 1 { dims[1..].iter().product::<usize>() } else { 1 };
        let leaf = e.name.rsplit('.').next().unwrap_or("");
        let is_norm_scale = leaf == "weight" && dims.len() == 1;
        let (lo, hi) = match leaf {
            "running_var" => (0.5, 1.5),
            "running_mean" | "bias" | "in_proj_bias" => (-0.1, 0.1),
            _ if is_norm_scale => (0.8, 1.2),
            _ => {
                let a = 1.0 / (fan_in as f32).sqrt();
                (-a, a)
            }
        };
        let data: Vec<f32> = (0..e.shape.elem_count()).map(|_| lo + (hi - lo) * rng.next_f32()).collect();
        tensors.push((e.name, Tensor::from_vec(data, e.shape, &Device::Cpu)?));
    }
    Ok(tensors)
}
