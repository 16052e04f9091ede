//! Separable bicubic resampling that reproduces Pillow's `Image.resize(...,
//! BICUBIC)` bit for bit on 8-bit images, which is what the reference
//! preprocessing (torchvision / PIL) feeds CLIP. General-purpose resizers
//! differ from it by a few grey levels; over a whole frame that moves the
//! depth by about 1 %.
//!
//! The method: for each output sample, a cubic kernel (a = -0.5) stretched
//! by the shrink factor (that is the antialiasing), its taps normalised to
//! sum to one, then turned into 22-bit fixed point; two passes, each
//! rounded and clipped to 8 bits, in Pillow's order (see
//! [`vertical_pass_first`]).

use crate::image::ImageView;

/// Fixed-point fraction bits of the 8-bit path (32 - 8 - 2).
pub const PRECISION_BITS: u32 = 22;
/// Pillow's resampling filters this port reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// `Image.BICUBIC` (a = -0.5, support 2): CLIP's preprocessing.
    #[default]
    Bicubic,
    /// `Image.BILINEAR` (triangle, support 1): torchvision's `Resize` default.
    Bilinear,
}

impl Filter {
    /// Half-width of the kernel at scale 1.
    fn support(self) -> f64 {
        match self {
            Self::Bicubic => 2.0,
            Self::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Bicubic => bicubic(x),
            Self::Bilinear => (1.0 - x.abs()).max(0.0),
        }
    }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output sample: the first input sample and fixed-point weights.
struct Taps {
    starts: Vec<usize>,
    counts: Vec<usize>,
    /// `width` weights per output sample, zero-padded.
    weights: Vec<i32>,
    width: usize,
}

impl Taps {
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let width = support.ceil() as usize * 2 + 1;
        let mut taps = Taps {
            starts: Vec::with_capacity(out_size),
            counts: Vec::with_capacity(out_size),
            weights: vec![0; out_size * width],
            width,
        };
        let mut k = vec![0f64; width];
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5) as isize).max(0) as usize;
            let hi = ((center + support + 0.5) as isize).min(in_size as isize) as usize;
            let count = hi.saturating_sub(lo).min(width);
            let mut sum = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(count) {
                *kx = filter.weight((x as f64 + lo as f64 - center + 0.5) / filter_scale);
                sum += *kx;
            }
            let row = &mut taps.weights[i * width..(i + 1) * width];
            for x in 0..count {
                let w = if sum != 0.0 { k[x] / sum } else { k[x] };
                let fixed = w * (1u32 << PRECISION_BITS) as f64;
                row[x] = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
            }
            taps.starts.push(lo);
            taps.counts.push(count);
        }
        taps
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        let w = &self.weights[i * self.width..i * self.width + self.counts[i]];
        (self.starts[i], w)
    }
}

/// Pillow's bicubic taps from `in_size` to `out_size` samples as a dense
/// (in_size x out_size) matrix of its fixed-point weights (integers, in
/// units of 2^-[`PRECISION_BITS`]): `row (1 x in) * matrix` is one pass
/// before Pillow's rounding. For resizing with matrix products.
pub fn tap_matrix_transposed(in_size: usize, out_size: usize) -> Vec<i32> {
    let taps = Taps::new(in_size, out_size, Filter::Bicubic);
    let mut m = vec![0; in_size * out_size];
    for o in 0..out_size {
        let (start, w) = taps.of(o);
        for (k, &wk) in w.iter().enumerate() {
            m[(start + k) * out_size + o] = wk;
        }
    }
    m
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding offset. Accumulators are i32 as in Pillow: normalised weights
/// (absolute sum below 1.3 x 2^22) times 255 stay below 2^31.
const ROUND: i32 = 1 << (PRECISION_BITS - 1);

/// One row along x, `C` channels per pixel.
fn horizontal_row<const C: usize>(row: &[u8], taps: &Taps, out_row: &mut [u8]) {
    for (xo, px) in out_row.chunks_exact_mut(C).enumerate() {
        let (start, w) = taps.of(xo);
        let mut acc = [ROUND; C];
        for (k, &wk) in w.iter().enumerate() {
            let src = &row[(start + k) * C..(start + k + 1) * C];
            for c in 0..C {
                acc[c] += src[c] as i32 * wk;
            }
        }
        for c in 0..C {
            px[c] = clip8(acc[c]);
        }
    }
}

/// Whether Pillow resamples along columns before rows: since Pillow 13 it
/// does when the vertical pass removes more than twice as many rows as the
/// horizontal pass removes columns (before, rows always came first). The
/// order changes the 8-bit rounding between the passes, so a port must
/// follow it; portrait frames squashed to a square (e.g. 720x1280 to
/// 224x224) take the vertical-first order.
pub fn vertical_pass_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let (dw, dh) = (in_w as i64 - out_w as i64, in_h as i64 - out_h as i64);
    dh > 0 && dh > 2 * dw
}

