//! BatchNorm2d in training mode on the CPU in f32, as PyTorch computes it:
//! batch statistics over (B, H, W) per channel (sums in f64), the output as
//! `x * alpha + beta` with `alpha = w / sqrt(var + eps)` and
//! `beta = b - mean * alpha`, and the analytic backward pass. The batch
//! mean and biased variance of the last forward are kept for the caller's
//! running-statistics update.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::{contiguous_f32, SendPtr};

/// Per channel: batch mean, biased variance, 1 / sqrt(var + eps).
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub invstd: Vec<f64>,
    /// Elements per channel (B H W).
    pub count: usize,
}

/// (x (B, C, H, W), weight (C), bias (C)) -> normalised x.
#[derive(Debug, Clone)]
pub struct BatchNormTrain {
    pub eps: f64,
    pub stats: Arc<Mutex<Option<BatchStats>>>,
    /// Followed by a ReLU, in the same pass (and the same backward).
    pub relu: bool,
}

impl BatchNormTrain {
    pub fn new(eps: f64) -> Self {
        Self { eps, stats: Arc::new(Mutex::new(None)), relu: false }
    }

    pub fn with_relu(mut self, relu: bool) -> Self {
        self.relu = relu;
        self
    }

    fn last_stats(&self) -> Result<BatchStats> {
        let stats = self.stats.lock().map_err(|_| candle_core::Error::Msg("batch norm statistics lock poisoned".into()))?;
        stats.clone().ok_or_else(|| candle_core::Error::Msg("batch norm backward before forward".into()))
    }
}

/// Runs `f(channel, image, plane)` for every (channel, image) plane in
/// parallel over channels.
fn per_channel<T: Send>(c: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    (0..c).into_par_iter().map(f).collect()
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train-f32"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = xl.shape().dims4()?;
        let x = contiguous_f32(xs, xl, "batch norm input")?;
        let weight = contiguous_f32(ws, wl, "batch norm weight")?;
        let bias = contiguous_f32(bs, bl, "batch norm bias")?;
        if weight.len() != c || bias.len() != c {
            candle_core::bail!("batch norm: {c} channels but {} weights and {} biases", weight.len(), bias.len());
        }
        let hw = h * w;
        let n = b * hw;
        if n == 0 {
            candle_core::bail!("batch norm: empty batch {:?}", xl.shape());
        }
        let plane = |i: usize, ch: usize| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw];
        let moments = per_channel(c, |ch| {
            let sum: f64 = (0..b).map(|i| plane(i, ch).iter().map(|&v| v as f64).sum::<f64>()).sum();
            let mean = sum / n as f64;
            let var: f64 = (0..b)
                .map(|i| plane(i, ch).iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum::<f64>()
                / n as f64;
            (mean, var)
        });
        let mut stats = BatchStats { count: n, ..Default::default() };
        for &(mean, var) in &moments {
            stats.mean.push(mean);
            stats.var.push(var);
            stats.invstd.push(1.0 / (var + self.eps).sqrt());
        }
        let mut out = vec![0f32; x.len()];
        let out_ptr = SendPtr(out.as_mut_ptr());
        (0..c).into_par_iter().for_each(|ch| {
            let alpha = (stats.invstd[ch] as f32) * weight[ch];
            let beta = bias[ch] - (stats.mean[ch] as f32) * alpha;
            for i in 0..b {
                let start = (i * c + ch) * hw;
                // SAFETY: each (image, channel) plane is written by one task.
                let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(start), hw) };
                if self.relu {
                    for (o, &v) in o.iter_mut().zip(plane(i, ch)) {
                        *o = (v * alpha + beta).max(0.0);
                    }
                } else {
                    for (o, &v) in o.iter_mut().zip(plane(i, ch)) {
                        *o = v * alpha + beta;
                    }
                }
            }
        });
        *self.stats.lock().map_err(|_| candle_core::Error::Msg("batch norm statistics lock poisoned".into()))? = Some(stats);
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = weight.dim(0)?;
        // Through the ReLU first: no gradient where the output is 0.
        let grad = if self.relu { crate::kernels::train::relu::relu_grad(grad, res)? } else { grad.clone() };
        let grad = &grad;
        let back = BatchNormBackward {
            stats: self.last_stats()?,
            weight: weight.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
            params: Arc::new(Mutex::new(None)),
        };
        let dx = x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &back)?;
        let (dw, db) = back
            .params
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm gradient lock poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("batch norm backward produced no parameter gradients".into()))?;
        let dev = grad.device();
        Ok((Some(dx), Some(Tensor::from_vec(dw, c, dev)?), Some(Tensor::from_vec(db, c, dev)?)))
    }
}

