//! Camera frame -> model input, as the reference does it: squash the whole
//! image to S x S (or the model's W x H) with Pillow's bicubic (see
//! `pil_resize`), /255, per-channel mean/std, RGB planes.
//!
//! The resize runs on the frame's own layout (the colour channels are
//! independent), so the channel shuffle and normalisation touch only the
//! S x S result, not the camera-sized frame.

use std::borrow::Cow;


use crate::error::Result;
use crate::image::{ImageView, PixelFormat};
use crate::image::pil_resize::{resize_with, Filter};

/// Normalisation settings for one backbone.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    width: usize,
    height: usize,
    /// `lut[c][v] = (v / 255 - mean[c]) / std[c]`
    lut: [[f32; 256]; 3],
    /// Pillow's filter for the resize (bicubic unless told).
    filter: Filter,
}

impl Preprocessor {
    pub fn new(size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self::new_rect(size, size, mean, std)
    }

    /// A `width` x `height` input (not square: DepthCLIP's 544 x 416).
    pub fn new_rect(width: usize, height: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for c in 0..3 {
            for v in 0..256 {
                lut[c][v] = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        Self { width, height, lut, filter: Filter::Bicubic }
    }

    /// The same preparation resizing with another Pillow filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// The model's input side length S (the width of a non-square input).
    pub fn size(&self) -> usize {
        self.width
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Appends the normalised (3, H, W) planes of `image` to `out`.
    pub fn process_into(&self, image: &ImageView<'_>, out: &mut Vec<f32>) -> Result<()> {
        let resized = self.resize(image)?;
        let s2 = self.width * self.height;
        let ch = image.format().channels();
        // Source channel feeding R, G and B.
        let order: [usize; 3] = match image.format() {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => [0, 1, 2],
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => [2, 1, 0],
            PixelFormat::Mono8 => [0, 0, 0],
        };
        let start = out.len();
        out.resize(start + 3 * s2, 0.0);
        let planes = &mut out[start..];
        for (c, &src_c) in order.iter().enumerate() {
            let lut = &self.lut[c];
            let plane = &mut planes[c * s2..(c + 1) * s2];
            for (dst, px) in plane.iter_mut().zip(resized.chunks_exact(ch)) {
                *dst = lut[px[src_c] as usize];
            }
        }
        Ok(())
    }

    /// Normalised (3, H, W) planes of one image.
    pub fn process(&self, image: &ImageView<'_>) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(3 * self.width * self.height);
        self.process_into(image, &mut out)?;
        Ok(out)
    }

    /// Packed W x H pixels in the frame's own layout.
    fn resize<'a>(&self, image: &ImageView<'a>) -> Result<Cow<'a, [u8]>> {
        let (w, h) = (self.width, self.height);
        if (image.width(), image.height()) == (w, h) {
            if let Some(pixels) = image.packed_pixels() {
                return Ok(Cow::Borrowed(pixels));
            }
        }
        Ok(Cow::Owned(resize_with(image, w, h, self.filter)))
    }
}
