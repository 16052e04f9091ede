//! SPACE-CLIP with random weights in the official layout, for benchmarks and
//! for tests that need a model of a given size without a trained checkpoint.

use std::collections::HashSet;

use super::expected::expected_tensors;
use crate::error::Result;
use crate::model::{BackboneConfig, DecoderConfig};
use crate::weights::{fill_uniform, FileFormat, StateDict, TensorFile};

/// Every tensor the model reads, filled uniformly (see [`fill_uniform`]).
pub fn random_state_dict(backbone: &BackboneConfig, decoder: &DecoderConfig, seed: u64) -> Result<StateDict> {
    let tensors = fill_uniform(expected_tensors(backbone, decoder, &HashSet::new())?, seed)?;
    StateDict::from_tensor_files(vec![TensorFile { path: "random".into(), format: FileFormat::Safetensors, tensors }])
}
