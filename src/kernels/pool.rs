//! Element-wise passes of the ResNet towers on the CPU in f32, in parallel
//! over planes: k x k average pooling (stride k, as CLIP's anti-aliased
//! downsampling) and the residual `relu(a + b)` in one pass. candle's own
//! CPU pooling works a value at a time on one thread, and the residual
//! would be two passes.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, is_cpu_f32};

/// `x.avg_pool2d(k)` (B, C, H, W) -> (B, C, H / k, W / k).
pub fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor> {
    if is_cpu_f32(x) && k > 0 {
        x.contiguous()?.apply_op1_no_bwd(&AvgPool(k))
    } else {
        x.avg_pool2d(k)
    }
}

/// `relu(a + b)` for tensors of one shape.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(a) && is_cpu_f32(b) && a.shape() == b.shape() {
        a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &AddRelu)
    } else {
        (a + b)?.relu()
    }
}

struct AvgPool(usize);

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "avg-pool-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let k = self.0;
        let (oh, ow) = (h / k, w / k);
        let x = contiguous_f32(s, l, "pool input")?;
        let mut out = vec![0f32; b * c * oh * ow];
        if oh * ow > 0 {
            let scale = 1.0 / (k * k) as f32;
            out.par_chunks_exact_mut(oh * ow).zip(x.par_chunks_exact(h * w)).for_each(|(o, plane)| {
                for (y, orow) in o.chunks_exact_mut(ow).enumerate() {
                    for (xo, v) in orow.iter_mut().enumerate() {
                        let mut sum = 0f32;
                        for dy in 0..k {
                            let row = &plane[(y * k + dy) * w + xo * k..][..k];
                            sum += row.iter().sum::<f32>();
                        }
                        *v = sum * scale;
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu-f32"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(s1, l1, "residual")?;
        let b = contiguous_f32(s2, l2, "shortcut")?;
        let out: Vec<f32> = a.par_iter().zip(b.par_iter()).with_min_len(1 << 14).map(|(&a, &b)| (a + b).max(0.0)).collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equal_candle_ops() {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 12), &Device::Cpu).unwrap();
        let y = Tensor::randn(0f32, 1.0, (2, 3, 8, 12), &Device::Cpu).unwrap();
        for k in [2, 4] {
            let d = (avg_pool(&x, k).unwrap() - x.avg_pool2d(k).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-6, "pool {k}: {d}");
        }
        let d = (add_relu(&x, &y).unwrap() - (&x + &y).unwrap().relu().unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0);
    }
}
