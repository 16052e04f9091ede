//! ROS image payloads to the 8-bit images the model takes, without ROS types
//! (the node copies the message fields into [`RawImage`] by reference).
//!
//! 8-bit colour and mono encodings are borrowed as they are (zero copy, row
//! padding allowed). `mono16` / `16UC1` (IR and thermal cameras) are turned
//! into mono8 with a robust per-frame contrast stretch, see
//! [`mono16_to_mono8`]. `sensor_msgs/CompressedImage` payloads from
//! image_transport's `compressed` transport (JPEG, PNG) are decoded with
//! the `image` crate under size limits.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::error::{Error, Result};
use crate::image::view::check_layout;
use crate::image::{ImageView, PixelFormat};

/// The largest width or height accepted from a compressed payload; checked
/// from the header before the decoder allocates.
pub const MAX_DECODED_DIMENSION: u32 = 16384;

/// The fields of a `sensor_msgs/Image`, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RawImage<'a> {
    pub encoding: &'a str,
    pub width: u32,
    pub height: u32,
    /// Bytes per row, padding included.
    pub step: u32,
    pub is_bigendian: bool,
    pub data: &'a [u8],
}

/// An owned 8-bit image (packed rows): a converted or decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// `Rgb8` or `Mono8`.
    pub format: PixelFormat,
}

impl DecodedImage {
    pub fn view(&self) -> Result<ImageView<'_>> {
        ImageView::packed(&self.data, self.width, self.height, self.format)
    }
}

/// A frame ready for the model: the message's own bytes when they are
/// already 8-bit, or a converted copy.
#[derive(Debug, Clone)]
pub enum ModelImage<'a> {
    Borrowed(ImageView<'a>),
    Owned(DecodedImage),
}

impl ModelImage<'_> {
    pub fn view(&self) -> Result<ImageView<'_>> {
        match self {
            ModelImage::Borrowed(v) => Ok(*v),
            ModelImage::Owned(d) => d.view(),
        }
    }

    pub fn is_borrowed(&self) -> bool {
        matches!(self, ModelImage::Borrowed(_))
    }
}

impl<'a> RawImage<'a> {
    /// Validates the message and returns an 8-bit image: borrowed for
    /// `rgb8`, `bgr8`, `rgba8`, `bgra8`, `mono8` (and `8UC1`/`8UC3`),
    /// converted for little-endian `mono16`/`16UC1`. Every rejection says
    /// why: unknown encoding, big-endian 16-bit data, or a buffer that breaks
    /// [`check_layout`] (zero size, `step` below `width * bytes per pixel`,
    /// data short of the last row's pixels).
    pub fn to_model_image(&self) -> Result<ModelImage<'a>> {
        let enc = self.encoding;
        let bpp = if let Some(f) = PixelFormat::from_ros_encoding(enc) {
            f.channels()
        } else if is_mono16(enc) {
            2
        } else {
            return Err(Error::InvalidImage(format!(
                "unsupported encoding {enc:?} \
                 (expected rgb8, bgr8, rgba8, bgra8, mono8, mono16 or 16UC1)"
            )));
        };
        let (w, h, step) = (self.width as usize, self.height as usize, self.step as usize);
        let row_bytes = check_layout(&format!("{enc} image"), w, h, step, bpp, self.data.len())?;
        if let Some(f) = PixelFormat::from_ros_encoding(enc) {
            return Ok(ModelImage::Borrowed(ImageView::new(
                self.data, w, h, step, f,
            )?));
        }
        if self.is_bigendian {
            return Err(Error::InvalidImage(format!(
                "big-endian {enc} is not supported (is_bigendian = true)"
            )));
        }
        let pixels: Vec<u16> = (0..h)
            .flat_map(|y| self.data[y * step..y * step + row_bytes].chunks_exact(2))
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(ModelImage::Owned(DecodedImage {
            data: mono16_to_mono8(&pixels),
            width: w,
            height: h,
            format: PixelFormat::Mono8,
        }))
    }
}

fn is_mono16(encoding: &str) -> bool {
    matches!(encoding, "mono16" | "16UC1")
}

