//! Frames in and depth out, for every family: an optional crop (the
//! prompt families' NYU crop), the crop (or whole frame) resized to the
//! model's input with Pillow's filter (bicubic unless the family says
//! otherwise) and normalised; on the way out, the model's map resized
//! bilinearly to the crop's place in the output (the whole output without
//! a crop), NaN (no reading) outside it.

use crate::error::{Error, Result};
use crate::image::preprocess::Preprocessor;
use crate::image::ImageView;


#[derive(Debug, Clone)]
pub struct InputGeometry {
    crop: Option<Crop>,
    preprocessor: Preprocessor,
    align_corners: bool,
}

/// A crop given in the pixels of a reference frame (the release's NYU crop
/// of a 640x480 frame); a frame of another size is cut at the same
/// fractions of its width and height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    /// (left, top, right, bottom) in pixels of `frame`.
    pub edges: [usize; 4],
    /// (width, height) of the frame `edges` are given for.
    pub frame: [usize; 2],
}

impl Crop {
    /// The edges for a `(w, h)` frame: the reference's fractions, rounded,
    /// never empty.
    pub fn for_frame(&self, (w, h): (usize, usize)) -> [usize; 4] {
        let [l, t, r, b] = self.edges;
        let [fw, fh] = self.frame;
        if (w, h) == (fw, fh) {
            return self.edges;
        }
        let scale = |v: usize, out: usize, full: usize| ((v * out + full / 2) / full.max(1)).min(out);
        let left = scale(l, w, fw).min(w.saturating_sub(1));
        let right = scale(r, w, fw).clamp(left + 1, w.max(left + 1));
        let top = scale(t, h, fh).min(h.saturating_sub(1));
        let bottom = scale(b, h, fh).clamp(top + 1, h.max(top + 1));
        [left, top, right, bottom]
    }
}

/// Where the model's depth lands in an output map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

impl InputGeometry {
    /// A model's crop, input size, normalisation, resize filter and
    /// upsampling corners.
    pub fn from_parts(crop: Option<Crop>, preprocessor: Preprocessor, align_corners: bool) -> Self {
        Self { crop, preprocessor, align_corners }
    }