/// (x, dL/dy) -> dL/dx, keeping dL/dweight and dL/dbias for the caller;
/// reads the saved batch statistics, no copies of the inputs.
struct BatchNormBackward {
    stats: BatchStats,
    weight: Vec<f32>,
    params: Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>,
}

impl CustomOp2 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch-norm-train-backward-f32"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = xl.shape().dims4()?;
        let x = contiguous_f32(xs, xl, "batch norm input")?;
        let g = contiguous_f32(gs, gl, "batch norm gradient")?;
        let hw = h * w;
        let stats = &self.stats;
        let n = stats.count as f64;
        let idx = |i: usize, ch: usize| (i * c + ch) * hw..(i * c + ch + 1) * hw;
        // Per channel: sum(dy) and sum((x - mean) dy).
        let sums = per_channel(c, |ch| {
            let mean = stats.mean[ch];
            let (mut sum_g, mut dot) = (0f64, 0f64);
            for i in 0..b {
                for (&xv, &gv) in x[idx(i, ch)].iter().zip(&g[idx(i, ch)]) {
                    sum_g += gv as f64;
                    dot += (xv as f64 - mean) * gv as f64;
                }
            }
            (sum_g, dot)
        });
        let mut dx = vec![0f32; x.len()];
        let dx_ptr = SendPtr(dx.as_mut_ptr());
        (0..c).into_par_iter().for_each(|ch| {
            let (sum_g, dot) = sums[ch];
            let (mean, invstd) = (stats.mean[ch], stats.invstd[ch]);
            let grad_mean = sum_g / n;
            let proj = dot * invstd * invstd / n;
            let scale = invstd * self.weight[ch] as f64;
            for i in 0..b {
                let r = idx(i, ch);
                // SAFETY: each (image, channel) plane is written by one task.
                let d = unsafe { std::slice::from_raw_parts_mut(dx_ptr.at(r.start), hw) };
                for ((d, &xv), &gv) in d.iter_mut().zip(&x[r.clone()]).zip(&g[r.clone()]) {
                    *d = ((gv as f64 - grad_mean - (xv as f64 - mean) * proj) * scale) as f32;
                }
            }
        });
        let dw = sums.iter().zip(&stats.invstd).map(|(&(_, dot), &is)| (dot * is) as f32).collect();
        let db = sums.iter().map(|&(sum_g, _)| sum_g as f32).collect();
        *self.params.lock().map_err(|_| candle_core::Error::Msg("batch norm gradient lock poisoned".into()))? = Some((dw, db));
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The same normalisation from candle's own differentiable ops.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let c = x.dim(1).unwrap();
        let mean = x.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap().mean_keepdim(3).unwrap();
        let xc = x.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(0).unwrap().mean_keepdim(2).unwrap().mean_keepdim(3).unwrap();
        let xhat = xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
        xhat.broadcast_mul(&w.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    }

    #[test]
    fn forward_backward_and_statistics_match_candle_ops() {
        let dev = Device::Cpu;
        let x = Var::randn(0.5f32, 2.0, (3, 4, 5, 6), &dev).unwrap();
        let w = Var::randn(1f32, 0.3, 4, &dev).unwrap();
        let b = Var::randn(0f32, 0.3, 4, &dev).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &dev).unwrap();
        let op = BatchNormTrain::new(1e-5);
        let ours = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), op.clone()).unwrap();
        let theirs = reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5);
        let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "forward {d}");
        let stats = op.last_stats().unwrap();
        assert_eq!(stats.count, 90);
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            let (a, c) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            let d = (a - c).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "gradient {d} for {:?}", v.shape());
        }
        // Fused with the ReLU that follows.
        let ours = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), BatchNormTrain::new(1e-5).with_relu(true)).unwrap();
        let theirs = crate::kernels::train::relu::relu(&reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)).unwrap();
        let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "forward with ReLU {d}");
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            let (a, c) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            let d = (a - c).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "gradient with ReLU {d} for {:?}", v.shape());
        }
    }
}
