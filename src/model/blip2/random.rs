//! A BLIP-2 with random weights, for timing DepthBLIP-2 at full size.

use std::collections::HashSet;

use super::{Blip2, Blip2Config};
use crate::error::Result;
use crate::weights::{random_tensors, StateDict};

/// The image tower, `ln_vision`, queries and Q-Former with random weights
/// under LAVIS's names.
pub fn random_blip2_state_dict(arch: &Blip2Config, seed: u64) -> Result<StateDict> {
    let tensors = random_tensors(&HashSet::new(), |vb| Blip2::new(vb, arch).map(|_| ()), seed)?;
    Ok(StateDict::from_parts(tensors.into_iter().collect(), Vec::new()))
}
