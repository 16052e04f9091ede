//! The model's S x S depth map to the requested size: bilinear with
//! align_corners = false, exactly as PyTorch's `F.interpolate` computes it
//! (source coordinate `(dst + 0.5) * in / out - 0.5`, clamped at 0), and the
//! clamp to the depth range fused into the same pass. On the CPU this is
//! one pass over the output instead of candle's resize, clamp and copy.

use crate::kernels::bilinear::resize_plane;

/// `src` (in_h x in_w) resized to out_w x out_h and clamped to [lo, hi].
pub fn resize_bilinear_clamped(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    lo: f32,
    hi: f32,
) -> Vec<f32> {
    let mut out = vec![0f32; out_w * out_h];
    resize_plane(src, in_w, in_h, &mut out, out_w, out_h, &mut Vec::new(), |v| v.clamp(lo, hi));
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
