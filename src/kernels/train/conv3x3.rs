//! A 3x3 'same' convolution (stride 1, padding 1, no bias) with its
//! backward pass, for training on the CPU in f32. Forward and input
//! gradient are the same kernel (the input gradient is the convolution of
//! the output gradient with the weights transposed and flipped): Winograd
//! F(2x2, 3x3) with AVX-512, else nine GEMMs over a zero-padded plane read
//! at shifted offsets, as the inference kernels do. The weight gradient is
//! nine GEMMs of the output gradient against the shifted input planes.
//! candle's own CPU backward would go through its scalar transposed
//! convolution.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::kernels::avx512::wgrad::{accumulate, WgradImage};
use crate::kernels::avx512::{self, winograd_plane, Winograd3x3, WINOGRAD_READ_SLACK};
use crate::kernels::contiguous_f32;
use crate::kernels::gemm::{matmul, MatRef};

/// Geometry of one image's padded plane: the output position
/// `j = y * wp + x` reads input `j + ky * wp + kx` for tap (ky, kx).
struct Plane {
    h: usize,
    w: usize,
    wp: usize,
    /// Floats per padded channel plane.
    plane: usize,
    /// Output positions covered (the last row has no junk columns).
    len: usize,
}

impl Plane {
    fn new(h: usize, w: usize) -> Self {
        let wp = w + 2;
        Self { h, w, wp, plane: wp * (h + 2), len: (h - 1) * wp + w }
    }

    /// Copies `x` (C, H, W) into the zero-padded (C, H + 2, W + 2) buffer.
    fn pad(&self, x: &[f32], c: usize, padded: &mut Vec<f32>) {
        padded.clear();
        padded.resize(c * self.plane, 0.0);
        for ch in 0..c {
            for y in 0..self.h {
                let src = &x[(ch * self.h + y) * self.w..(ch * self.h + y + 1) * self.w];
                let dst = ch * self.plane + (y + 1) * self.wp + 1;
                padded[dst..dst + self.w].copy_from_slice(src);
            }
        }
    }

    /// Lays `g` (C, H, W) on the output grid (C, len), zeros in the junk columns.
    fn spread(&self, g: &[f32], c: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(c * self.len, 0.0);
        for ch in 0..c {
            for y in 0..self.h {
                let src = &g[(ch * self.h + y) * self.w..(ch * self.h + y + 1) * self.w];
                let dst = ch * self.len + y * self.wp;
                out[dst..dst + self.w].copy_from_slice(src);
            }
        }
    }
}

/// The weights of the input gradient's convolution: `w` (C_out, C_in, 3,
/// 3) transposed to (C_in, C_out, 3, 3) and flipped in both directions.
fn transposed_flipped(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for co in 0..c_out {
        for ci in 0..c_in {
            for k in 0..9 {
                t[(ci * c_out + co) * 9 + (8 - k)] = w[(co * c_in + ci) * 9 + k];
            }
        }
    }
    t
}

/// Per tap t = 3 ky + kx, the (C_out x C_in) matrix `w[.., .., ky, kx]`.
fn tap_matrices(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut taps = vec![0f32; 9 * c_out * c_in];
    for co in 0..c_out {
        for ci in 0..c_in {
            for t in 0..9 {
                taps[(t * c_out + co) * c_in + ci] = w[(co * c_in + ci) * 9 + t];
            }
        }
    }
    taps
}

/// `x` (B, C_in, H, W) convolved with `w` (C_out, C_in, 3, 3): Winograd
/// F(2x2, 3x3) where the CPU has AVX-512, else nine GEMMs per image.
fn convolve(x: &[f32], b: usize, c_in: usize, c_out: usize, h: usize, w: usize, weight: &[f32]) -> Vec<f32> {
    if !avx512::available() {
        return convolve_taps(x, b, c_in, c_out, h, w, &tap_matrices(weight, c_out, c_in));
    }
    let kernel = Winograd3x3::new(weight, vec![0.0; c_out], c_in, c_out);
    let (hp, wp) = winograd_plane(h, w);
    let plane = hp * wp;
    let mut out = vec![0f32; b * c_out * h * w];
    let mut padded = vec![0f32; c_in * plane + WINOGRAD_READ_SLACK];
    for (xi, oi) in x.chunks_exact(c_in * h * w).zip(out.chunks_exact_mut(c_out * h * w)) {
        for ch in 0..c_in {
            for y in 0..h {
                let dst = ch * plane + (y + 1) * wp + 1;
                padded[dst..dst + w].copy_from_slice(&xi[(ch * h + y) * w..(ch * h + y + 1) * w]);
            }
        }
        kernel.run(&padded, h, w, false, oi);
    }
    out
}

