//! 3x3 'same' convolution by Winograd's F(2x2, 3x3) (f32): each 2x2 output
//! tile costs 16 multiply-adds per input channel instead of 36, so the
//! decoder's 3x3 convs (most of its arithmetic) do 2.25x fewer.
//!
//! Done one row of tiles at a time so every intermediate stays in cache:
//! the row's input tiles are transformed (`V = B^T d B`, 16 values per tile
//! and channel, 16 tiles per vector, read from the zero-padded plane with
//! even/odd lane shuffles), then for each block of 8 output channels and
//! each of the 16 positions a register-blocked product with the filters
//! transformed at load (`U = G g G^T`) runs over the input channels, and the
//! output transform (`A^T M A`) writes the 2x2 pixels with bias and ReLU.
//! An odd height or width is padded to even; the extra outputs are dropped.

use std::cell::RefCell;

use rayon::prelude::*;

use super::available;
use crate::kernels::SendPtr as OutPtr;

/// Output channels per register block.
const R: usize = 8;
/// Tiles per vector.
const L: usize = 16;

/// Filters transformed at load, `[c_out / R][16][c_in][R]`, output
/// channels zero-padded to a multiple of R.
#[derive(Debug)]
pub struct Winograd3x3 {
    c_in: usize,
    c_out: usize,
    u: Vec<f32>,
    bias: Vec<f32>,
}

/// The padded plane this kernel reads: `(h + 2, w + 2)` rounded up to even
/// interior sizes, and the floats it may read past the last plane.
pub fn padded_plane(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2) * 2 + 2, w.div_ceil(2) * 2 + 2)
}

/// Floats a tile row may read past the last padded plane.
pub const WINOGRAD_READ_SLACK: usize = 4 * L;

