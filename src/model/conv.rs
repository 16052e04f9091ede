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
    /// Winograd F(2x2, 3x3) weights `G g G^T`: 16 matrices (C_out, C_in).
    /// Used where channels are wide enough for the GEMMs to dominate.
    winograd: Option<Vec<f32>>,
}

/// Channel counts from which Winograd pays: below, the transforms' memory
/// traffic outweighs the 2.25x fewer multiplies.
const WINOGRAD_MIN_CHANNELS: usize = 64;

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
        let winograd = (c_in >= WINOGRAD_MIN_CHANNELS && c_out >= WINOGRAD_MIN_CHANNELS)
            .then(|| winograd_weights(&w, c_in, c_out));
        Ok(Self { c_in, c_out, taps, bias: bias.to_vec1::<f32>()?, winograd })
    }

    /// One image by Winograd F(2x2, 3x3): 2x2 output tiles from 4x4 input
    /// patches; `V = B^T d B` per channel and tile, 16 GEMMs `M = U V`,
    /// `Y = A^T M A` per tile (Lavin and Gray, 2016).
    fn image_winograd(&self, u: &[f32], x: &[f32], h: usize, w: usize, relu: bool, bufs: &mut Buffers, out: &mut [f32]) {
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let tiles = th * tw;
        let (wp, hp) = (2 * tw + 2, 2 * th + 2);
        let plane = wp * hp;
        let padded = &mut bufs.padded;
        padded.clear();
        padded.resize(self.c_in * plane, 0.0);
        for ci in 0..self.c_in {
            for y in 0..h {
                let dst = ci * plane + (y + 1) * wp + 1;
                padded[dst..dst + w].copy_from_slice(&x[(ci * h + y) * w..(ci * h + y + 1) * w]);
            }
        }
        // Input transform into 16 matrices (C_in, tiles).
        let v = &mut bufs.v;
        v.clear();
        v.resize(16 * self.c_in * tiles, 0.0);
        let vstride = self.c_in * tiles;
        for ci in 0..self.c_in {
            let p = &padded[ci * plane..(ci + 1) * plane];
            for ty in 0..th {
                for tx in 0..tw {
                    let o = 2 * ty * wp + 2 * tx;
                    let mut d = [[0f32; 4]; 4];
                    for (r, row) in d.iter_mut().enumerate() {
                        row.copy_from_slice(&p[o + r * wp..o + r * wp + 4]);
                    }
                    // B^T d
                    let mut t = [[0f32; 4]; 4];
                    for c in 0..4 {
                        t[0][c] = d[0][c] - d[2][c];
                        t[1][c] = d[1][c] + d[2][c];
                        t[2][c] = d[2][c] - d[1][c];
                        t[3][c] = d[1][c] - d[3][c];
                    }
                    let at = ci * tiles + ty * tw + tx;
                    for r in 0..4 {
                        let row = [t[r][0] - t[r][2], t[r][1] + t[r][2], t[r][2] - t[r][1], t[r][1] - t[r][3]];
                        for c in 0..4 {
                            v[(r * 4 + c) * vstride + at] = row[c];
                        }
                    }
                }
            }
        }
        let m = &mut bufs.acc;
        m.clear();
        m.resize(16 * self.c_out * tiles, 0.0);
        let mstride = self.c_out * tiles;
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        for xi in 0..16 {
            // SAFETY: M_xi is c_out x tiles, U_xi c_out x c_in, V_xi c_in x
            // tiles, all row-major, contiguous and inside their buffers.
            unsafe {
                gemm::gemm(
                    self.c_out, tiles, self.c_in,
                    m.as_mut_ptr().add(xi * mstride), 1, tiles as isize, false,
                    u.as_ptr().add(xi * self.c_out * self.c_in), 1, self.c_in as isize,
                    v.as_ptr().add(xi * vstride), 1, tiles as isize,
                    0.0, 1.0, false, false, false, parallelism,
                );
            }
        }
        // Output transform, bias, ReLU, crop of odd edges.
        for co in 0..self.c_out {
            let b = self.bias[co];
            for ty in 0..th {
                for tx in 0..tw {
                    let at = co * tiles + ty * tw + tx;
                    let mm = |r: usize, c: usize| m[(r * 4 + c) * mstride + at];
                    let mut t = [[0f32; 4]; 2];
                    for c in 0..4 {
                        t[0][c] = mm(0, c) + mm(1, c) + mm(2, c);
                        t[1][c] = mm(1, c) - mm(2, c) - mm(3, c);
                    }
                    for (i, row) in t.iter().enumerate() {
                        let y = 2 * ty + i;
                        if y >= h {
                            continue;
                        }
                        let vals = [row[0] + row[1] + row[2], row[1] - row[2] - row[3]];
                        for (j, val) in vals.iter().enumerate() {
                            let xx = 2 * tx + j;
                            if xx < w {
                                let v = val + b;
                                out[(co * h + y) * w + xx] = if relu { v.max(0.0) } else { v };
                            }
                        }
                    }
                }
            }
        }
    }

    /// One image: `x` (C_in, H, W) -> `out` (C_out, H, W).
    fn image(&self, x: &[f32], h: usize, w: usize, relu: bool, bufs: &mut Buffers, out: &mut [f32]) {
        if let Some(u) = &self.winograd {
            return self.image_winograd(u, x, h, w, relu, bufs, out);
        }
        let Buffers { padded, acc, .. } = bufs;
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

/// Scratch space reused across the images of a batch.
#[derive(Default)]
struct Buffers {
    padded: Vec<f32>,
    acc: Vec<f32>,
    v: Vec<f32>,
}

/// `U = G g G^T` for every (c_out, c_in) kernel, as 16 (C_out, C_in) matrices.
fn winograd_weights(w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * c_out * c_in];
    for co in 0..c_out {
        for ci in 0..c_in {
            let g = &w[(co * c_in + ci) * 9..(co * c_in + ci + 1) * 9];
            let g = |r: usize, c: usize| g[r * 3 + c] as f64;
            // G g: 4 x 3, with G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]].
            let mut t = [[0f64; 3]; 4];
            for c in 0..3 {
                t[0][c] = g(0, c);
                t[1][c] = 0.5 * (g(0, c) + g(1, c) + g(2, c));
                t[2][c] = 0.5 * (g(0, c) - g(1, c) + g(2, c));
                t[3][c] = g(2, c);
            }
            for (r, row) in t.iter().enumerate() {
                let vals = [row[0], 0.5 * (row[0] + row[1] + row[2]), 0.5 * (row[0] - row[1] + row[2]), row[2]];
                for (c, val) in vals.iter().enumerate() {
                    u[((r * 4 + c) * c_out + co) * c_in + ci] = *val as f32;
                }
            }
        }
    }
    u
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
        let mut bufs = Buffers::default();
        for (xi, oi) in x.chunks_exact(c * h * w).zip(out.chunks_exact_mut(conv.c_out * h * w)) {
            conv.image(xi, h, w, self.relu, &mut bufs, oi);
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
        for (b, c_in, c_out, h, w) in [(1, 3, 5, 7, 9), (2, 8, 4, 1, 1), (1, 16, 16, 28, 28), (1, 4, 2, 2, 13), (2, 64, 96, 9, 14), (1, 128, 64, 1, 3), (1, 64, 64, 28, 28)] {
            let x = Tensor::randn(0f32, 1.0, (b, c_in, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c_out, c_in, 3, 3), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
            let cfg = candle_nn::Conv2dConfig { padding: 1, ..Default::default() };
            let inner = candle_nn::Conv2d::new(wt, Some(bias), cfg);
            let reference = inner.forward(&x).unwrap();
            let conv = Conv::new(inner).unwrap();
            assert!(conv.fast.is_some());
            assert_eq!(conv.fast.as_ref().unwrap().winograd.is_some(), c_in >= 64 && c_out >= 64);
            let ours = conv.forward(&x).unwrap();
            let diff = (ours - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{b}x{c_in}x{h}x{w}: {diff}");
            let ours = conv.forward_relu(&x).unwrap();
            let diff = (ours - reference.relu().unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "relu {b}x{c_in}x{h}x{w}: {diff}");
        }
    }
}
