//! Edge-aware gradient loss as the authors define it: L1 between the
//! horizontal (and vertical) finite differences of prediction and ground
//! truth, averaged over pixel pairs that are both valid, then the mean of
//! the two directions.

use candle_core::{Result, Tensor};

use super::ops::{abs, count, masked_mean, to_target_size, zero_like_loss};

/// `pred` (B, 1, h, w), `gt` and `mask` (B, 1, H, W); returns an f64 scalar.
pub fn gradient(pred: &Tensor, gt: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (pred, gt) = to_target_size(pred, gt)?;
    let (_, _, h, w) = gt.dims4()?;
    let mask = mask.to_dtype(pred.dtype())?;
    let diff = |t: &Tensor, dim: usize, len: usize| -> Result<Tensor> {
        if len < 2 {
            return t.narrow(dim, 0, 0);
        }
        t.narrow(dim, 1, len - 1)? - t.narrow(dim, 0, len - 1)?
    };
    let pair = |dim: usize, len: usize| -> Result<(Tensor, Tensor)> {
        let loss = abs(&(diff(&pred, dim, len)? - diff(&gt, dim, len)?)?)?;
        let m = if len < 2 { mask.narrow(dim, 0, 0)? } else { (mask.narrow(dim, 1, len - 1)? * mask.narrow(dim, 0, len - 1)?)? };
        Ok((loss, m))
    };
    let (dx, mdx) = pair(3, w)?;
    let (dy, mdy) = pair(2, h)?;
    let (ndx, ndy) = (count(&mdx)?, count(&mdy)?);
    if ndx == 0.0 && ndy == 0.0 {
        return zero_like_loss(&pred);
    }
    let term = |l: &Tensor, m: &Tensor, n: f64| if n > 0.0 { masked_mean(l, m, n) } else { zero_like_loss(&pred) };
    (term(&dx, &mdx, ndx)? + term(&dy, &mdy, ndy)?)? * 0.5
}