thread_local! {
    /// Per-thread scratch: the row's transformed input and products.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Winograd3x3 {
    /// `w` is PyTorch's (c_out, c_in, 3, 3), flattened.
    pub fn new(w: &[f32], bias: Vec<f32>, c_in: usize, c_out: usize) -> Self {
        const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let blocks = c_out.div_ceil(R);
        let mut u = vec![0f32; blocks * 16 * c_in * R];
        for co in 0..c_out {
            for ci in 0..c_in {
                let g = &w[(co * c_in + ci) * 9..(co * c_in + ci + 1) * 9];
                for (a, ga) in G.iter().enumerate() {
                    for (b, gb) in G.iter().enumerate() {
                        let mut v = 0f64;
                        for (i, gai) in ga.iter().enumerate() {
                            for (j, gbj) in gb.iter().enumerate() {
                                v += gai * g[3 * i + j] as f64 * gbj;
                            }
                        }
                        let xi = 4 * a + b;
                        u[(((co / R) * 16 + xi) * c_in + ci) * R + co % R] = v as f32;
                    }
                }
            }
        }
        Self { c_in, c_out, u, bias }
    }

    /// `padded` is the input as `(c_in, hp, wp)` planes with
    /// `(hp, wp) = padded_plane(h, w)`, zero border, data at (1, 1), and
    /// [`WINOGRAD_READ_SLACK`] floats after it; `out` is (c_out, h, w).
    pub fn run(&self, padded: &[f32], h: usize, w: usize, relu: bool, out: &mut [f32]) {
        let (hp, wp) = padded_plane(h, w);
        let plane = hp * wp;
        assert!(padded.len() >= self.c_in * plane + WINOGRAD_READ_SLACK, "winograd: padded input too short");
        assert_eq!(out.len(), self.c_out * h * w, "winograd: output size");
        assert!(available(), "winograd: AVX-512 kernel called on a CPU without AVX-512");
        let (tile_rows, tiles) = (hp / 2 - 1, wp / 2 - 1);
        let row_len = tiles.div_ceil(L) * L;
        let out_ptr = OutPtr(out.as_mut_ptr());
        (0..tile_rows).into_par_iter().for_each(|ty| {
            SCRATCH.with(|scratch| {
                let (v, m) = &mut *scratch.borrow_mut();
                v.resize(16 * self.c_in * row_len, 0.0);
                m.resize(16 * R * row_len, 0.0);
                let geometry = RowGeometry { ty, h, w, wp, plane, row_len };
                // SAFETY: AVX-512 checked above; reads stay inside `padded`
                // (the slack covers the last vector of the last row), and
                // tile row ty writes only output rows 2 ty and 2 ty + 1.
                unsafe { self.tile_row(padded, &geometry, relu, v, m, out_ptr) };
            });
        });
    }

    /// # Safety
    /// AVX-512F present; `padded` as in [`Self::run`]; no other task
    /// writes output rows 2 ty, 2 ty + 1.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_row(&self, padded: &[f32], g: &RowGeometry, relu: bool, v: &mut [f32], m: &mut [f32], out: OutPtr) {
        use std::arch::x86_64::*;
        let RowGeometry { ty, h, w, wp, plane, row_len } = *g;
        let vectors = row_len / L;
        // Input transform: v[xi][ci][tile].
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for ci in 0..self.c_in {
            for q in 0..vectors {
                let mut d = [[_mm512_setzero_ps(); 4]; 4];
                for (i, di) in d.iter_mut().enumerate() {
                    let p = padded.as_ptr().add(ci * plane + (2 * ty + i) * wp + 2 * L * q);
                    let (a, b) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(L)));
                    let (a2, b2) = (_mm512_loadu_ps(p.add(2)), _mm512_loadu_ps(p.add(L + 2)));
                    di[0] = _mm512_permutex2var_ps(a, even, b);
                    di[1] = _mm512_permutex2var_ps(a, odd, b);
                    di[2] = _mm512_permutex2var_ps(a2, even, b2);
                    di[3] = _mm512_permutex2var_ps(a2, odd, b2);
                }
                // B^T d: rows.
                let mut t = [[_mm512_setzero_ps(); 4]; 4];
                for j in 0..4 {
                    t[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
                    t[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
                    t[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
                    t[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
                }
                // (B^T d) B: columns.
                for (i, ti) in t.iter().enumerate() {
                    let cols = [
                        _mm512_sub_ps(ti[0], ti[2]),
                        _mm512_add_ps(ti[1], ti[2]),
                        _mm512_sub_ps(ti[2], ti[1]),
                        _mm512_sub_ps(ti[1], ti[3]),
                    ];
                    for (j, c) in cols.iter().enumerate() {
                        let xi = 4 * i + j;
                        _mm512_storeu_ps(v.as_mut_ptr().add((xi * self.c_in + ci) * row_len + L * q), *c);
                    }
                }
            }
        }
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let zero = _mm512_setzero_ps();
        for cb in 0..self.c_out.div_ceil(R) {
            // Products: m[xi][r][tile].
            for xi in 0..16 {
                let u = self.u.as_ptr().add((cb * 16 + xi) * self.c_in * R);
                let vx = v.as_ptr().add(xi * self.c_in * row_len);
                let mx = m.as_mut_ptr().add(xi * R * row_len);
                let mut q = 0;
                while q < vectors {
                    let step = (vectors - q).min(3);
                    let (vq, mq) = (vx.add(L * q), mx.add(L * q));
                    match step {
                        3 => product::<3>(u, vq, row_len, self.c_in, mq),
                        2 => product::<2>(u, vq, row_len, self.c_in, mq),
                        _ => product::<1>(u, vq, row_len, self.c_in, mq),
                    }
                    q += step;
                }
            }
            // Output transform, bias, ReLU, interleave and store.
            for r in 0..R.min(self.c_out - cb * R) {
                let co = cb * R + r;
                let bias = _mm512_set1_ps(self.bias[co]);
                for q in 0..vectors {
                    let mut s = [[_mm512_setzero_ps(); 4]; 4];
                    for (xi, sv) in s.iter_mut().flatten().enumerate() {
                        *sv = _mm512_loadu_ps(m.as_ptr().add((xi * R + r) * row_len + L * q));
                    }
                    let mut a = [[_mm512_setzero_ps(); 4]; 2];
                    for j in 0..4 {
                        a[0][j] = _mm512_add_ps(_mm512_add_ps(s[0][j], s[1][j]), s[2][j]);
                        a[1][j] = _mm512_sub_ps(_mm512_sub_ps(s[1][j], s[2][j]), s[3][j]);
                    }
                    for (dy, ai) in a.iter().enumerate() {
                        let y = 2 * ty + dy;
                        if y >= h {
                            continue;
                        }
                        let mut y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(ai[0], ai[1]), ai[2]), bias);
                        let mut y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(ai[1], ai[2]), ai[3]), bias);
                        if relu {
                            (y0, y1) = (_mm512_max_ps(y0, zero), _mm512_max_ps(y1, zero));
                        }
                        let x0 = 2 * L * q;
                        let dst = out.at((co * h + y) * w + x0);
                        let valid = w.saturating_sub(x0).min(2 * L);
                        let first = _mm512_permutex2var_ps(y0, lo, y1);
                        let second = _mm512_permutex2var_ps(y0, hi, y1);
                        if valid == 2 * L {
                            _mm512_storeu_ps(dst, first);
                            _mm512_storeu_ps(dst.add(L), second);
                        } else {
                            let mut buf = [0f32; 2 * L];
                            _mm512_storeu_ps(buf.as_mut_ptr(), first);
                            _mm512_storeu_ps(buf.as_mut_ptr().add(L), second);
                            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, valid);
                        }
                    }
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn tile_row(&self, _: &[f32], _: &RowGeometry, _: bool, _: &mut [f32], _: &mut [f32], _: OutPtr) {
        unreachable!("the AVX-512 kernel is only selected on x86-64")
    }
}

/// Where one row of tiles lies.
#[derive(Clone, Copy)]
struct RowGeometry {
    ty: usize,
    h: usize,
    w: usize,
    wp: usize,
    plane: usize,
    row_len: usize,
}

/// `m[r][16 vq + lane] = sum over ci of u[ci][r] * v[ci][16 vq + lane]` for
/// `V` vectors of tiles; rows of v and m are `stride` floats apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product<const V: usize>(u: *const f32, v: *const f32, stride: usize, c_in: usize, m: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for ci in 0..c_in {
        let vp = v.add(ci * stride);
        let mut x = [_mm512_setzero_ps(); V];
        for (k, xk) in x.iter_mut().enumerate() {
            *xk = _mm512_loadu_ps(vp.add(L * k));
        }
        let up = u.add(ci * R);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let ur = _mm512_set1_ps(*up.add(r));
            for k in 0..V {
                acc_r[k] = _mm512_fmadd_ps(ur, x[k], acc_r[k]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (k, a) in acc_r.iter().enumerate() {
            _mm512_storeu_ps(m.add(r * stride + L * k), *a);
        }
    }
}
