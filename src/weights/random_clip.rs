//! A whole CLIP (or a BLIP-2) with random weights, for timing zero-shot models at full
//! size without downloading one (the weights of OpenAI's models are not
//! needed to measure how fast their architecture runs).

use std::collections::HashSet;

use candle_core::Tensor;

use super::random::fill_uniform;

use super::clip_model::ClipStateDict;
use super::expected::record_tensors;
use crate::error::Result;
use super::state_dict::StateDict;
use crate::model::blip2::{Blip2, Blip2Config};
use crate::model::depthclip::{declare_towers, ClipArchitecture};

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
    fill_uniform(record_tensors(present, build)?, seed)
}
