//! SSIM loss as the authors define it: per sample, prediction and ground
//! truth min-max normalised by the ground truth's range over the valid
//! pixels and clamped to [0, 1]; SSIM with an 11x11 Gaussian window
//! (sigma 1.5, zero padding), C1 = 0.01^2, C2 = 0.03^2; loss = mean of
//! 1 - SSIM over the valid pixels.

use candle_core::{DType, Result, Tensor};

use super::ops::{clamp, count, masked_mean, to_target_size, zero_like_loss};
use crate::kernels::train::separable::{AxisMap, SeparableMap};

pub const WINDOW: usize = 11;
pub const SIGMA: f32 = 1.5;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// The normalised 1D Gaussian, in f64.
pub fn gaussian_kernel_f64() -> Vec<f64> {
    let half = (WINDOW / 2) as f64;
    let sigma = SIGMA as f64;
    let g: Vec<f64> = (0..WINDOW).map(|i| (-(i as f64 - half).powi(2) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = g.iter().sum();
    g.iter().map(|v| v / sum).collect()
}

/// The normalised 1D Gaussian in f32, formed in f64 and rounded once
/// (the authors form it in f32: the two differ by at most one unit in the
/// last place, and rounding once is reproducible on every platform).
pub fn gaussian_kernel() -> Vec<f32> {
    gaussian_kernel_f64().iter().map(|&v| v as f32).collect()
}

/// The window of a run in `dtype`: in f64 (the reference precision) the
/// f64 kernel, as the authors' code forms it in a float64 run; otherwise
/// the f32 one. Rounding the window of an f64 run to f32 would move SSIM by
/// about 1e-8 relative, and Adam turns that into different steps.
fn blur(h: usize, w: usize, dtype: DType) -> SeparableMap {
    let k: Vec<f64> = if dtype == DType::F64 { gaussian_kernel_f64() } else { gaussian_kernel().iter().map(|&v| v as f64).collect() };
    SeparableMap::new(AxisMap::convolution(h, &k), AxisMap::convolution(w, &k))
}

/// `pred` (B, 1, h, w), `gt` and `mask` (B, 1, H, W); returns an f64 scalar.
pub fn ssim(pred: &Tensor, gt: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (pred, gt) = to_target_size(pred, gt)?;
    let (b, _, h, w) = gt.dims4()?;
    let n = count(mask)?;
    if n == 0.0 {
        return zero_like_loss(&pred);
    }
    // Per-sample ground-truth range over the valid pixels (no gradient).
    let gt_host = gt.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let mask_host = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (mut lo, mut scale, mut has) = (vec![0f64; b], vec![1f64; b], vec![0f64; b]);
    for i in 0..b {
        let valid = gt_host[i * h * w..(i + 1) * h * w]
            .iter()
            .zip(&mask_host[i * h * w..(i + 1) * h * w])
            .filter(|(_, &m)| m > 0.0)
            .map(|(&v, _)| v);
        let (mn, mx) = valid.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if mn.is_finite() {
            lo[i] = mn;
            scale[i] = (mx - mn).max(1e-6);
            has[i] = 1.0;
        }
    }
    let dev = gt.device();
    // The range in the prediction's precision, as PyTorch subtracts it.
    let per_sample = |v: Vec<f64>| Tensor::from_vec(v, (b, 1, 1, 1), dev)?.to_dtype(pred.dtype());
    let (lo, scale, has) = (per_sample(lo)?, per_sample(scale)?, per_sample(has)?);
    // Samples without a valid pixel stay all zero, as in the reference.
    let has = has.broadcast_as(pred.shape())?.ne(0f64)?;
    let zeros = pred.zeros_like()?;
    let x1 = has.where_cond(&pred.broadcast_sub(&lo)?.broadcast_div(&scale)?, &zeros)?;
    let x2 = has.where_cond(&gt.broadcast_sub(&lo)?.broadcast_div(&scale)?, &zeros)?;
    let x1 = clamp(&x1, 0.0, 1.0)?;
    let x2 = clamp(&x2, 0.0, 1.0)?.detach();
    // One blur over the five maps stacked as channels.
    let stacked = Tensor::cat(&[&x1, &x2, &x1.sqr()?, &x2.sqr()?, &(&x1 * &x2)?], 1)?;
    let blurred = blur(h, w, stacked.dtype()).apply(&stacked)?;
    let part = |i: usize| blurred.narrow(1, i, 1);
    let (mu1, mu2) = (part(0)?, part(1)?);
    let (mu1_sq, mu2_sq, mu1_mu2) = (mu1.sqr()?, mu2.sqr()?, (&mu1 * &mu2)?);
    let sigma1_sq = (part(2)? - &mu1_sq)?;
    let sigma2_sq = (part(3)? - &mu2_sq)?;
    let sigma12 = (part(4)? - &mu1_mu2)?;
    let num = ((mu1_mu2 * 2.0)? + C1)?.mul(&((sigma12 * 2.0)? + C2)?)?;
    let den = ((mu1_sq + mu2_sq)? + C1)?.mul(&((sigma1_sq + sigma2_sq)? + C2)?)?;
    let loss_map = (1.0 - num.div(&den)?)?;
    masked_mean(&loss_map, mask, n)
}