/// 16-bit intensities to 8 bits by a per-frame percentile stretch: the
/// 0.5th..99.5th percentile range maps linearly onto 0..255, values outside
/// clamp.
///
/// Why not `>> 8`: most 16-bit IR/thermal cameras use 10-14 bits, or a
/// small part of the range (raw thermal counts), so a fixed shift gives a
/// nearly black image. Why not plain min-max (cv_bridge's display scaling):
/// one hot pixel or specular glint, common in active IR, squashes the whole
/// scene into a few grey levels. The percentile stretch is the automatic
/// gain control thermal cameras apply and keeps the contrast the model
/// needs; the price is that absolute brightness is not comparable across
/// frames, which a monocular depth model does not rely on. A frame with no
/// spread (lo == hi) falls back to `>> 8`.
pub fn mono16_to_mono8(pixels: &[u16]) -> Vec<u8> {
    if pixels.is_empty() {
        return Vec::new();
    }
    let mut hist = vec![0u32; 1 << 16];
    for &p in pixels {
        hist[p as usize] += 1;
    }
    let n = pixels.len() as u64;
    // Smallest value whose cumulative count exceeds `rank` pixels.
    let percentile = |rank: u64| -> u16 {
        let mut seen = 0u64;
        for (v, &c) in hist.iter().enumerate() {
            seen += u64::from(c);
            if seen > rank {
                return v as u16;
            }
        }
        u16::MAX
    };
    let lo = percentile(n * 5 / 1000);
    let hi = percentile((n * 995 / 1000).min(n - 1));
    if hi <= lo {
        return pixels.iter().map(|&p| (p >> 8) as u8).collect();
    }
    let scale = 255.0 / f32::from(hi - lo);
    pixels
        .iter()
        .map(|&p| (f32::from(p.saturating_sub(lo)) * scale + 0.5).min(255.0) as u8)
        .collect()
}

/// The compression named by a `sensor_msgs/CompressedImage` `format`:
/// image_transport writes `"<encoding>; <codec> compressed <encoding>"`,
/// older publishers just `"jpeg"` / `"png"`. `None` when it names none.
fn compression_of(format: &str) -> Option<&str> {
    let part = format.split_once(';').map_or(format, |(_, rest)| rest);
    part.split_whitespace().next()
}

