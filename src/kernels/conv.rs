//! Convolution for the decoder. On the CPU in f32, 3x3 'same' convs skip
//! im2col: Winograd F(2x2, 3x3) where the CPU has AVX-512, else one GEMM
//! per kernel tap over the zero-padded input read at a shifted offset (rows
//! of the padded plane are contiguous, so a shift of the whole plane is a
//! shift of every pixel), accumulated in place. 1x1 convs are one GEMM.
//! Bias, ReLU and the decoder's skip gate are applied in the pass that
//! writes the output. Elsewhere (CUDA, f16) candle's own conv runs.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};

use super::avx512::{self, winograd_plane, Epilogue, PackedLinear, Winograd3x3, WINOGRAD_READ_SLACK};
use super::gemm::{matmul, MatRef};
use super::{contiguous_f32, is_cpu_f32};

/// A conv with 'same' padding and a bias, optionally fused with ReLU.
/// With a CPU kernel the original weights are dropped (the kernel holds
/// them rearranged), so the model does not keep them twice.
#[derive(Debug, Clone)]
pub struct Conv {
    inner: Option<candle_nn::Conv2d>,
    fast: Option<Arc<CpuConv>>,
}

impl Conv {
    pub fn new(inner: candle_nn::Conv2d) -> Result<Self> {
        let w = inner.weight();
        let cfg = inner.config();
        // Only real weights get a fast path: the name recorder hands out
        // broadcast (non-contiguous) zeros.
        let plain = w.device().is_cpu()
            && w.dtype() == DType::F32
            && w.is_contiguous()
            && cfg.stride == 1
            && cfg.groups == 1
            && cfg.dilation == 1;
        let fast = match (w.dims4()?, inner.bias()) {
            ((c_out, c_in, k, _), Some(bias)) if plain && matches!((k, cfg.padding), (3, 1) | (1, 0)) => {
                Some(Arc::new(CpuConv::new(w, bias, c_in, c_out, k)?))
            }
            _ => None,
        };
        let inner = if fast.is_some() { None } else { Some(inner) };
        Ok(Self { inner, fast })
    }

