//! A whole CLIP with random weights, for timing DepthCLIP at full size
//! without downloading one (the weights of OpenAI's models are not needed to
//! measure how fast their architecture runs).

use std::collections::HashSet;

use super::{declare_towers, ClipArchitecture};
use crate::error::Result;
use crate::weights::{random_tensors, ClipStateDict};

/// Every tensor both towers read, uniform: weights in +-1/sqrt(fan_in),
/// norm scales near 1, BatchNorm variances positive.
pub fn random_clip_state_dict(arch: &ClipArchitecture, seed: u64) -> Result<ClipStateDict> {
    let tensors = random_tensors(&HashSet::new(), |vb| declare_towers(vb, arch), seed)?;
    Ok(ClipStateDict::from_canonical("random", tensors))
}
