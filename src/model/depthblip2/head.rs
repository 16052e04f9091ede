//! The release's head (method "second"): per class, the C-channel
//! embedding read as (groups, h, w), reduced over the groups, divided by
//! the temperature; softmax over the classes weights the bins.

use candle_core::{DType, Result, Tensor};

use super::config::GroupReduce;

/// P_f (B, K, C) -> logits / temperature (B, K, h, w), f32.
pub fn class_logits(p_f: &Tensor, groups: usize, height: usize, reduce: GroupReduce, temperature: f64) -> Result<Tensor> {
    let (b, k, c) = p_f.dims3()?;
    let w = c / (groups * height);
    let maps = p_f.to_dtype(DType::F32)?.reshape((b, k, groups, height, w))?;
    let logits = match reduce {
        GroupReduce::Max => maps.max(2)?,
        GroupReduce::Mean => maps.mean(2)?,
    };
    logits / temperature
}

/// Probabilities (B, K, h, w) and bins (1, K, 1, 1) -> depth (B, 1, h, w).
pub fn depth_from_probabilities(p: &Tensor, bins: &Tensor) -> Result<Tensor> {
    p.broadcast_mul(&bins.to_dtype(p.dtype())?)?.sum_keepdim(1)
}
