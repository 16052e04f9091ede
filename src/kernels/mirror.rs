//! Mirroring along the width, for flip augmentation and flip test-time
//! averaging: one tensor form and one row-major slice form, so that every
//! caller mirrors the same way.

use candle_core::{Result, Tensor};

/// (B, C, H, W) mirrored along its width (the last axis).
pub fn flip_width(x: &Tensor) -> Result<Tensor> {
    let w = x.dim(3)?;
    let index = Tensor::from_vec((0..w as u32).rev().collect::<Vec<_>>(), w, x.device())?;
    x.index_select(&index, 3)
}

/// A row-major image of `width` pixels of `channels` values each, mirrored
/// along its width (pixels reversed within each row, channels kept in order).
pub fn mirror_rows<T: Copy>(data: &[T], width: usize, channels: usize) -> Vec<T> {
    let row = width * channels;
    if row == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(data.len());
    for r in data.chunks_exact(row) {
        for px in r.chunks_exact(channels).rev() {
            out.extend_from_slice(px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn tensor_and_slice_forms_agree() {
        let (w, h, c) = (5usize, 3usize, 2usize);
        let hwc: Vec<f32> = (0..w * h * c).map(|i| i as f32).collect();
        let flipped = mirror_rows(&hwc, w, c);
        assert_eq!(&flipped[..4], &[8.0, 9.0, 6.0, 7.0]);
        let t = Tensor::from_vec(hwc, (1, h, w, c), &Device::Cpu).unwrap().permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
        let back = flip_width(&t).unwrap().permute((0, 2, 3, 1)).unwrap().flatten_all().unwrap();
        assert_eq!(back.to_vec1::<f32>().unwrap(), flipped);
    }
}
