//! Differentiable pieces the losses share, with PyTorch's gradients where
//! candle's differ (clamp and abs at their kinks), and masked means summed
//! in f64 so long reductions do not drift from PyTorch's.

use candle_core::{DType, Result, Tensor};

/// `x.clamp(lo, hi)` whose gradient passes where `lo <= x <= hi` (both
/// bounds included) and is zero outside, as `torch.clamp`'s.
pub fn clamp(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    let inside = x.ge(lo)?.mul(&x.le(hi)?)?;
    inside.where_cond(x, &x.clamp(lo, hi)?.detach())
}

/// `|x|` whose gradient is `sign(x)` (zero at zero), as `torch.abs`'s.
pub fn abs(x: &Tensor) -> Result<Tensor> {
    x.mul(&x.sign()?.detach())
}

/// sum(x * mask) / sum(mask) as an f64 scalar; `count` is sum(mask).
pub fn masked_mean(x: &Tensor, mask: &Tensor, count: f64) -> Result<Tensor> {
    x.to_dtype(DType::F64)?.mul(&mask.to_dtype(DType::F64)?)?.sum_all()? / count
}

/// Number of set elements of a 0/1 mask.
pub fn count(mask: &Tensor) -> Result<f64> {
    mask.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()
}

/// The zero loss PyTorch returns when nothing is valid (`input.sum() * 0`):
/// zero, with a zero gradient to the prediction.
pub fn zero_like_loss(pred: &Tensor) -> Result<Tensor> {
    pred.to_dtype(DType::F64)?.sum_all()? * 0.0
}

/// The prediction at the ground truth's size (bilinear with
/// align_corners = true, as the authors' losses resize), and the ground
/// truth in the prediction's dtype.
pub fn to_target_size(pred: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, _, h, w) = target.dims4()?;
    let pred = crate::kernels::train::separable::resize_bilinear(pred, h, w, true)?;
    let target = target.to_dtype(pred.dtype())?;
    Ok((pred, target))
}
