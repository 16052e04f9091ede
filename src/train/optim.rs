//! AdamW as `torch.optim.AdamW` computes it (decoupled weight decay,
//! bias-corrected moments, eps added after the square root), and global
//! gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// One parameter and its moments.
#[derive(Debug)]
pub struct Slot {
    pub name: String,
    pub var: Var,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub slots: Vec<Slot>,
    /// Optimiser steps taken (PyTorch's per-parameter `step`, shared).
    pub step: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_detached_tensor().zeros_like()?;
                Ok(Slot { name, exp_avg: zeros.clone(), exp_avg_sq: zeros, var })
            })
            .collect::<Result<_>>()?;
        Ok(Self { config, slots, step: 0 })
    }

    /// One update at learning rate `lr`. A parameter without a gradient
    /// (not reached by the loss) is skipped, as PyTorch skips it.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - c.beta2.powf(step)).sqrt();
        let step_size = lr / bias_correction1;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else { continue };
            let param = slot.var.as_detached_tensor();
            let grad = grad.to_dtype(param.dtype())?;
            let param = (param * (1.0 - lr * c.weight_decay))?;
            // exp_avg.lerp_(grad, 1 - beta1)
            slot.exp_avg = (&slot.exp_avg + ((&grad - &slot.exp_avg)? * (1.0 - c.beta1))?)?;
            slot.exp_avg_sq = ((&slot.exp_avg_sq * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((slot.exp_avg_sq.sqrt()? / bias_correction2_sqrt)? + c.eps)?;
            let updated = (param - (slot.exp_avg.div(&denom)? * step_size)?)?;
            slot.var.set(&updated)?;
        }
        Ok(())
    }
}

/// Scales every gradient so that their global L2 norm is at most
/// `max_norm` (coefficient `max_norm / (norm + 1e-6)`, capped at 1 and
/// always applied, as PyTorch). Returns the norm before clipping.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut sum_sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let n = g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
            sum_sq += n * n;
        }
    }
    let norm = sum_sq.sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            grads.insert(v.as_tensor(), (g * coef)?);
        }
    }
    Ok(norm)
}
