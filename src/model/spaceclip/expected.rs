//! The tensors a SPACE-CLIP configuration reads, learnt from the model's
//! own code ([`record_tensors`]).

use std::collections::HashSet;

use crate::error::Result;
use crate::model::{BackboneConfig, DecoderConfig, SpaceClip};
use crate::weights::{record_tensors, ExpectedTensor};

/// Every tensor SPACE-CLIP with these configs reads, in build order.
/// `present` is the set of canonical names the checkpoint has (optional
/// tensors are expected only when present).
pub fn expected_tensors(backbone: &BackboneConfig, decoder: &DecoderConfig, present: &HashSet<String>) -> Result<Vec<ExpectedTensor>> {
    record_tensors(present, |vb| SpaceClip::new(vb, backbone, decoder).map(|_| ()))
}
