//! Scale-invariant log loss as the authors define it: over the valid
//! pixels, g = log(max(pred, eps)) - log(max(gt, eps)) (eps 1e-7),
//! D = Var(g) + (1 - lambda) mean(g)^2 with the population variance and
//! lambda = 0.85, loss = 10 sqrt(max(D, eps)).

use candle_core::{DType, Result, Tensor};

use super::ops::{clamp, count, masked_mean, to_target_size, zero_like_loss};

pub const VARIANCE_FOCUS: f64 = 0.85;
const EPS: f64 = 1e-7;

/// `pred` (B, 1, h, w), `gt` and `mask` (B, 1, H, W); returns an f64 scalar.
pub fn silog(pred: &Tensor, gt: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (pred, gt) = to_target_size(pred, gt)?;
    let n = count(mask)?;
    if n == 0.0 {
        return zero_like_loss(&pred);
    }
    let p = clamp(&pred, EPS, f64::INFINITY)?;
    let t = gt.clamp(EPS, f64::INFINITY)?;
    let g = (p.log()? - t.log()?)?.to_dtype(DType::F64)?;
    let m = mask.to_dtype(DType::F64)?;
    let mean = masked_mean(&g, &m, n)?;
    let var = if n < 2.0 {
        mean.zeros_like()?
    } else {
        (g.broadcast_sub(&mean)?.mul(&m)?.sqr()?.sum_all()? / n)?
    };
    let d = (var + (mean.sqr()? * (1.0 - VARIANCE_FOCUS))?)?;
    // torch.clamp(d, min=eps): below eps the loss is a constant.
    if d.to_scalar::<f64>()? < EPS {
        return (d * 0.0)? + 10.0 * EPS.sqrt();
    }
    d.sqrt()? * 10.0
}
