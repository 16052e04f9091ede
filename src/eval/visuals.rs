//! Pictures of predictions for people: the image, the ground truth, the
//! prediction (one colour scale for both, over the ground truth's range)
//! and the relative error (black: exact, through red and yellow to white
//! at 50 % or more; dark grey where there is no ground truth), side by side.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::colormap::{colorize, ColourOrder};

/// The relative-error colour at `e` (0 = exact, 0.5 and above = white).
fn hot(e: f32) -> [u8; 3] {
    let t = (e / 0.5).clamp(0.0, 1.0) * 3.0;
    let c = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(t), c(t - 1.0), c(t - 2.0)]
}

/// Enlarges a small picture by an integer factor (nearest), so maps of a
/// few dozen pixels are still readable.
fn enlarge(px: Vec<u8>, w: usize, h: usize, min_height: usize) -> (Vec<u8>, usize, usize) {
    let k = min_height.div_ceil(h.max(1)).max(1);
    if k == 1 {
        return (px, w, h);
    }
    let (ow, oh) = (w * k, h * k);
    let mut out = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            let s = ((y / k) * w + x / k) * 3;
            out[(y * ow + x) * 3..(y * ow + x) * 3 + 3].copy_from_slice(&px[s..s + 3]);
        }
    }
    (out, ow, oh)
}

/// One row of `RGB | GT | prediction | error`, each `w` x `h` (enlarged
/// when under 120 pixels high), with a gap; returns (pixels, width, height).
pub fn panel_row(rgb: &[u8], gt: Option<&[f32]>, pred: &[f32], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
    let (px, tw, th) = panel_row_native(rgb, gt, pred, w, h);
    enlarge(px, tw, th, 120)
}

fn panel_row_native(rgb: &[u8], gt: Option<&[f32]>, pred: &[f32], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
    let gap = 4;
    let total_w = 4 * w + 3 * gap;
    let mut out = vec![255u8; total_w * h * 3];
    let valid = |g: f32| g.is_finite() && g > 0.0;
    let (near, far) = gt
        .and_then(|g| {
            let v: Vec<f32> = g.iter().copied().filter(|&x| valid(x)).collect();
            crate::image::colormap::finite_range(&v)
        })
        .or_else(|| crate::image::colormap::finite_range(pred))
        .unwrap_or((0.0, 1.0));
    let gt_img = match gt {
        Some(g) => colorize(g, near, far, ColourOrder::Rgb),
        None => vec![40u8; w * h * 3],
    };
    let pred_img = colorize(pred, near, far, ColourOrder::Rgb);
    let err_img: Vec<u8> = match gt {
        Some(g) => g
            .iter()
            .zip(pred)
            .flat_map(|(&g, &p)| if valid(g) { hot((p - g).abs() / g) } else { [40, 40, 40] })
            .collect(),
        None => vec![40u8; w * h * 3],
    };
    for (k, img) in [rgb, &gt_img, &pred_img, &err_img].into_iter().enumerate() {
        let x0 = k * (w + gap);
        for y in 0..h {
            let dst = (y * total_w + x0) * 3;
            out[dst..dst + w * 3].copy_from_slice(&img[y * w * 3..(y + 1) * w * 3]);
        }
    }
    (out, total_w, h)
}

/// Stacks rows of equal width vertically with a gap.
pub fn stack(rows: &[(Vec<u8>, usize, usize)]) -> Option<(Vec<u8>, usize, usize)> {
    let w = rows.iter().map(|r| r.1).max()?;
    let gap = 4;
    let h: usize = rows.iter().map(|r| r.2).sum::<usize>() + gap * rows.len().saturating_sub(1);
    let mut out = vec![255u8; w * h * 3];
    let mut y0 = 0;
    for (px, rw, rh) in rows {
        for y in 0..*rh {
            let dst = ((y0 + y) * w) * 3;
            out[dst..dst + rw * 3].copy_from_slice(&px[y * rw * 3..(y + 1) * rw * 3]);
        }
        y0 += rh + gap;
    }
    Some((out, w, h))
}

pub fn save_png(path: &Path, pixels: &[u8], w: usize, h: usize) -> Result<()> {
    image::save_buffer(path, pixels, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Io { path: path.to_owned(), source: std::io::Error::other(e.to_string()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_holds_four_panels() {
        let (w, h) = (3, 2);
        let rgb = vec![9u8; w * h * 3];
        let gt = vec![1.0f32, 2.0, 0.0, 1.5, 1.0, 2.0];
        let pred = gt.iter().map(|g| g * 1.1).collect::<Vec<_>>();
        let (px, tw, th) = panel_row_native(&rgb, Some(&gt), &pred, w, h);
        assert_eq!((tw, th), (4 * w + 12, h));
        assert_eq!(panel_row(&rgb, Some(&gt), &pred, w, h).2, 120);
        assert_eq!(&px[0..3], &[9, 9, 9]);
        // Missing ground truth is dark grey in the error panel.
        let x = 3 * (w + 4) + 2;
        assert_eq!(&px[x * 3..x * 3 + 3], &[40, 40, 40]);
        assert_eq!(hot(0.0), [0, 0, 0]);
        assert_eq!(hot(1.0), [255, 255, 255]);
    }
}