/// Resizes to `out_w` x `out_h`, keeping the pixel layout; the result is
/// packed (no row padding).
pub fn resize_bicubic(src: &ImageView<'_>, out_w: usize, out_h: usize) -> Vec<u8> {
    resize_with(src, out_w, out_h, Filter::Bicubic)
}

/// Resizes with Pillow's `filter`, keeping the pixel layout; packed.
pub fn resize_with(src: &ImageView<'_>, out_w: usize, out_h: usize, filter: Filter) -> Vec<u8> {
    let ch = src.format().channels();
    let (in_w, in_h) = (src.width(), src.height());
    // Straight from the (possibly padded) source rows.
    let source: Vec<&[u8]> = (0..in_h).map(|y| src.row(y)).collect();
    if vertical_pass_first(in_w, in_h, out_w, out_h) {
        let tall = vertical_pass(&source, out_h, filter);
        let rows: Vec<&[u8]> = tall.chunks_exact(in_w * ch).collect();
        horizontal_pass(&rows, ch, out_w, filter)
    } else {
        let wide = horizontal_pass(&source, ch, out_w, filter);
        let rows: Vec<&[u8]> = wide.chunks_exact(out_w * ch).collect();
        vertical_pass(&rows, out_h, filter)
    }
}

/// Each row resampled to `out_w` pixels of `ch` bytes; packed.
fn horizontal_pass(rows: &[&[u8]], ch: usize, out_w: usize, filter: Filter) -> Vec<u8> {
    let in_w = rows.first().map_or(0, |r| r.len() / ch);
    if out_w == in_w {
        return rows.concat();
    }
    let taps = Taps::new(in_w, out_w, filter);
    let mut out = vec![0u8; out_w * ch * rows.len()];
    for (row, out_row) in rows.iter().zip(out.chunks_exact_mut(out_w * ch)) {
        match ch {
            1 => horizontal_row::<1>(row, &taps, out_row),
            3 => horizontal_row::<3>(row, &taps, out_row),
            _ => horizontal_row::<4>(row, &taps, out_row),
        }
    }
    out
}

/// The rows resampled to `out_h` rows: whole rows at a time (vectorises).
fn vertical_pass(rows: &[&[u8]], out_h: usize, filter: Filter) -> Vec<u8> {
    if out_h == rows.len() {
        return rows.concat();
    }
    let row_len = rows.first().map_or(0, |r| r.len());
    let taps = Taps::new(rows.len(), out_h, filter);
    let mut out = vec![0u8; row_len * out_h];
    let mut acc = vec![0i32; row_len];
    for (yo, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (start, w) = taps.of(yo);
        acc.fill(ROUND);
        for (k, &wk) in w.iter().enumerate() {
            for (a, &v) in acc.iter_mut().zip(rows[start + k]) {
                *a += v as i32 * wk;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::PixelFormat;

    #[test]
    fn weights_sum_to_one_and_identity_is_exact() {
        for (i, o) in [(640, 224), (480, 224), (224, 224), (100, 224), (3, 1)] {
            let t = Taps::new(i, o, Filter::Bicubic);
            for j in 0..o {
                let s: i64 = t.of(j).1.iter().map(|&w| w as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= t.counts[j] as i64, "{i}->{o} at {j}: {s}");
                let abs: i64 = t.of(j).1.iter().map(|&w| (w as i64).abs()).sum();
                assert!(abs * 255 + (ROUND as i64) < i32::MAX as i64, "{i}->{o} at {j}: i32 overflow possible");
            }
        }
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
        let view = ImageView::packed(&data, 5, 4, PixelFormat::Rgb8).unwrap();
        assert_eq!(resize_bicubic(&view, 5, 4), data);
    }

    #[test]
    fn constant_images_stay_constant_and_padding_is_ignored() {
        // 7x3 mono, stride 9 with junk in the padding.
        let mut data = vec![0u8; 9 * 3];
        for y in 0..3 {
            data[y * 9..y * 9 + 7].fill(77);
            data[y * 9 + 7..y * 9 + 9].fill(255);
        }
        let view = ImageView::new(&data, 7, 3, 9, PixelFormat::Mono8).unwrap();
        assert!(resize_bicubic(&view, 3, 2).iter().all(|&v| v == 77));
        assert!(resize_bicubic(&view, 11, 5).iter().all(|&v| v == 77));
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        assert!(!vertical_pass_first(640, 480, 224, 224), "landscape: rows first");
        assert!(!vertical_pass_first(360, 480, 224, 224), "256 rows vs 136 columns: rows first");
        assert!(vertical_pass_first(333, 517, 224, 224), "293 rows vs 109 columns");
        assert!(vertical_pass_first(720, 1280, 224, 224));
        assert!(vertical_pass_first(224, 500, 224, 224) && !vertical_pass_first(96, 160, 224, 224));
    }

    #[test]
    fn kernel_is_catmull_rom() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert!((bicubic(0.5) - 0.5625).abs() < 1e-12);
        assert!((bicubic(1.5) + 0.0625).abs() < 1e-12);
    }
}
