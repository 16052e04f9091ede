//! Multi-head attention on the CPU in f32 straight from the fused qkv
//! projection: per (image, head), two small GEMMs that read q, k and v in
//! place through strides and write the head's output into its columns of
//! the result, with the softmax done in place between them. candle would
//! copy q, k and v out, transpose, and allocate at every step.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

use super::SendPtr;

/// (B, T, 3D) with q, k, v blocks of D (q pre-scaled) -> (B, T, D).
pub struct CpuAttention {
    pub num_heads: usize,
}

impl CustomOp1 for CpuAttention {
    fn name(&self) -> &'static str {
        "attention-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, d3) = layout.shape().dims3()?;
        let d = d3 / 3;
        let heads = self.num_heads;
        if d * 3 != d3 || d % heads != 0 {
            candle_core::bail!("attention: last dim {d3} is not 3 x heads x head_dim");
        }
        let hd = d / heads;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("attention: input must be contiguous");
        };
        let qkv = &storage.as_slice::<f32>()?[start..end];
        let mut out = vec![0f32; b * t * d];
        // Each (image, head) writes its own hd columns of `out`: hand out
        // raw pointers and keep the writes disjoint.
        let out_ptr = SendPtr(out.as_mut_ptr());
        (0..b * heads).into_par_iter().for_each_init(
            || vec![0f32; t * t],
            |scores, job| {
                let (bi, h) = (job / heads, job % heads);
                let base = bi * t * d3;
                let q = qkv[base + h * hd..].as_ptr();
                let k = qkv[base + d + h * hd..].as_ptr();
                let v = qkv[base + 2 * d + h * hd..].as_ptr();
                // SAFETY: q/k/v rows are `d3` apart and `hd` long inside the
                // image's (t, 3d) block; scores is t x t; the output block is
                // rows of this image, columns h*hd..(h+1)*hd, which no other
                // job touches.
                unsafe {
                    // scores = q k^T: lhs q (t x hd), rhs k^T (hd x t): element
                    // (j, i) at k + i*d3 + j -> row stride 1, column stride d3.
                    gemm::gemm(
                        t, t, hd,
                        scores.as_mut_ptr(), 1, t as isize, false,
                        q, 1, d3 as isize,
                        k, d3 as isize, 1,
                        0.0, 1.0, false, false, false, gemm::Parallelism::None,
                    );
                }
                for row in scores.chunks_exact_mut(t) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    for s in row.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|s| *s *= inv);
                }
                unsafe {
                    let o = out_ptr.at(bi * t * d + h * hd);
                    gemm::gemm(
                        t, hd, t,
                        o, 1, d as isize, false,
                        scores.as_ptr(), 1, t as isize,
                        v, 1, d3 as isize,
                        0.0, 1.0, false, false, false, gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, t, d))))
    }
}

