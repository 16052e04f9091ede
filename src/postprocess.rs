//! The model's S x S depth map to the requested size: bilinear with
//! align_corners = false, exactly as PyTorch's `F.interpolate` computes it
//! (source coordinate `(dst + 0.5) * in / out - 0.5`, clamped at 0), and the
//! clamp to the depth range fused into the same pass. On the CPU this is
//! one pass over the output instead of candle's resize, clamp and copy.

/// Per output coordinate: the two source indices and their weights.
struct Axis {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w1: Vec<f32>,
}

impl Axis {
    fn new(in_size: usize, out_size: usize) -> Self {
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
pub fn resize_bilinear_clamped(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    lo: f32,
    hi: f32,
) -> Vec<f32> {
    assert_eq!(src.len(), in_w * in_h, "source size");
    let xs = Axis::new(in_w, out_w);
    let ys = Axis::new(in_h, out_h);
    // Each source row interpolated along x once, reused by every output row
    // that reads it.
    let mut rows = vec![0f32; in_h * out_w];
    for (y, row) in rows.chunks_exact_mut(out_w).enumerate() {
        let s = &src[y * in_w..(y + 1) * in_w];
        for (x, out) in row.iter_mut().enumerate() {
            let w1 = xs.w1[x];
            *out = (1.0 - w1) * s[xs.i0[x]] + w1 * s[xs.i1[x]];
        }
    }
    let mut out = vec![0f32; out_w * out_h];
    for (y, row) in out.chunks_exact_mut(out_w).enumerate() {
        let w1 = ys.w1[y];
        let w0 = 1.0 - w1;
        let r0 = &rows[ys.i0[y] * out_w..(ys.i0[y] + 1) * out_w];
        let r1 = &rows[ys.i1[y] * out_w..(ys.i1[y] + 1) * out_w];
        for ((o, a), b) in row.iter_mut().zip(r0).zip(r1) {
            *o = (w0 * a + w1 * b).clamp(lo, hi);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_candle_pytorch_style_bilinear() {
        let (iw, ih) = (7, 5);
        let src: Vec<f32> = (0..iw * ih).map(|i| ((i * 37) % 11) as f32 * 0.7 - 2.0).collect();
        let t = Tensor::from_vec(src.clone(), (1, 1, ih, iw), &Device::Cpu).unwrap();
        for (ow, oh) in [(7, 5), (16, 9), (3, 2), (1, 1), (640, 480)] {
            let reference = t.upsample_bilinear2d(oh, ow, false).unwrap().clamp(-1f32, 3f32).unwrap();
            let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let ours = resize_bilinear_clamped(&src, iw, ih, ow, oh, -1.0, 3.0);
            let worst = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-5, "{ow}x{oh}: {worst}");
        }
    }
}