/// `x` (B, C_in, H, W) convolved with `taps` (9, C_out, C_in).
fn convolve_taps(x: &[f32], b: usize, c_in: usize, c_out: usize, h: usize, w: usize, taps: &[f32]) -> Vec<f32> {
    let g = Plane::new(h, w);
    let mut out = vec![0f32; b * c_out * h * w];
    let (mut padded, mut acc) = (Vec::new(), vec![0f32; c_out * g.len]);
    let per_tap = c_out * c_in;
    for (xi, oi) in x.chunks_exact(c_in * h * w).zip(out.chunks_exact_mut(c_out * h * w)) {
        g.pad(xi, c_in, &mut padded);
        for t in 0..9 {
            let (ky, kx) = (t / 3, t % 3);
            let lhs = MatRef::dense(&taps[t * per_tap..(t + 1) * per_tap], c_out, c_in);
            let rhs = MatRef::new(&padded[ky * g.wp + kx..], c_in, g.len, g.plane);
            matmul(lhs, rhs, &mut acc, g.len, t > 0);
        }
        for co in 0..c_out {
            for y in 0..h {
                let src = &acc[co * g.len + y * g.wp..co * g.len + y * g.wp + w];
                oi[(co * h + y) * w..(co * h + y + 1) * w].copy_from_slice(src);
            }
        }
    }
    out
}

