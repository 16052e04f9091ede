//! The decoder's x2 upsampler, ConvTranspose2d(kernel 2, stride 2). Its
//! output pixels never overlap, so on the CPU in f32 it is one GEMM, (4
//! C_out x C_in) x (C_in x H W), whose rows are then interleaved into the
//! 2H x 2W map with the bias; candle's CPU transposed conv is a scalar loop.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{ConvTranspose2d, ConvTranspose2dConfig};

use super::gemm::{matmul, MatRef};
use super::contiguous_f32;

#[derive(Debug, Clone)]
pub struct ConvTranspose2x2 {
    inner: ConvTranspose2d,
    fast: Option<Arc<CpuConvTranspose2x2>>,
}

impl ConvTranspose2x2 {
    /// `weight` (C_in, C_out, 2, 2) as PyTorch stores it.
    pub fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (c_in, c_out, _, _) = weight.dims4()?;
        let fast = if weight.device().is_cpu() && weight.dtype() == DType::F32 && weight.is_contiguous() {
            Some(Arc::new(CpuConvTranspose2x2::new(&weight, &bias, c_in, c_out)?))
        } else {
            None
        };
        let cfg = ConvTranspose2dConfig { stride: 2, ..Default::default() };
        Ok(Self { inner: ConvTranspose2d::new(weight, Some(bias), cfg), fast })
    }
}

impl Module for ConvTranspose2x2 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.fast {
            Some(op) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                x.contiguous()?.apply_op1_no_bwd(&CpuConvTranspose2x2Call(op.clone()))
            }
            _ => self.inner.forward(x),
        }
    }
}

/// `taps` is (4 C_out, C_in): row (2 dy + dx) C_out + co holds
/// `weight[:, co, dy, dx]`.
#[derive(Debug)]
pub struct CpuConvTranspose2x2 {
    c_in: usize,
    c_out: usize,
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl CpuConvTranspose2x2 {
    fn new(weight: &Tensor, bias: &Tensor, c_in: usize, c_out: usize) -> Result<Self> {
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let mut taps = vec![0f32; 4 * c_out * c_in];
        for ci in 0..c_in {
            for co in 0..c_out {
                for t in 0..4 {
                    taps[(t * c_out + co) * c_in + ci] = w[(ci * c_out + co) * 4 + t];
                }
            }
        }
        Ok(Self { c_in, c_out, taps, bias: bias.to_vec1::<f32>()? })
    }

    /// One image: `x` (C_in, H, W) -> `out` (C_out, 2H, 2W).
    fn image(&self, x: &[f32], h: usize, w: usize, products: &mut Vec<f32>, out: &mut [f32]) {
        let hw = h * w;
        products.clear();
        products.resize(4 * self.c_out * hw, 0.0);
        let lhs = MatRef::dense(&self.taps, 4 * self.c_out, self.c_in);
        matmul(lhs, MatRef::dense(x, self.c_in, hw), products, hw, false);
        let w2 = 2 * w;
        for co in 0..self.c_out {
            let b = self.bias[co];
            let plane = &mut out[co * 4 * hw..(co + 1) * 4 * hw];
            for y in 0..h {
                for dy in 0..2 {
                    let row = &mut plane[(2 * y + dy) * w2..(2 * y + dy + 1) * w2];
                    let p0 = ((2 * dy) * self.c_out + co) * hw + y * w;
                    let p1 = ((2 * dy + 1) * self.c_out + co) * hw + y * w;
                    let (left, right) = (&products[p0..p0 + w], &products[p1..p1 + w]);
                    for ((pair, l), r) in row.chunks_exact_mut(2).zip(left).zip(right) {
                        pair[0] = l + b;
                        pair[1] = r + b;
                    }
                }
            }
        }
    }
}

struct CpuConvTranspose2x2Call(Arc<CpuConvTranspose2x2>);

impl CustomOp1 for CpuConvTranspose2x2Call {
    fn name(&self) -> &'static str {
        "conv-transpose-2x2-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = &self.0;
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != op.c_in {
            candle_core::bail!("conv transpose: input has {c} channels, weights expect {}", op.c_in);
        }
        let x = contiguous_f32(storage, layout, "conv transpose input")?;
        let mut out = vec![0f32; b * op.c_out * 4 * h * w];
        let mut products = Vec::new();
        for (xi, oi) in x.chunks_exact(c * h * w).zip(out.chunks_exact_mut(op.c_out * 4 * h * w)) {
            op.image(xi, h, w, &mut products, oi);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, op.c_out, 2 * h, 2 * w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_path_equals_candle_conv_transpose() {
        let dev = Device::Cpu;
        for (b, c_in, c_out, h, w) in [(1, 3, 5, 7, 9), (2, 8, 4, 1, 1), (1, 16, 16, 14, 14), (2, 4, 2, 3, 13)] {
            let x = Tensor::randn(0f32, 1.0, (b, c_in, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c_in, c_out, 2, 2), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
            let up = ConvTranspose2x2::new(wt, bias).unwrap();
            assert!(up.fast.is_some());
            let reference = up.inner.forward(&x).unwrap();
            let ours = up.forward(&x).unwrap();
            assert_eq!(ours.dims(), reference.dims());
            let diff = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{b}x{c_in}->{c_out}x{h}x{w}: {diff}");
        }
    }
}
