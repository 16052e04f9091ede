//! The training losses of the authors' recipe and their combination:
//! `(1 - w_ssim) SILog + w_ssim SSIM + sum_k aux_k SILog(aux pred k)
//! + w_grad Grad`, over the valid mask `min_depth < gt < max_depth`.

mod gradient;
mod ops;
mod silog;
mod ssim;

use candle_core::{DType, Result, Tensor};

pub use gradient::gradient;
pub use silog::silog;
pub use ssim::{gaussian_kernel, ssim};

use crate::model::nn::Prediction;

/// Loss weights from the training config.
#[derive(Debug, Clone, PartialEq)]
pub struct LossWeights {
    pub w_ssim: f64,
    pub w_grad: f64,
    /// `aux_loss_weights`; an index past the end takes the last entry.
    pub aux: Vec<f64>,
    pub multiscale: bool,
}

impl LossWeights {
    /// The weight of auxiliary head `k`, resolved as the authors do.
    pub fn aux_weight(&self, k: usize) -> f64 {
        match self.aux.get(k) {
            Some(&w) => w,
            None => self.aux.last().copied().unwrap_or(0.0),
        }
    }
}

/// The total (f64 scalar, differentiable) and each term's value.
#[derive(Debug, Clone)]
pub struct LossTerms {
    pub total: Tensor,
    pub silog: f64,
    pub ssim: f64,
    pub aux: f64,
    pub grad: f64,
}

impl LossTerms {
    pub fn total_value(&self) -> Result<f64> {
        self.total.to_scalar::<f64>()
    }
}

/// The valid mask (B, 1, H, W) as 0/1 in f32: `lo < gt < hi`.
pub fn valid_mask(gt: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    gt.gt(lo)?.mul(&gt.lt(hi)?)?.to_dtype(DType::F32)
}

/// The authors' combined loss for one batch.
pub fn total_loss(pred: &Prediction, gt: &Tensor, mask: &Tensor, w: &LossWeights) -> Result<LossTerms> {
    let l_silog = silog(&pred.depth, gt, mask)?;
    let l_ssim = ssim(&pred.depth, gt, mask)?;
    let mut total = ((&l_silog * (1.0 - w.w_ssim))? + (&l_ssim * w.w_ssim)?)?;
    let mut aux_value = 0.0;
    if w.multiscale && !pred.aux.is_empty() {
        let mut aux = None::<Tensor>;
        for (k, a) in pred.aux.iter().enumerate() {
            let wk = w.aux_weight(k);
            if wk <= 0.0 {
                continue;
            }
            let term = (silog(a, gt, mask)? * wk)?;
            aux = Some(match aux {
                Some(acc) => (acc + term)?,
                None => term,
            });
        }
        if let Some(aux) = aux {
            aux_value = aux.to_scalar::<f64>()?;
            total = (total + aux)?;
        }
    }
    let mut grad_value = 0.0;
    if w.w_grad > 0.0 {
        let g = gradient(&pred.depth, gt, mask)?;
        grad_value = g.to_scalar::<f64>()?;
        total = (total + (g * w.w_grad)?)?;
    }
    Ok(LossTerms { silog: l_silog.to_scalar()?, ssim: l_ssim.to_scalar()?, aux: aux_value, grad: grad_value, total })
}