/// dL/dw (C_out, C_in, 3, 3) from the input `x` and the output gradient
/// `g`: the AVX-512 kernel where the CPU has it, else nine GEMMs per image.
fn weight_grad(x: &[f32], grad: &[f32], b: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> Vec<f32> {
    let g = Plane::new(h, w);
    let per_tap = c_out * c_in;
    let mut taps = vec![0f32; 9 * per_tap];
    // The AVX-512 kernel wins everywhere but on wide inputs at low
    // resolution (768 -> 256 at 28x28: 131 against the GEMM's 203 GFLOP/s).
    if avx512::available() && (c_in <= 256 || h * w >= 56 * 56) {
        let len16 = g.len.div_ceil(16) * 16;
        let mut padded = Vec::new();
        let mut spread = vec![0f32; c_out * len16];
        for i in 0..b {
            g.pad(&x[i * c_in * h * w..(i + 1) * c_in * h * w], c_in, &mut padded);
            padded.resize(c_in * g.plane + len16 - g.len + 64, 0.0);
            let gi = &grad[i * c_out * h * w..(i + 1) * c_out * h * w];
            for co in 0..c_out {
                for y in 0..h {
                    let dst = co * len16 + y * g.wp;
                    spread[dst..dst + w].copy_from_slice(&gi[(co * h + y) * w..(co * h + y + 1) * w]);
                }
            }
            let offsets = std::array::from_fn(|t| (t / 3) * g.wp + t % 3);
            let image = WgradImage { g: &spread, x: &padded, c_out, c_in, len16, plane: g.plane, offsets };
            accumulate(&image, &mut taps);
        }
        return taps_to_weights(&taps, c_out, c_in);
    }
    let (mut padded, mut spread) = (Vec::new(), Vec::new());
    for i in 0..b {
        g.pad(&x[i * c_in * h * w..(i + 1) * c_in * h * w], c_in, &mut padded);
        g.spread(&grad[i * c_out * h * w..(i + 1) * c_out * h * w], c_out, &mut spread);
        let lhs = MatRef::dense(&spread, c_out, g.len);
        for t in 0..9 {
            let (ky, kx) = (t / 3, t % 3);
            // (len x C_in): the shifted input planes, read transposed.
            let rhs = MatRef::new(&padded[ky * g.wp + kx..], c_in, g.len, g.plane).t();
            matmul(lhs, rhs, &mut taps[t * per_tap..(t + 1) * per_tap], c_in, i > 0);
        }
    }
    taps_to_weights(&taps, c_out, c_in)
}

/// (9, C_out, C_in) per-tap matrices -> PyTorch's (C_out, C_in, 3, 3).
fn taps_to_weights(taps: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut out = vec![0f32; taps.len()];
    for t in 0..9 {
        for co in 0..c_out {
            for ci in 0..c_in {
                out[(co * c_in + ci) * 9 + t] = taps[(t * c_out + co) * c_in + ci];
            }
        }
    }
    out
}

fn dims(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    let d = l.shape().dims4()?;
    if d.2 == 0 || d.3 == 0 {
        candle_core::bail!("{what}: empty map {:?}", l.shape());
    }
    Ok(d)
}

/// (x (B, C_in, H, W), w (C_out, C_in, 3, 3)) -> (B, C_out, H, W).
pub struct Conv3x3;

impl CustomOp2 for Conv3x3 {
    fn name(&self) -> &'static str {
        "conv3x3-train-f32"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c_in, h, w) = dims(xl, "conv3x3 input")?;
        let (c_out, wc, kh, kw) = wl.shape().dims4()?;
        if (wc, kh, kw) != (c_in, 3, 3) {
            candle_core::bail!("conv3x3: weights {:?} do not fit input {:?}", wl.shape(), xl.shape());
        }
        let x = contiguous_f32(xs, xl, "conv3x3 input")?;
        let weight = contiguous_f32(ws, wl, "conv3x3 weight")?;
        Ok((CpuStorage::F32(convolve(x, b, c_in, c_out, h, w, weight)), Shape::from((b, c_out, h, w))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(&w.contiguous()?, &Conv3x3InputGrad)?;
        let dw = x.contiguous()?.apply_op2_no_bwd(&grad, &Conv3x3WeightGrad)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// (grad (B, C_out, H, W), w (C_out, C_in, 3, 3)) -> dL/dx (B, C_in, H, W).
struct Conv3x3InputGrad;

impl CustomOp2 for Conv3x3InputGrad {
    fn name(&self) -> &'static str {
        "conv3x3-input-grad-f32"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c_out, h, w) = dims(gl, "conv3x3 gradient")?;
        let (_, c_in, _, _) = wl.shape().dims4()?;
        let flipped = transposed_flipped(contiguous_f32(ws, wl, "conv3x3 weight")?, c_out, c_in);
        let g = contiguous_f32(gs, gl, "conv3x3 gradient")?;
        Ok((CpuStorage::F32(convolve(g, b, c_out, c_in, h, w, &flipped)), Shape::from((b, c_in, h, w))))
    }
}

/// (x (B, C_in, H, W), grad (B, C_out, H, W)) -> dL/dw (C_out, C_in, 3, 3).
struct Conv3x3WeightGrad;

impl CustomOp2 for Conv3x3WeightGrad {
    fn name(&self) -> &'static str {
        "conv3x3-weight-grad-f32"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c_in, h, w) = dims(xl, "conv3x3 input")?;
        let (_, c_out, _, _) = gl.shape().dims4()?;
        let x = contiguous_f32(xs, xl, "conv3x3 input")?;
        let g = contiguous_f32(gs, gl, "conv3x3 gradient")?;
        Ok((CpuStorage::F32(weight_grad(x, g, b, c_in, c_out, h, w)), Shape::from((c_out, c_in, 3, 3))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_gradients_equal_candle_conv() {
        let dev = Device::Cpu;
        for (b, ci, co, h, w) in [(2, 3, 4, 5, 7), (1, 8, 2, 1, 1), (3, 2, 5, 6, 1)] {
            let x = Var::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap();
            let wt = Var::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap();
            let probe = Tensor::randn(0f32, 1.0, (b, co, h, w), &dev).unwrap();
            let ours = x.as_tensor().apply_op2(wt.as_tensor(), Conv3x3).unwrap();
            let theirs = x.as_tensor().conv2d(wt.as_tensor(), 1, 1, 1, 1).unwrap();
            let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "forward {diff}");
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt] {
                let (a, c) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                let diff = (a - c).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-3, "gradient {diff} for {:?}", v.shape());
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use candle_core::Device;

    /// Per-kernel timing at the decoder's shapes (batch 8); not a test.
    #[test]
    #[ignore]
    fn time_conv3x3_kernels() {
        let dev = Device::Cpu;
        for (ci, co, hw) in [(64, 32, 224), (32, 32, 224), (128, 64, 112), (64, 64, 112), (384, 128, 56), (768, 256, 28), (256, 256, 28)] {
            let x = Tensor::randn(0f32, 1.0, (8, ci, hw, hw), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap();
            let g = Tensor::randn(0f32, 1.0, (8, co, hw, hw), &dev).unwrap();
            let t = std::time::Instant::now();
            let _ = x.apply_op2_no_bwd(&w, &Conv3x3).unwrap();
            let f = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            let _ = g.apply_op2_no_bwd(&w, &Conv3x3InputGrad).unwrap();
            let i = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            let _ = x.apply_op2_no_bwd(&g, &Conv3x3WeightGrad).unwrap();
            let wg = t.elapsed().as_secs_f64() * 1e3;
            let gflop = 2.0 * (ci * co * 9 * hw * hw * 8) as f64 / 1e9;
            eprintln!("{ci:>4}->{co:<4} {hw:>3}^2: forward {f:7.1} ms, input grad {i:7.1} ms, weight grad {wg:7.1} ms ({gflop:.1} GFLOP each; weight grad {:.0} GFLOP/s)", gflop / wg * 1e3);
        }
    }
}
