//! f32 kernels for x86-64 CPUs with AVX-512, where the model's hot loops
//! beat a general GEMM: each keeps a block of 8 x 16-48 outputs in vector
//! registers for its whole reduction, reading weights laid out for it at
//! load, so nothing is packed or re-read per call, and applies bias and
//! activation as it stores. Chosen at load when the CPU has AVX-512F;
//! elsewhere the model uses GEMM-based paths.

mod linear;
pub mod wgrad;
mod winograd;

pub use linear::{Epilogue, PackedLinear};

pub use winograd::{padded_plane as winograd_plane, Winograd3x3, WINOGRAD_READ_SLACK};

/// Whether this CPU can run the kernels (and `CLIP_DEPTH_NO_AVX512` is not
/// set, which selects the portable paths, e.g. to compare them).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("CLIP_DEPTH_NO_AVX512").is_none()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}


/// `e^x` per lane, to about 2 ulp: `x = n ln 2 + r` with |r| <= ln 2 / 2,
/// a degree-6 polynomial for `e^r` (Cephes' expf coefficients) and `2^n`
/// by `scalef`. Inputs beyond +-88 saturate (to 0 or +inf through scalef).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0)), _mm512_set1_ps(88.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let p = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, n)
}

/// `g = skip * (1 + sigmoid(g + bias))` over a plane: the decoder's skip
/// gate, vectorised where the CPU has AVX-512.
pub fn gate_in_place(g: &mut [f32], skip: &[f32], bias: f32) {
    assert_eq!(g.len(), skip.len(), "gate: plane sizes");
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512 checked; both slices have g.len() elements.
        unsafe { gate_avx512(g, skip, bias) };
        return;
    }
    for (g, &s) in g.iter_mut().zip(skip) {
        *g = s * (1.0 + 1.0 / (1.0 + (-(*g + bias)).exp()));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gate_avx512(g: &mut [f32], skip: &[f32], bias: f32) {
    use std::arch::x86_64::*;
    let (one, b) = (_mm512_set1_ps(1.0), _mm512_set1_ps(bias));
    for c0 in (0..g.len()).step_by(16) {
        let lanes = (g.len() - c0).min(16);
        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
        let x = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, g.as_ptr().add(c0)), b);
        let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
        let gate = _mm512_add_ps(one, _mm512_div_ps(one, _mm512_add_ps(one, e)));
        let s = _mm512_maskz_loadu_ps(mask, skip.as_ptr().add(c0));
        _mm512_mask_storeu_ps(g.as_mut_ptr().add(c0), mask, _mm512_mul_ps(s, gate));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_matches_std() {
        if !super::available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let xs: Vec<f32> = (0..4000).map(|i| -90.0 + i as f32 * 0.045).collect();
        for chunk in xs.chunks_exact(16) {
            let mut out = [0f32; 16];
            // SAFETY: AVX-512 checked above.
            unsafe {
                use std::arch::x86_64::*;
                _mm512_storeu_ps(out.as_mut_ptr(), super::exp(_mm512_loadu_ps(chunk.as_ptr())));
            }
            for (x, y) in chunk.iter().zip(out) {
                let want = x.clamp(-88.0, 88.0).exp();
                assert!((y - want).abs() <= 4e-7 * want, "exp({x}) = {y}, want {want}");
            }
        }
    }
}
