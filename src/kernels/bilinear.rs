//! Bilinear resampling of f32 planes with align_corners = false, exactly as
//! PyTorch's `F.interpolate(mode="bilinear")` computes it: source
//! coordinate `(dst + 0.5) * in / out - 0.5`, clamped at 0. Separable: each
//! source row is resampled horizontally once, then output rows blend two
//! of those.

/// Per output coordinate: the two source indices and their weights.
pub struct Axis {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w1: Vec<f32>,
}

impl Axis {
    pub fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f32 / out_size as f32;
        let mut axis = Axis { i0: Vec::with_capacity(out_size), i1: Vec::with_capacity(out_size), w1: Vec::with_capacity(out_size) };
        for d in 0..out_size {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(in_size - 1);
            let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
            axis.i0.push(i0);
            axis.i1.push(i1);
            axis.w1.push(src - i0 as f32);
        }
        axis
    }
}

/// Resizes a row-major `in_w` x `in_h` map to `out_w` x `out_h`, clamping
/// every value to `[lo, hi]`.
/// `src` (in_h x in_w) -> `out` (out_h x out_w); `finish` maps every
/// output value (a clamp, or the identity). `rows` is scratch.
#[allow(clippy::too_many_arguments)]
pub fn resize_plane(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out: &mut [f32],
    out_w: usize,
    out_h: usize,
    rows: &mut Vec<f32>,
    finish: impl Fn(f32) -> f32,
) {
    assert_eq!(src.len(), in_w * in_h, "source size");
    assert_eq!(out.len(), out_w * out_h, "output size");
    let xs = Axis::new(in_w, out_w);
    let ys = Axis::new(in_h, out_h);
    rows.clear();
    rows.resize(in_h * out_w, 0.0);
    for (y, row) in rows.chunks_exact_mut(out_w).enumerate() {
        let s = &src[y * in_w..(y + 1) * in_w];
        for (x, out) in row.iter_mut().enumerate() {
            let w1 = xs.w1[x];
            *out = (1.0 - w1) * s[xs.i0[x]] + w1 * s[xs.i1[x]];
        }
    }
    for (y, row) in out.chunks_exact_mut(out_w).enumerate() {
        let w1 = ys.w1[y];
        let w0 = 1.0 - w1;
        let r0 = &rows[ys.i0[y] * out_w..(ys.i0[y] + 1) * out_w];
        let r1 = &rows[ys.i1[y] * out_w..(ys.i1[y] + 1) * out_w];
        for ((o, a), b) in row.iter_mut().zip(r0).zip(r1) {
            *o = finish(w0 * a + w1 * b);
        }
    }
}