    pub fn crop(&self) -> Option<Crop> {
        self.crop
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// (width, height) of the tower's input.
    pub fn input_dims(&self) -> (usize, usize) {
        (self.preprocessor.width(), self.preprocessor.height())
    }

    /// Appends the normalised (3, H, W) planes of one frame.
    pub fn pixels_into(&self, image: &ImageView<'_>, out: &mut Vec<f32>) -> Result<()> {
        match self.crop {
            None => self.preprocessor.process_into(image, out),
            Some(crop) => {
                let (data, w, h) = cut(image, crop.for_frame((image.width(), image.height())))?;
                let view = ImageView::packed(&data, w, h, image.format())?;
                self.preprocessor.process_into(&view, out)
            }
        }
    }

    /// The crop's place in a `size` output of a `frame`-sized image (the
    /// whole output without a crop); crop edges scale with the output.
    pub fn region(&self, frame: (usize, usize), size: (usize, usize)) -> Region {
        let Some([l, t, r, b]) = self.crop.map(|c| c.for_frame(frame)) else {
            return Region { left: 0, top: 0, width: size.0, height: size.1 };
        };
        let (fw, fh) = frame;
        let (w, h) = size;
        let scale = |v: usize, out: usize, full: usize| ((v * out + full / 2) / full.max(1)).min(out);
        let left = scale(l, w, fw).min(w - 1);
        let right = scale(r, w, fw).clamp(left + 1, w);
        let top = scale(t, h, fh).min(h - 1);
        let bottom = scale(b, h, fh).clamp(top + 1, h);
        Region { left, top, width: right - left, height: bottom - top }
    }

    /// A `(gw, gh)` depth map as a `size` output map: resized into
    /// `region`, clamped to `range`, NaN elsewhere.
    pub fn place(&self, grid: &[f32], (gw, gh): (usize, usize), size: (usize, usize), region: Region, range: (f32, f32)) -> Vec<f32> {
        let (w, h) = size;
        let (lo, hi) = range;
        if !self.align_corners && region == (Region { left: 0, top: 0, width: w, height: h }) {
            // The whole output: the separable CPU kernel, the clamp fused in.
            return crate::image::postprocess::resize_bilinear_clamped(grid, gw, gh, w, h, lo, hi);
        }
        let inner = resize_bilinear(grid, gw, gh, region.width, region.height, self.align_corners);
        if region == (Region { left: 0, top: 0, width: w, height: h }) {
            return inner.into_iter().map(|v| v.clamp(lo, hi)).collect();
        }
        let mut out = vec![f32::NAN; w * h];
        for y in 0..region.height {
            let dst = (region.top + y) * w + region.left;
            for (d, s) in out[dst..dst + region.width].iter_mut().zip(&inner[y * region.width..(y + 1) * region.width]) {
                *d = s.clamp(lo, hi);
            }
        }
        out
    }
}

/// The crop's pixels, packed (a copy: the view's rows are not contiguous).
fn cut(image: &ImageView<'_>, [l, t, r, b]: [usize; 4]) -> Result<(Vec<u8>, usize, usize)> {
    if r > image.width() || b > image.height() {
        return Err(Error::InvalidImage(format!(
            "the frame is {}x{} but the model's crop [{l}, {t}, {r}, {b}] needs at least {r}x{b}",
            image.width(),
            image.height()
        )));
    }
    let ch = image.format().channels();
    let (w, h) = (r - l, b - t);
    let mut data = Vec::with_capacity(w * h * ch);
    for y in t..b {
        data.extend_from_slice(&image.row(y)[l * ch..r * ch]);
    }
    Ok((data, w, h))
}

/// Bilinear resampling of one plane as PyTorch's `F.interpolate(mode=
/// "bilinear")` computes it, with either align_corners.
pub fn resize_bilinear(src: &[f32], in_w: usize, in_h: usize, out_w: usize, out_h: usize, align_corners: bool) -> Vec<f32> {
    let taps = |in_len: usize, out_len: usize| -> Vec<(usize, usize, f32)> {
        (0..out_len)
            .map(|d| {
                let s = if align_corners {
                    if out_len > 1 {
                        d as f32 * ((in_len - 1) as f32 / (out_len - 1) as f32)
                    } else {
                        0.0
                    }
                } else {
                    ((d as f32 + 0.5) * (in_len as f32 / out_len as f32) - 0.5).max(0.0)
                };
                let i0 = (s as usize).min(in_len - 1);
                let i1 = (i0 + 1).min(in_len - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let xs = taps(in_w, out_w);
    let ys = taps(in_h, out_h);
    let mut out = Vec::with_capacity(out_w * out_h);
    for &(y0, y1, ly) in &ys {
        for &(x0, x1, lx) in &xs {
            let top = (1.0 - lx) * src[y0 * in_w + x0] + lx * src[y0 * in_w + x1];
            let bottom = (1.0 - lx) * src[y1 * in_w + x0] + lx * src[y1 * in_w + x1];
            out.push((1.0 - ly) * top + ly * bottom);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DepthClipConfig;
    use crate::image::PixelFormat;
    use candle_core::{Device, Tensor};

    #[test]
    fn bilinear_matches_candle_both_ways() {
        let (w, h) = (5, 4);
        let src: Vec<f32> = (0..w * h).map(|i| ((i * 13) % 7) as f32 - 2.0).collect();
        let t = Tensor::from_vec(src.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
        for align in [false, true] {
            for (ow, oh) in [(17, 13), (5, 4), (3, 2), (1, 1)] {
                let reference = t.upsample_bilinear2d(oh, ow, align).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let ours = resize_bilinear(&src, w, h, ow, oh, align);
                let worst = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst < 1e-5, "{ow}x{oh} align {align}: {worst}");
            }
        }
    }

    #[test]
    fn crop_region_scales_with_the_output() {
        let cfg = DepthClipConfig::from_yaml_str("crop: [60, 56, 604, 472]").unwrap();
        let g = cfg.geometry();
        assert_eq!(g.region((640, 480), (640, 480)), Region { left: 60, top: 56, width: 544, height: 416 });
        assert_eq!(g.region((640, 480), (320, 240)), Region { left: 30, top: 28, width: 272, height: 208 });
        let plain = DepthClipConfig::default().geometry();
        assert_eq!(plain.region((640, 480), (64, 48)), Region { left: 0, top: 0, width: 64, height: 48 });
    }

    #[test]
    fn other_frame_sizes_are_cut_at_the_crops_fractions() {
        let cfg = DepthClipConfig::from_yaml_str("crop: [60, 56, 604, 472]").unwrap();
        let g = cfg.geometry();
        // 1280x720: the same fractions of the width and height as of 640x480.
        let crop = g.crop().unwrap();
        assert_eq!(crop.for_frame((640, 480)), [60, 56, 604, 472]);
        assert_eq!(crop.for_frame((1280, 720)), [120, 84, 1208, 708]);
        assert_eq!(g.region((1280, 720), (1280, 720)), Region { left: 120, top: 84, width: 1088, height: 624 });
        assert_eq!(g.region((1280, 720), (640, 360)), Region { left: 60, top: 42, width: 544, height: 312 });
        // A frame smaller than the reference is cut too, never refused.
        let px: Vec<u8> = (0..100 * 100 * 3).map(|i| (i % 251) as u8).collect();
        let view = ImageView::packed(&px, 100, 100, PixelFormat::Rgb8).unwrap();
        let mut got = Vec::new();
        g.pixels_into(&view, &mut got).unwrap();
        let [l, t, r, b] = crop.for_frame((100, 100));
        assert_eq!([l, t, r, b], [9, 12, 94, 98]);
        let (data, w, h) = cut(&view, [l, t, r, b]).unwrap();
        let mut want = Vec::new();
        g.preprocessor().process_into(&ImageView::packed(&data, w, h, PixelFormat::Rgb8).unwrap(), &mut want).unwrap();
        assert_eq!(got, want);
        // The config refuses a crop that does not fit its own frame.
        assert!(DepthClipConfig::from_yaml_str("crop: [60, 56, 700, 472]").unwrap_err().contains("crop_frame"));
    }
}
