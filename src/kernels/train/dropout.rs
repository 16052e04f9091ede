//! Dropout with a stateless mask: element i is kept when a hash of
//! (seed, i) falls above p, so the mask needs no storage (the backward pass
//! recomputes it), is drawn in parallel, and is the same on every machine.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::{contiguous_f32, is_cpu_f32};

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether element `i` survives: uniform(seed, i) >= p.
fn kept(seed: u64, i: usize, p: f64) -> bool {
    let u = (mix(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 11) as f64 / (1u64 << 53) as f64;
    u >= p
}

/// `x * mask / (1 - p)` with the mask of `seed`; differentiable.
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    if is_cpu_f32(x) {
        return x.contiguous()?.apply_op1(Dropout { p, seed });
    }
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count()).map(|i| if kept(seed, i, p) { scale as f32 } else { 0.0 }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?)
}

struct Dropout {
    p: f64,
    seed: u64,
}

impl Dropout {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let mut out = vec![0f32; x.len()];
        const CHUNK: usize = 1 << 14;
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (o, x))| {
            for (k, (o, &v)) in o.iter_mut().zip(x).enumerate() {
                *o = if kept(self.seed, c * CHUNK + k, self.p) { v * scale } else { 0.0 };
            }
        });
        out
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "dropout-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(self.apply(contiguous_f32(s, l, "dropout input")?)), l.shape().clone()))
    }

    /// The same mask and scale applied to the gradient.
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Dropout { p: self.p, seed: self.seed })?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn keeps_about_one_minus_p_scaled_and_the_gradient_follows_the_mask() {
        let x = Var::ones((4, 8, 64, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y = dropout(x.as_tensor(), 0.25, 9).unwrap();
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let kept = v.iter().filter(|&&a| a != 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "{kept}");
        assert!(v.iter().all(|&a| a == 0.0 || (a - 1.0 / 0.75).abs() < 1e-6));
        let g = y.sum_all().unwrap().backward().unwrap();
        let gv = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(gv, v, "the gradient of sum(dropout(x)) is the mask");
        // The same seed gives the same mask; another seed another.
        assert_eq!(dropout(x.as_tensor(), 0.25, 9).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), v);
        assert_ne!(dropout(x.as_tensor(), 0.25, 10).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), v);
    }
}
