//! Convolution for the decoder. On the CPU in f32, 3x3 'same' convs skip
//! im2col: each of the 9 taps is one GEMM over the zero-padded input read
//! at a shifted offset (rows of the padded plane are contiguous, so a shift
//! of the whole plane is a shift of every pixel), accumulated in place;
//! bias and ReLU are applied while cropping the border. im2col writes 9x
//! the input and dominated the decoder's time. Elsewhere (CUDA, f16,
//! other kernels) candle's own conv runs.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};

/// A conv with 'same' padding and a bias, optionally fused with ReLU.
#[derive(Debug, Clone)]
pub struct Conv {
    inner: candle_nn::Conv2d,
    fast: Option<Arc<CpuConv3x3>>,
}

impl Conv {
    pub fn new(inner: candle_nn::Conv2d) -> Result<Self> {
        let w = inner.weight();
        let fast = match (w.dims4()?, inner.bias()) {
            ((c_out, c_in, 3, 3), Some(bias))
                if w.device().is_cpu() && w.dtype() == DType::F32 && inner.config().padding == 1
                    && inner.config().stride == 1 && inner.config().groups == 1 && inner.config().dilation == 1 =>
            {
                Some(Arc::new(CpuConv3x3::new(w, bias, c_in, c_out)?))
            }
            _ => None,
        };
        Ok(Self { inner, fast })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    /// `relu(conv(x))`, fused where the fast path runs.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        match &self.fast {
            Some(op) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                let op = CpuConv3x3Call { conv: op.clone(), relu };
                x.contiguous()?.apply_op1_no_bwd(&op)
            }
            _ => {
                let y = self.inner.forward(x)?;
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }
}

/// Weights rearranged once at load: `taps[t]` is the (C_out, C_in) matrix
/// of kernel position t = 3 ky + kx.
#[derive(Debug)]
pub struct CpuConv3x3 {
    c_in: usize,
    c_out: usize,
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl CpuConv3x3 {
    fn new(weight: &Tensor, bias: &Tensor, c_in: usize, c_out: usize) -> Result<Self> {
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let mut taps = vec![0f32; 9 * c_out * c_in];
        for co in 0..c_out {
            for ci in 0..c_in {
                for t in 0..9 {
                    taps[(t * c_out + co) * c_in + ci] = w[(co * c_in + ci) * 9 + t];
                }
            }
        }
        Ok(Self { c_in, c_out, taps, bias: bias.to_vec1::<f32>()? })
    }

    /// One image: `x` (C_in, H, W) -> `out` (C_out, H, W).
    fn image(&self, x: &[f32], h: usize, w: usize, relu: bool, padded: &mut Vec<f32>, acc: &mut Vec<f32>, out: &mut [f32]) {
        let (wp, hp) = (w + 2, h + 2);
        let plane = wp * hp;
        padded.clear();
        padded.resize(self.c_in * plane, 0.0);
        for ci in 0..self.c_in {
            for y in 0..h {
                let src = &x[(ci * h + y) * w..(ci * h + y + 1) * w];
                let dst = ci * plane + (y + 1) * wp + 1;
                padded[dst..dst + w].copy_from_slice(src);
            }
        }
        // Output position j = y * wp + x covers every pixel (and junk in
        // the border columns, dropped below).
        let len = (h - 1) * wp + w;
        acc.clear();
        acc.resize(self.c_out * len, 0.0);
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        for t in 0..9 {
            let (ky, kx) = (t / 3, t % 3);
            // Input index of output j for this tap: j + ky * wp + kx.
            let rhs_offset = ky * wp + kx;
            let lhs = &self.taps[t * self.c_out * self.c_in..(t + 1) * self.c_out * self.c_in];
            // SAFETY: dst is c_out x len (row stride len); lhs is c_out x
            // c_in (row stride c_in); rhs is c_in x len starting at
            // rhs_offset in each padded plane (row stride plane). The largest
            // rhs index is (c_in-1)*plane + rhs_offset + len - 1
            // = (c_in-1)*plane + (2 wp + 2) + (h-1) wp + w - 1 < c_in * plane.
            unsafe {
                gemm::gemm(
                    self.c_out,
                    len,
                    self.c_in,
                    acc.as_mut_ptr(),
                    1,
                    len as isize,
                    t > 0,
                    lhs.as_ptr(),
                    1,
                    self.c_in as isize,
                    padded.as_ptr().add(rhs_offset),
                    1,
                    plane as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        for co in 0..self.c_out {
            let b = self.bias[co];
            for y in 0..h {
                let src = &acc[co * len + y * wp..co * len + y * wp + w];
                let dst = &mut out[(co * h + y) * w..(co * h + y + 1) * w];
                if relu {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = (s + b).max(0.0);
                    }
                } else {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = s + b;
                    }
                }
            }
        }
    }
}

struct CpuConv3x3Call {
    conv: Arc<CpuConv3x3>,
    relu: bool,
}

impl CustomOp1 for CpuConv3x3Call {
    fn name(&self) -> &'static str {
        "conv3x3-same-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        let conv = &self.conv;
        if c != conv.c_in {
            candle_core::bail!("conv3x3: input has {c} channels, weights expect {}", conv.c_in);
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("conv3x3: input must be contiguous");
        };
        let x = &storage.as_slice::<f32>()?[start..end];
        let mut out = vec![0f32; b * conv.c_out * h * w];
        let (mut padded, mut acc) = (Vec::new(), Vec::new());
        for (xi, oi) in x.chunks_exact(c * h * w).zip(out.chunks_exact_mut(conv.c_out * h * w)) {
            conv.image(xi, h, w, self.relu, &mut padded, &mut acc, oi);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, conv.c_out, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_path_equals_candle_conv() {
        let dev = Device::Cpu;
        for (b, c_in, c_out, h, w) in [(1, 3, 5, 7, 9), (2, 8, 4, 1, 1), (1, 16, 16, 28, 28), (1, 4, 2, 2, 13)] {
            let x = Tensor::randn(0f32, 1.0, (b, c_in, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c_out, c_in, 3, 3), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
            let cfg = candle_nn::Conv2dConfig { padding: 1, ..Default::default() };
            let inner = candle_nn::Conv2d::new(wt, Some(bias), cfg);
            let reference = inner.forward(&x).unwrap();
            let conv = Conv::new(inner).unwrap();
            assert!(conv.fast.is_some());
            let ours = conv.forward(&x).unwrap();
            let diff = (ours - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{b}x{c_in}x{h}x{w}: {diff}");
            let ours = conv.forward_relu(&x).unwrap();
            let diff = (ours - reference.relu().unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "relu {b}x{c_in}x{h}x{w}: {diff}");
        }
    }
}
