//! What every bin-based head shares (DepthCLIP, DepthBLIP-2, and any
//! prompt head to come): the prompt and bin settings ([`settings`]) and the
//! node's overrides of them, class probabilities over distance prompts read
//! as depth (the probability-weighted mean of the bins), the classes at the
//! ends of the bins, and averaging with the mirror image.
//!
//! A weighted mean of bins always lies between the first and the last bin,
//! so such a head cannot tell a wall at 10 m from one at its last bin (3 m
//! on NYU): both come out a little under 3 m, a phantom obstacle for a
//! costmap. What the head can say is which class is most likely: when it is
//! the farthest, the pixel is at or beyond the last bin (REP 117: +Inf, too
//! far to measure); when it is the nearest, at or before the first (-Inf).
//! [`edge_margin`] is that decision as a signed number, so that it can be
//! resampled like the depth: > 0 where the farthest class leads, < 0 where
//! the nearest does, 0 in between.

use candle_core::{Result, Tensor};

use crate::kernels::mirror::flip_width;

pub use crate::model::input::{Crop, InputGeometry, Region};
pub use settings::{clamp_range, PromptSettings};

pub mod settings;

/// Probabilities `p` with the classes along `dim` -> the signed margin by
/// which an end class leads all the others (same shape with `dim` of size 1):
/// `max(0, p_last - max(others)) - max(0, p_first - max(others))`.
pub fn edge_margin(p: &Tensor, dim: usize) -> Result<Tensor> {
    let k = p.dim(dim)?;
    if k < 2 {
        return p.narrow(dim, 0, 1)?.zeros_like();
    }
    let first = p.narrow(dim, 0, 1)?;
    let last = p.narrow(dim, k - 1, 1)?;
    let best_but_last = p.narrow(dim, 0, k - 1)?.max_keepdim(dim)?;
    let best_but_first = p.narrow(dim, 1, k - 1)?.max_keepdim(dim)?;
    let far = (last - best_but_last)?.relu()?;
    let near = (first - best_but_first)?.relu()?;
    far - near
}

/// The frames, followed by their mirror images when `flip_average`
/// (the batch the tower sees).
pub fn with_mirrored(pixels: &Tensor, flip_average: bool) -> Result<Tensor> {
    if flip_average {
        Tensor::cat(&[pixels, &flip_width(pixels)?], 0)
    } else {
        Ok(pixels.clone())
    }
}

/// A map of `batch` frames from that of [`with_mirrored`]'s batch: as it
/// is, or averaged with the mirror images' map mirrored back.
pub fn average_mirrored(map: Tensor, batch: usize, flip_average: bool) -> Result<Tensor> {
    if !flip_average {
        return Ok(map);
    }
    let mirrored = flip_width(&map.narrow(0, batch, batch)?)?;
    (map.narrow(0, 0, batch)? + mirrored)? * 0.5
}


/// Replacements for the prompt and bin settings (the node's parameters);
/// `None` keeps the YAML's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptOverrides {
    pub depth_templates: Option<Vec<String>>,
    pub obj_classes: Option<Vec<String>>,
    pub depth_classes: Option<Vec<String>>,
    pub bin_list: Option<Vec<f64>>,
    pub depth_scale: Option<f64>,
    pub temperature: Option<f64>,
}

impl PromptOverrides {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What to do with the pixels an end class leads ([`edge_margin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BeyondBins {
    /// +Inf where the farthest class leads, -Inf where the nearest does
    /// (REP 117: too far / too close to measure).
    #[default]
    Mark,
    /// The weighted mean everywhere (what the papers evaluate).
    Keep,
}

impl std::str::FromStr for BeyondBins {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mark" => Ok(Self::Mark),
            "keep" => Ok(Self::Keep),
            other => Err(format!("beyond_bins must be mark or keep, got {other:?}")),
        }
    }
}

/// Marks `depth` where `edge` says an end class leads (see [`BeyondBins`]);
/// NaN (outside a crop) stays NaN.
pub fn mark_beyond_bins(depth: &mut [f32], edge: &[f32]) {
    for (d, e) in depth.iter_mut().zip(edge) {
        if d.is_nan() {
            continue;
        }
        if *e > 0.0 {
            *d = f32::INFINITY;
        } else if *e < 0.0 {
            *d = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_margin_is_signed_by_the_leading_end_class() {
        // Rows of 4 class probabilities: the far class leads, the near
        // one leads, a middle one leads, a tie at the far end.
        let p = Tensor::new(
            &[[0.1f32, 0.1, 0.2, 0.6], [0.5, 0.3, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4]],
            &Device::Cpu,
        )
        .unwrap();
        let m: Vec<f32> = edge_margin(&p, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want = [0.4f32, -0.2, 0.0, 0.0];
        for (got, want) in m.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{m:?}");
        }
        let mut depth = vec![2.9f32, 1.1, 2.0, f32::NAN];
        mark_beyond_bins(&mut depth, &m);
        assert_eq!(&depth[..3], &[f32::INFINITY, f32::NEG_INFINITY, 2.0]);
        assert!(depth[3].is_nan());
    }
}