/// Decodes a `sensor_msgs/CompressedImage` payload to an owned RGB8 image
/// (Mono8 for grayscale files; 16-bit grayscale PNG goes through
/// [`mono16_to_mono8`], alpha is dropped). The codec comes from `format`
/// (see above; an empty format is guessed from the data). Corrupt data,
/// unsupported codecs (e.g. `compressedDepth`) and images larger than
/// [`MAX_DECODED_DIMENSION`] on a side are errors, never panics; the size is
/// checked from the header before the pixel buffer is allocated.
pub fn decode_compressed(format: &str, data: &[u8]) -> Result<DecodedImage> {
    if data.is_empty() {
        return Err(Error::InvalidImage("compressed image has no data".into()));
    }
    let image_format = match compression_of(format)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpeg" | "jpg") => Some(ImageFormat::Jpeg),
        Some("png") => Some(ImageFormat::Png),
        None => None,
        Some(other) => {
            return Err(Error::InvalidImage(format!(
                "unsupported compressed format {format:?} ({other}); expected jpeg or png"
            )))
        }
    };
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let mut reader = ImageReader::new(Cursor::new(data));
        match image_format {
            Some(f) => reader.set_format(f),
            None => {
                reader = reader
                    .with_guessed_format()
                    .map_err(|e| Error::InvalidImage(format!("cannot read compressed image: {e}")))?
            }
        }
        Ok(reader)
    };
    // The size from the header first, so that an absurd one is named as
    // such rather than as whatever the decoder would stumble on.
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| Error::InvalidImage(format!("cannot decode {format:?} image: {e}")))?;
    if width > MAX_DECODED_DIMENSION || height > MAX_DECODED_DIMENSION {
        return Err(Error::InvalidImage(format!(
            "{format:?} image is {width}x{height}: more than {MAX_DECODED_DIMENSION} pixels on a side"
        )));
    }
    let mut reader = reader()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODED_DIMENSION);
    limits.max_image_height = Some(MAX_DECODED_DIMENSION);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| Error::InvalidImage(format!("cannot decode {format:?} image: {e}")))?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let (data, format) = match decoded {
        DynamicImage::ImageLuma8(img) => (img.into_raw(), PixelFormat::Mono8),
        DynamicImage::ImageLumaA8(_) => (decoded.to_luma8().into_raw(), PixelFormat::Mono8),
        DynamicImage::ImageLuma16(img) => (mono16_to_mono8(img.as_raw()), PixelFormat::Mono8),
        DynamicImage::ImageRgb8(img) => (img.into_raw(), PixelFormat::Rgb8),
        other => (other.to_rgb8().into_raw(), PixelFormat::Rgb8),
    };
    Ok(DecodedImage {
        data,
        width,
        height,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn raw<'a>(encoding: &'a str, w: u32, h: u32, step: u32, data: &'a [u8]) -> RawImage<'a> {
        RawImage {
            encoding,
            width: w,
            height: h,
            step,
            is_bigendian: false,
            data,
        }
    }

    fn message(r: &RawImage<'_>) -> String {
        match r.to_model_image() {
            Err(Error::InvalidImage(m)) => m,
            other => panic!("expected InvalidImage, got {other:?}"),
        }
    }

    #[test]
    fn eight_bit_is_borrowed_with_padding() {
        // 2x2 bgr8 with 2 padding bytes per row.
        let data = [
            1, 2, 3, 4, 5, 6, 0xEE, 0xEE, 7, 8, 9, 10, 11, 12, 0xEE, 0xEE,
        ];
        let m = raw("bgr8", 2, 2, 8, &data).to_model_image().unwrap();
        assert!(m.is_borrowed());
        let v = m.view().unwrap();
        assert_eq!(v.format(), PixelFormat::Bgr8);
        assert_eq!(v.row(1), &[7, 8, 9, 10, 11, 12]);
        assert_eq!(v.row(0).as_ptr(), data.as_ptr()); // no copy
        for (enc, f) in [
            ("rgb8", PixelFormat::Rgb8),
            ("mono8", PixelFormat::Mono8),
            ("bgra8", PixelFormat::Bgra8),
        ] {
            let m = raw(enc, 2, 1, 8, &data).to_model_image().unwrap();
            assert_eq!(m.view().unwrap().format(), f);
        }
    }

    #[test]
    fn rejections_name_the_reason() {
        let data = [0u8; 80];
        assert!(message(&raw("yuv422", 2, 2, 4, &data)).contains("unsupported encoding"));
        assert!(message(&raw("rgb8", 0, 2, 6, &data)).contains("zero size"));
        assert!(message(&raw("rgb8", 4, 2, 11, &data)).contains("smaller than width"));
        assert!(message(&raw("mono16", 4, 2, 7, &data)).contains("smaller than width"));
        // Rows 0 and 1 in full (2 * 24) and the last row's 12 pixel bytes: 60.
        let m = message(&raw("rgb8", 4, 3, 24, &data[..59]));
        assert!(m.contains("59 bytes") && m.contains("needs 60"), "{m}");
        assert!(raw("rgb8", 4, 3, 24, &data[..60]).to_model_image().is_ok());
        let mut be = raw("16UC1", 2, 2, 4, &data);
        be.is_bigendian = true;
        assert!(message(&be).contains("big-endian"));
    }

    fn le16(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn mono16_with_row_padding() {
        // 2x2, step 6: 2 padding bytes per row that must be skipped.
        let mut data = le16(&[1000, 2000]);
        data.extend([0xFF, 0xFF]);
        data.extend(le16(&[3000, 1500]));
        data.extend([0xFF, 0xFF]);
        for enc in ["mono16", "16UC1"] {
            let m = raw(enc, 2, 2, 6, &data).to_model_image().unwrap();
            let ModelImage::Owned(img) = m else {
                panic!("mono16 must be converted")
            };
            assert_eq!(
                (img.width, img.height, img.format),
                (2, 2, PixelFormat::Mono8)
            );
            // lo = 1000, hi = 3000: linear in between (rounded).
            assert_eq!(img.data, [0, 128, 255, 64]);
        }
    }

    #[test]
    fn mono16_stretch_ignores_hot_pixel() {
        // A 12-bit ramp 1000..=2999 plus one saturated pixel.
        let mut px: Vec<u16> = (1000..3000).collect();
        px.push(65535);
        let out = mono16_to_mono8(&px);
        assert_eq!(out[0], 0);
        assert!(out[1000].abs_diff(128) <= 1, "{}", out[1000]); // value 2000, mid-range
        assert_eq!(out[1999], 255);
        assert_eq!(out[2000], 255);
        // Min-max or >> 8 would leave the ramp within a few grey levels.
        assert!(
            out[1500] > 180 && out[500] < 70,
            "{} {}",
            out[1500],
            out[500]
        );
        // No spread: >> 8.
        assert_eq!(mono16_to_mono8(&[0x1234; 4]), [0x12; 4]);
    }

    #[test]
    fn compression_names() {
        assert_eq!(compression_of("bgr8; jpeg compressed bgr8"), Some("jpeg"));
        assert_eq!(compression_of("rgb8; png compressed rgb8"), Some("png"));
        assert_eq!(compression_of("jpeg"), Some("jpeg"));
        assert_eq!(compression_of(""), None);
    }

    fn png_bytes(data: &[u8], w: u32, h: u32, colour: image::ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out).write_image(data, w, h, colour).unwrap();
        out
    }

    /// A mid-grey JPEG.
    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let (mut out, grey) = (Vec::new(), vec![128u8; (w * h * 3) as usize]);
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
        encoder.write_image(&grey, w, h, image::ExtendedColorType::Rgb8).unwrap();
        out
    }

    #[test]
    fn png_round_trip() {
        // RGB stays rgb8 (format named); grey stays mono8 (empty format: guessed).
        let rgb: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let grey = vec![0u8, 50, 100, 150, 200, 250];
        let cases = [
            ("rgb8; png compressed rgb8", rgb, (5, 3), image::ExtendedColorType::Rgb8, PixelFormat::Rgb8),
            ("", grey, (3, 2), image::ExtendedColorType::L8, PixelFormat::Mono8),
        ];
        for (format, data, (w, h), colour, want) in cases {
            let img = decode_compressed(format, &png_bytes(&data, w, h, colour)).unwrap();
            assert_eq!((img.width, img.height, img.format), (w as usize, h as usize, want), "{format:?}");
            assert_eq!(img.data, data, "{format:?}");
            let row = w as usize * want.channels();
            assert_eq!(img.view().unwrap().row(1), &data[row..2 * row]);
        }
    }

    #[test]
    fn jpeg_decodes() {
        let img = decode_compressed("bgr8; jpeg compressed bgr8", &jpeg_bytes(16, 8)).unwrap();
        assert_eq!(
            (img.width, img.height, img.format),
            (16, 8, PixelFormat::Rgb8)
        );
        assert!(img.data.iter().all(|&v| v.abs_diff(128) <= 2));
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut jpeg = jpeg_bytes(16, 16);
        jpeg.truncate(jpeg.len() / 3);
        for (format, data) in [
            ("jpeg", &b"not a jpeg at all"[..]),
            ("bgr8; jpeg compressed bgr8", &jpeg[..]),
            ("png", &[0x89, b'P', b'N', b'G', 0, 1, 2][..]),
            ("jpeg", &[][..]),
            ("", &b"garbage"[..]),
        ] {
            assert!(
                matches!(decode_compressed(format, data), Err(Error::InvalidImage(_))),
                "{format}"
            );
        }
        let m = decode_compressed("16UC1; compressedDepth png", &jpeg);
        assert!(matches!(m, Err(Error::InvalidImage(m)) if m.contains("compressedDepth")));
    }

    #[test]
    fn absurd_dimensions_are_rejected_as_such() {
        // Patch the JPEG frame header (SOF0: FF C0, len, precision, height, width)
        // to claim `width` pixels; the rest stays a valid small image.
        let with_width = |width: u16| {
            let mut jpeg = jpeg_bytes(16, 16);
            let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
            jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
            jpeg
        };
        match decode_compressed("jpeg", &with_width(20000)) {
            Err(Error::InvalidImage(m)) => {
                assert!(m.contains("20000x16") && m.contains("16384 pixels on a side"), "{m}")
            }
            other => panic!("decoded {:?}", other.map(|d| (d.width, d.height))),
        }
        // Just inside the limit the size is not what is refused (the data
        // then lacks pixels, which is another error, or decodes padded).
        if let Err(e) = decode_compressed("jpeg", &with_width(16384)) {
            assert!(!e.to_string().contains("pixels on a side"), "{e}");
        }
    }
}
