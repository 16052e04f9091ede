//! `y = x W^T + b` with W packed at load into panels of 48 output features:
//! `[n / 48][k][48]`, so each reduction step loads three weight vectors and
//! broadcasts one input value per row of an 8-row block.

use rayon::prelude::*;

use super::available;
use crate::kernels::SendPtr as OutPtr;

/// Rows (tokens) per register block.
const R: usize = 8;
/// 16-lane vectors of output features per register block.
const V: usize = 3;
/// Output features per panel.
const NB: usize = 16 * V;

#[derive(Debug)]
pub struct PackedLinear {
    n: usize,
    k: usize,
    panels: Vec<f32>,
}

impl PackedLinear {
    /// `w` is (n, k) row-major, as PyTorch stores a Linear's weight.
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "linear weight size");
        let mut panels = vec![0f32; n.div_ceil(NB) * k * NB];
        for (o, row) in w.chunks_exact(k).enumerate() {
            let (p, c) = (o / NB, o % NB);
            for (kk, &v) in row.iter().enumerate() {
                panels[(p * k + kk) * NB + c] = v;
            }
        }
        Self { n, k, panels }
    }

    /// Packs `W = x^T` for a row-major `x` of k rows and n columns: a 1x1
    /// convolution's input (C_in, H W) read as the "weights" of
    /// `W_conv x`, so the same kernel computes it with rows = C_out.
    pub fn from_columns(x: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(x.len(), n * k, "packed input size");
        let mut panels = vec![0f32; n.div_ceil(NB) * k * NB];
        for p in 0..n.div_ceil(NB) {
            let (c0, cols) = (p * NB, NB.min(n - p * NB));
            for kk in 0..k {
                panels[(p * k + kk) * NB..(p * k + kk) * NB + cols].copy_from_slice(&x[kk * n + c0..kk * n + c0 + cols]);
            }
        }
        Self { n, k, panels }
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `out` (m x n) = `epilogue(x (m x k) W^T + bias)`.
    pub fn forward(&self, x: &[f32], m: usize, bias: &[f32], epilogue: Epilogue, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert!(x.len() == m * k && out.len() == m * n && bias.len() == n, "linear: operand sizes");
        assert!(available(), "linear: AVX-512 kernel called on a CPU without AVX-512");
        if m == 0 {
            return;
        }
        let out_ptr = OutPtr(out.as_mut_ptr());
        (0..n.div_ceil(NB)).into_par_iter().for_each(|p| {
            let panel = &self.panels[p * k * NB..(p + 1) * k * NB];
            let n0 = p * NB;
            let cols = NB.min(n - n0);
            let mut tile = [0f32; R * NB];
            for m0 in (0..m).step_by(R) {
                // Rows past m repeat the last row; their results are dropped.
                let rows: [*const f32; R] = std::array::from_fn(|r| x[(m0 + r).min(m - 1) * k..].as_ptr());
                // SAFETY: AVX-512 checked above; every row pointer has k
                // floats after it and the panel holds k * NB; the stored
                // rows (m0 + r < m) and columns (n0 + c < n) are inside out
                // and only this task writes panel p's columns.
                unsafe {
                    kernel(&rows, k, panel.as_ptr(), &mut tile);
                    for r in 0..R.min(m - m0) {
                        let dst = out_ptr.at((m0 + r) * n + n0);
                        store_row(&tile[r * NB..(r + 1) * NB], &bias[n0..n0 + cols], epilogue, dst);
                    }
                }
            }
        });
    }
}

/// What is applied to `x W^T + b` as it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    Relu,
    /// `x * sigmoid(1.702 x)`, CLIP's activation.
    QuickGelu,
}

/// Writes `epilogue(acc + bias)` for `bias.len()` columns to `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_row(acc: &[f32], bias: &[f32], epilogue: Epilogue, dst: *mut f32) {
    use std::arch::x86_64::*;
    for c0 in (0..bias.len()).step_by(16) {
        let lanes = (bias.len() - c0).min(16);
        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
        let b = _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(c0));
        let mut v = _mm512_add_ps(_mm512_loadu_ps(acc.as_ptr().add(c0)), b);
        v = match epilogue {
            Epilogue::None => v,
            Epilogue::Relu => _mm512_max_ps(v, _mm512_setzero_ps()),
            Epilogue::QuickGelu => {
                let e = super::exp(_mm512_mul_ps(v, _mm512_set1_ps(-1.702)));
                _mm512_div_ps(v, _mm512_add_ps(e, _mm512_set1_ps(1.0)))
            }
        };
        _mm512_mask_storeu_ps(dst.add(c0), mask, v);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn store_row(_: &[f32], _: &[f32], _: Epilogue, _: *mut f32) {
    unreachable!("the AVX-512 kernel is only selected on x86-64")
}

/// `tile[r][c]` = sum over kk of `rows[r][kk] * panel[kk][c]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(rows: &[*const f32; R], k: usize, panel: *const f32, tile: &mut [f32; R * NB]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for kk in 0..k {
        let p = panel.add(kk * NB);
        let wv = [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)), _mm512_loadu_ps(p.add(32))];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xv = _mm512_set1_ps(*rows[r].add(kk));
            for v in 0..V {
                acc_r[v] = _mm512_fmadd_ps(xv, wv[v], acc_r[v]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, a) in acc_r.iter().enumerate() {
            _mm512_storeu_ps(tile.as_mut_ptr().add(r * NB + 16 * v), *a);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(_: &[*const f32; R], _: usize, _: *const f32, _: &mut [f32; R * NB]) {
    unreachable!("the AVX-512 kernel is only selected on x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_naive_product() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        for (m, n, k) in [(1, 5, 3), (197, 96, 64), (9, 50, 17), (8, 48, 1), (17, 100, 40)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 23) as f32 * 0.1 - 1.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 19) as f32 * 0.1 - 0.9).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let linear = PackedLinear::new(&w, n, k);
            for epilogue in [Epilogue::None, Epilogue::Relu, Epilogue::QuickGelu] {
                let mut out = vec![0f32; m * n];
                linear.forward(&x, m, &bias, epilogue, &mut out);
                for i in 0..m {
                    for o in 0..n {
                        let y: f32 = (0..k).map(|kk| x[i * k + kk] * w[o * k + kk]).sum::<f32>() + bias[o];
                        let want = match epilogue {
                            Epilogue::None => y,
                            Epilogue::Relu => y.max(0.0),
                            Epilogue::QuickGelu => y / (1.0 + (-1.702 * y).exp()),
                        };
                        assert!((out[i * n + o] - want).abs() < 1e-4 * (1.0 + want.abs()), "{epilogue:?} {m}x{n}x{k} at ({i}, {o})");
                    }
                }
            }
        }
    }
}
