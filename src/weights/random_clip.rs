//! A whole CLIP (or a BLIP-2) with random weights, for timing zero-shot models at full
//! size without downloading one (the weights of OpenAI's models are not
//! needed to measure how fast their architecture runs).

use std::collections::HashSet;

use candle_core::{Device, Tensor};

use super::clip_model::ClipStateDict;
use super::expected::record_tensors;
use crate::error::Result;
use super::state_dict::StateDict;
use crate::model::blip2::{Blip2, Blip2Config};
use crate::model::depthclip::{declare_towers, ClipArchitecture};

/// xorshift64*, so a seed gives the same weights on every machine.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Every tensor both towers read, uniform: weights in +-1/sqrt(fan_in),
/// norm scales near 1, BatchNorm variances positive.
pub fn random_clip_state_dict(arch: &ClipArchitecture, seed: u64) -> Result<ClipStateDict> {
    let tensors = random_tensors(&HashSet::new(), |vb| declare_towers(vb, arch), seed)?;
    Ok(ClipStateDict::from_canonical("random", tensors))
}

/// A BLIP-2 (image tower, `ln_vision`, queries, Q-Former) with random
/// weights under LAVIS's names, for timing DepthBLIP-2 at full size.
pub fn random_blip2_state_dict(arch: &Blip2Config, seed: u64) -> Result<StateDict> {
    let tensors = random_tensors(&HashSet::new(), |vb| Blip2::new(vb, arch).map(|_| ()), seed)?;
    Ok(StateDict::from_parts(tensors.into_iter().collect(), Vec::new()))
}

fn random_tensors(
    present: &HashSet<String>,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> candle_core::Result<()>,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    let expected = record_tensors(present, build)?;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut tensors = Vec::with_capacity(expected.len());
    for e in expected {
        let dims = e.shape.dims();
        let fan_in = if dims.len() > 1 { dims[1..].iter().product::<usize>() } else { 1 };
        let leaf = e.name.rsplit('.').next().unwrap_or("");
        let (lo, hi) = match leaf {
            "running_var" => (0.5, 1.5),
            "running_mean" | "bias" => (-0.1, 0.1),
            "weight" if dims.len() == 1 => (0.8, 1.2),
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