    /// candle's conv, for inputs the CPU kernel does not take.
    fn candle_conv(&self, x: &Tensor) -> Result<Tensor> {
        match &self.inner {
            Some(inner) => inner.forward(x),
            None => candle_core::bail!("conv: weights prepared for the CPU in f32, input is {:?} on {:?}", x.dtype(), x.device()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    /// `relu(conv(x))`, fused where the fast path runs.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    /// `skip * (1 + sigmoid(conv(x)))`: the decoder's skip gate, in one
    /// pass over the output where the fast path runs.
    pub fn forward_gate(&self, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        match &self.fast {
            Some(op) if is_cpu_f32(x) && is_cpu_f32(skip) => {
                x.contiguous()?.apply_op2_no_bwd(&skip.contiguous()?, &CpuGateCall(op.clone()))
            }
            _ => skip.mul(&(candle_nn::ops::sigmoid(&self.candle_conv(x)?)? + 1.0)?),
        }
    }

    fn run(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        match &self.fast {
            Some(op) if is_cpu_f32(x) => {
                let op = CpuConvCall { conv: op.clone(), relu };
                x.contiguous()?.apply_op1_no_bwd(&op)
            }
            _ => {
                let y = self.candle_conv(x)?;
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }
}


/// Weights rearranged once at load for the kernel that will run them.
#[derive(Debug)]
enum Kernel {
    /// Winograd F(2x2, 3x3) with AVX-512.
    Winograd(Winograd3x3),
    /// 3x3 as one GEMM per tap: `taps[t]` is the (C_out, C_in) matrix of
    /// kernel position t = 3 ky + kx.
    Taps(Vec<f32>),
    /// 1x1: the (C_out, C_in) matrix.
    Pointwise(Vec<f32>),
}

#[derive(Debug)]
pub struct CpuConv {
    c_in: usize,
    c_out: usize,
    kernel: Kernel,
    bias: Vec<f32>,
}

/// Which 3x3 kernel to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Winograd,
    Taps,
}

/// Scratch buffers of one call.
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    acc: Vec<f32>,
}

impl CpuConv {
    fn new(weight: &Tensor, bias: &Tensor, c_in: usize, c_out: usize, k: usize) -> Result<Self> {
        let choice = if avx512::available() { Choice::Winograd } else { Choice::Taps };
        Self::with_kernel(weight, bias, c_in, c_out, k, choice)
    }

    fn with_kernel(weight: &Tensor, bias: &Tensor, c_in: usize, c_out: usize, k: usize, choice: Choice) -> Result<Self> {
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_vec1::<f32>()?;
        let kernel = if k == 1 {
            Kernel::Pointwise(w)
        } else if choice == Choice::Winograd {
            Kernel::Winograd(Winograd3x3::new(&w, bias.clone(), c_in, c_out))
        } else {
            let mut taps = vec![0f32; 9 * c_out * c_in];
            for co in 0..c_out {
                for ci in 0..c_in {
                    for t in 0..9 {
                        taps[(t * c_out + co) * c_in + ci] = w[(co * c_in + ci) * 9 + t];
                    }
                }
            }
            Kernel::Taps(taps)
        };
        Ok(Self { c_in, c_out, kernel, bias })
    }

    /// One image: `x` (C_in, H, W) -> `out` (C_out, H, W). Returns whether
    /// bias and ReLU were applied; the 1x1 kernel leaves them (and the gate)
    /// to the caller's epilogue.
    fn image(&self, x: &[f32], h: usize, w: usize, relu: bool, scratch: &mut Scratch, out: &mut [f32]) -> bool {
        if let Kernel::Pointwise(wt) = &self.kernel {
            if avx512::available() && h * w >= 48 {
                // The AVX-512 panel kernel with the map as its packed
                // operand (the GEMM crate's FMA kernel runs at half its rate).
                let packed = PackedLinear::from_columns(x, self.c_in, h * w);
                scratch.acc.clear();
                scratch.acc.resize(h * w, 0.0);
                packed.forward(wt, self.c_out, &scratch.acc, Epilogue::None, out);
                return false;
            }
            let lhs = MatRef::dense(wt, self.c_out, self.c_in);
            matmul(lhs, MatRef::dense(x, self.c_in, h * w), out, h * w, false);
            return false;
        }
        let (hp, wp) = match self.kernel {
            Kernel::Winograd(_) => winograd_plane(h, w),
            _ => (h + 2, w + 2),
        };
        let plane = wp * hp;
        let padded = &mut scratch.padded;
        padded.clear();
        padded.resize(self.c_in * plane + WINOGRAD_READ_SLACK, 0.0);
        for ci in 0..self.c_in {
            for y in 0..h {
                let src = &x[(ci * h + y) * w..(ci * h + y + 1) * w];
                let dst = ci * plane + (y + 1) * wp + 1;
                padded[dst..dst + w].copy_from_slice(src);
            }
        }
        match &self.kernel {
            Kernel::Winograd(winograd) => winograd.run(padded, h, w, relu, out),
            Kernel::Taps(taps) => self.tap_gemms(taps, padded, h, w, relu, &mut scratch.acc, out),
            Kernel::Pointwise(_) => unreachable!("handled above"),
        }
        true
    }

    /// The 3x3 conv as 9 GEMMs over the padded input, then bias and ReLU
    /// while cropping the border columns.
    #[allow(clippy::too_many_arguments)]
    fn tap_gemms(&self, taps: &[f32], padded: &[f32], h: usize, w: usize, relu: bool, acc: &mut Vec<f32>, out: &mut [f32]) {
        let wp = w + 2;
        let plane = wp * (h + 2);
        // Output position j = y * wp + x covers every pixel (and junk in
        // the border columns, dropped below).
        let len = (h - 1) * wp + w;
        acc.clear();
        acc.resize(self.c_out * len, 0.0);
        let per_tap = self.c_out * self.c_in;
        for t in 0..9 {
            let (ky, kx) = (t / 3, t % 3);
            // Input index of output j for this tap: j + ky * wp + kx.
            let lhs = MatRef::dense(&taps[t * per_tap..(t + 1) * per_tap], self.c_out, self.c_in);
            let rhs = MatRef::new(&padded[ky * wp + kx..], self.c_in, len, plane);
            matmul(lhs, rhs, acc, len, t > 0);
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

    /// Runs every image of `x` (B, C_in, H, W); `epilogue(channel, bias,
    /// plane, image index)` finishes each output plane the kernel left raw.
    fn batch(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        relu: bool,
        mut epilogue: impl FnMut(usize, f32, &mut [f32], usize),
    ) -> Result<(Vec<f32>, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.c_in {
            candle_core::bail!("conv: input has {c} channels, weights expect {}", self.c_in);
        }
        let x = contiguous_f32(storage, layout, "conv input")?;
        let mut out = vec![0f32; b * self.c_out * h * w];
        let mut scratch = Scratch::default();
        for (i, (xi, oi)) in x.chunks_exact(c * h * w).zip(out.chunks_exact_mut(self.c_out * h * w)).enumerate() {
            if !self.image(xi, h, w, relu, &mut scratch, oi) {
                for (co, plane) in oi.chunks_exact_mut(h * w).enumerate() {
                    epilogue(co, self.bias[co], plane, i);
                }
            }
        }
        Ok((out, Shape::from((b, self.c_out, h, w))))
    }
}

struct CpuConvCall {
    conv: Arc<CpuConv>,
    relu: bool,
}

impl CustomOp1 for CpuConvCall {
    fn name(&self) -> &'static str {
        "conv-same-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let relu = self.relu;
        let (out, shape) = self.conv.batch(storage, layout, relu, |_, b, plane, _| {
            if relu {
                plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
            } else {
                plane.iter_mut().for_each(|v| *v += b);
            }
        })?;
        Ok((CpuStorage::F32(out), shape))
    }
}

/// (x, skip) -> skip * (1 + sigmoid(conv(x) + bias)).
struct CpuGateCall(Arc<CpuConv>);

impl CustomOp2 for CpuGateCall {
    fn name(&self) -> &'static str {
        "conv-gate-f32"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, _, h, w) = l1.shape().dims4()?;
        if l2.shape().dims4()? != (b, self.0.c_out, h, w) {
            candle_core::bail!("gate: skip is {:?}, the gate conv gives ({b}, {}, {h}, {w})", l2.shape(), self.0.c_out);
        }
        if !matches!(self.0.kernel, Kernel::Pointwise(_)) {
            candle_core::bail!("gate: only a 1x1 conv can gate a skip");
        }
        let skip = contiguous_f32(s2, l2, "gate skip")?;
        let per_image = self.0.c_out * h * w;
        let (out, shape) = self.0.batch(s1, l1, false, |co, bias, plane, i| {
            avx512::gate_in_place(plane, &skip[i * per_image + co * h * w..i * per_image + (co + 1) * h * w], bias);
        })?;
        Ok((CpuStorage::F32(out), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// Both 3x3 kernels (where the CPU has AVX-512) and the 1x1 kernel
    /// against candle's conv, plain, with ReLU and as a gate.
    #[test]
    fn fast_paths_equal_candle_conv() {
        let dev = Device::Cpu;
        let shapes = [(1, 3, 5, 7, 9), (2, 8, 4, 1, 1), (1, 16, 16, 28, 28), (1, 4, 2, 2, 13), (2, 5, 17, 9, 50), (1, 33, 9, 36, 70)];
        for k in [1, 3] {
            for (b, c_in, c_out, h, w) in shapes {
                let x = Tensor::randn(0f32, 1.0, (b, c_in, h, w), &dev).unwrap();
                let wt = Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &dev).unwrap();
                let bias = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
                let cfg = candle_nn::Conv2dConfig { padding: k / 2, ..Default::default() };
                let inner = candle_nn::Conv2d::new(wt.clone(), Some(bias.clone()), cfg);
                let reference = inner.forward(&x).unwrap();
                let skip = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
                let gated = skip.mul(&(candle_nn::ops::sigmoid(&reference).unwrap() + 1.0).unwrap()).unwrap();
                let kernels: &[Choice] = if avx512::available() { &[Choice::Winograd, Choice::Taps] } else { &[Choice::Taps] };
                for &choice in kernels {
                    let fast = CpuConv::with_kernel(&wt, &bias, c_in, c_out, k, choice).unwrap();
                    let conv = Conv { inner: None, fast: Some(Arc::new(fast)) };
                    let case = format!("k{k} {choice:?} {b}x{c_in}->{c_out}x{h}x{w}");
                    assert!(max_diff(&conv.forward(&x).unwrap(), &reference) < 1e-4, "{case}");
                    assert!(max_diff(&conv.forward_relu(&x).unwrap(), &reference.relu().unwrap()) < 1e-4, "relu {case}");
                    if k == 1 {
                        assert!(max_diff(&conv.forward_gate(&x, &skip).unwrap(), &gated) < 1e-5, "gate {case}");
                    }
                }
                assert!(Conv::new(inner).unwrap().fast.is_some());
            }
        }
    }
}
