//! A direct 3x3 'same' convolution (f32).
//!
//! The decoder's convs are thin (32-256 channels) over large maps, where a
//! GEMM per kernel tap re-reads and re-writes its accumulator nine times and
//! packs its operands first. Here a block of 8 output channels x 48 output
//! pixels stays in 24 vector registers for the whole reduction over input
//! channels and taps: every step loads three input vectors (at the tap's
//! shift in the zero-padded plane, so no im2col) and broadcasts eight
//! weights. Nothing is packed or written until the block is done.

use rayon::prelude::*;

use super::{available, OutPtr};

/// Output channels per register block.
const R: usize = 8;
/// 16-lane vectors of output pixels per register block.
const V: usize = 3;
/// Output pixels per register block.
const PX: usize = 16 * V;
/// Floats a block may read past the last padded plane (its junk tail).
pub const READ_SLACK: usize = PX + 16;

/// Weights laid out for the kernel: `[c_out / R][c_in][9][R]`, output
/// channels zero-padded to a multiple of R.
#[derive(Debug)]
pub struct Direct3x3 {
    c_in: usize,
    c_out: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Direct3x3 {
    /// `w` is PyTorch's (c_out, c_in, 3, 3), flattened.
    pub fn new(w: &[f32], bias: Vec<f32>, c_in: usize, c_out: usize) -> Self {
        let blocks = c_out.div_ceil(R);
        let mut weights = vec![0f32; blocks * c_in * 9 * R];
        for co in 0..c_out {
            let (b, r) = (co / R, co % R);
            for ci in 0..c_in {
                for t in 0..9 {
                    weights[((b * c_in + ci) * 9 + t) * R + r] = w[(co * c_in + ci) * 9 + t];
                }
            }
        }
        Self { c_in, c_out, weights, bias }
    }

    /// `padded` is the input (c_in, h + 2, w + 2) with a zero border and at
    /// least [`READ_SLACK`] floats after it; `out` is (c_out, h, w).
    pub fn run(&self, padded: &[f32], h: usize, w: usize, relu: bool, out: &mut [f32]) {
        let (wp, hp) = (w + 2, h + 2);
        let plane = wp * hp;
        assert!(padded.len() >= self.c_in * plane + READ_SLACK, "conv3x3: padded input too short");
        assert_eq!(out.len(), self.c_out * h * w, "conv3x3: output size");
        assert!(available(), "conv3x3: AVX-512 kernel called on a CPU without AVX-512");
        // Output position j = y * wp + x over the padded width; the two
        // border columns are junk and not stored.
        let len = (h - 1) * wp + w;
        let pixel_blocks = len.div_ceil(PX);
        let co_blocks = self.c_out.div_ceil(R);
        let threads = candle_core::utils::get_num_threads().max(1);
        let per_task = pixel_blocks.div_ceil(threads * 4).max(1);
        let out_ptr = OutPtr(out.as_mut_ptr());
        let offsets = [0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2];
        (0..pixel_blocks.div_ceil(per_task)).into_par_iter().for_each(|task| {
            let mut tile = [0f32; R * PX];
            for pb in task * per_task..((task + 1) * per_task).min(pixel_blocks) {
                let j0 = pb * PX;
                for cb in 0..co_blocks {
                    let wb = &self.weights[cb * self.c_in * 9 * R..(cb + 1) * self.c_in * 9 * R];
                    // SAFETY: AVX-512 checked above; reads stay within
                    // `padded` (see READ_SLACK), weights hold c_in * 9 * R.
                    unsafe { kernel(padded.as_ptr().add(j0), plane, &offsets, self.c_in, wb.as_ptr(), &mut tile) };
                    for r in 0..R.min(self.c_out - cb * R) {
                        let co = cb * R + r;
                        let b = self.bias[co];
                        let (mut y, mut x) = (j0 / wp, j0 % wp);
                        for &v in &tile[r * PX..(r * PX + PX).min(r * PX + len - j0)] {
                            if x < w {
                                let v = if relu { (v + b).max(0.0) } else { v + b };
                                // SAFETY: (co, y, x) is inside out, and only
                                // this task writes pixel block pb.
                                unsafe { *out_ptr.at((co * h + y) * w + x) = v };
                            }
                            x += 1;
                            if x == wp {
                                (y, x) = (y + 1, 0);
                            }
                        }
                    }
                }
            }
        });
    }
}

/// One register block: `tile[r][p]` = sum over input channels and taps of
/// `w[ci][t][r] * x[ci * plane + offsets[t] + p]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(x: *const f32, plane: usize, offsets: &[usize; 9], c_in: usize, w: *const f32, tile: &mut [f32; R * PX]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for ci in 0..c_in {
        let xc = x.add(ci * plane);
        let wc = w.add(ci * 9 * R);
        for (t, &off) in offsets.iter().enumerate() {
            let p = xc.add(off);
            let xv = [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)), _mm512_loadu_ps(p.add(32))];
            let wt = wc.add(t * R);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*wt.add(r));
                for v in 0..V {
                    acc_r[v] = _mm512_fmadd_ps(wv, xv[v], acc_r[v]);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, a) in acc_r.iter().enumerate() {
            _mm512_storeu_ps(tile.as_mut_ptr().add(r * PX + 16 * v), *a);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(_: *const f32, _: usize, _: &[usize; 9], _: usize, _: *const f32, _: &mut [f32; R * PX]) {
    unreachable!("the AVX-512 kernel is only selected on x86-64")
}
