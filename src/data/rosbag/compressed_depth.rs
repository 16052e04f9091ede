//! image_transport's `compressedDepth` payloads: a 12-byte configuration
//! header (i32 compression format, two f32 quantisation parameters, in the
//! writer's byte order: little-endian everywhere ROS 2 runs) followed by a
//! 16-bit PNG. `16UC1` depth is stored as is (millimetres); `32FC1` as
//! quantised inverse depth `v = A / d + B` (truncated to u16, 0 = no
//! reading), decoded as `d = A / (v - B)` in f32 like the plugin.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::data::depth::{DepthImage, DepthPixels};
use super::BagError;
use crate::image::ros_image::MAX_DECODED_DIMENSION;

const HEADER_LEN: usize = 12;

/// The plugin's default quantisation (`depth_quantization`, `depth_max`).
pub const DEFAULT_QUANTIZATION: f32 = 100.0;
pub const DEFAULT_DEPTH_MAX: f32 = 10.0;

fn bad(msg: String) -> BagError {
    BagError::Decode(format!("compressedDepth: {msg}"))
}

/// Whether a `CompressedImage.format` names this transport.
pub fn is_compressed_depth(format: &str) -> bool {
    format.contains("compressedDepth")
}

/// Decodes a `compressedDepth` message (`format` like `"16UC1;
/// compressedDepth png"`; older writers leave out the codec).
pub fn decode(format: &str, data: &[u8]) -> Result<DepthImage, BagError> {
    let (encoding, rest) = format.split_once(';').unwrap_or((format, ""));
    let encoding = encoding.trim();
    let codec = rest.trim().strip_prefix("compressedDepth").map(str::trim).unwrap_or("");
    if !(codec.is_empty() || codec == "png") {
        return Err(bad(format!("codec {codec:?} in {format:?} is not supported (png only)")));
    }
    if data.len() <= HEADER_LEN {
        return Err(bad(format!("{} bytes: no image after the 12-byte header", data.len())));
    }
    let a = f32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    let b = f32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    let png = &data[HEADER_LEN..];
    let mut reader = ImageReader::new(Cursor::new(png));
    reader.set_format(ImageFormat::Png);
    let (w, h) = reader.into_dimensions().map_err(|e| bad(format!("cannot read the PNG: {e}")))?;
    if w > MAX_DECODED_DIMENSION || h > MAX_DECODED_DIMENSION {
        return Err(bad(format!("PNG is {w}x{h}: too large")));
    }
    let mut reader = ImageReader::new(Cursor::new(png));
    reader.set_format(ImageFormat::Png);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODED_DIMENSION);
    limits.max_image_height = Some(MAX_DECODED_DIMENSION);
    reader.limits(limits);
    let values = match reader.decode().map_err(|e| bad(format!("cannot decode the PNG: {e}")))? {
        DynamicImage::ImageLuma16(img) => img.into_raw(),
        other => return Err(bad(format!("PNG holds {:?}, expected 16-bit grey", other.color()))),
    };
    let (width, height) = (w as usize, h as usize);
    let pixels = match encoding {
        "16UC1" | "mono16" => DepthPixels::Millimetres(values),
        "32FC1" => {
            if !(a.is_finite() && b.is_finite()) {
                return Err(bad(format!("quantisation parameters {a}, {b} are not finite")));
            }
            DepthPixels::Metres(values.into_iter().map(|v| if v == 0 { f32::NAN } else { a / (v as f32 - b) }).collect())
        }
        other => return Err(bad(format!("depth encoding {other:?} (expected 16UC1 or 32FC1)"))),
    };
    Ok(DepthImage { width, height, pixels })
}

/// Encodes depth as the plugin does (PNG, default quantisation for
/// `32FC1`): what a recorded `compressedDepth` topic holds.
pub fn encode(depth: &DepthImage) -> Result<(String, Vec<u8>), BagError> {
    let mut out = vec![0u8; HEADER_LEN];
    let (encoding, values): (&str, Vec<u16>) = match &depth.pixels {
        DepthPixels::Millimetres(v) => {
            let max = (DEFAULT_DEPTH_MAX * 1000.0) as u16;
            ("16UC1", v.iter().map(|&x| if x > max { 0 } else { x }).collect())
        }
        DepthPixels::Metres(v) => {
            let q = DEFAULT_QUANTIZATION;
            let a = q * (q + 1.0);
            let b = 1.0 - a / DEFAULT_DEPTH_MAX;
            out[4..8].copy_from_slice(&a.to_le_bytes());
            out[8..12].copy_from_slice(&b.to_le_bytes());
            // NaN fails the comparison and becomes 0, like the plugin.
            ("32FC1", v.iter().map(|&d| if d < DEFAULT_DEPTH_MAX { (a / d + b) as u16 } else { 0 }).collect())
        }
    };
    let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(depth.width as u32, depth.height as u32, values)
        .ok_or_else(|| bad("pixel count does not match the size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| bad(e.to_string()))?;
    out.extend_from_slice(&png);
    Ok((format!("{encoding}; compressedDepth png"), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millimetres_round_trip_and_metres_quantise() {
        let mm = DepthImage { width: 3, height: 2, pixels: DepthPixels::Millimetres(vec![0, 500, 1000, 2500, 9999, 12000]) };
        let (format, data) = encode(&mm).unwrap();
        assert_eq!(format, "16UC1; compressedDepth png");
        let back = decode(&format, &data).unwrap();
        // Beyond depth_max the plugin writes 0.
        assert_eq!(back.pixels, DepthPixels::Millimetres(vec![0, 500, 1000, 2500, 9999, 0]));

        let m = DepthImage { width: 2, height: 2, pixels: DepthPixels::Metres(vec![0.5, 2.0, f32::NAN, 3.7]) };
        let (format, data) = encode(&m).unwrap();
        let DepthPixels::Metres(back) = decode(&format, &data).unwrap().pixels else { panic!("metres") };
        assert!(back[2].is_nan());
        for (got, want) in [(back[0], 0.5f32), (back[1], 2.0), (back[3], 3.7)] {
            // Inverse-depth quantisation: error grows with d^2 / (A), under 1.5 mm at 3.7 m.
            assert!((got - want).abs() < 1.5e-3 * want * want, "{got} vs {want}");
        }
        // The older format string without a codec.
        assert!(decode("16UC1; compressedDepth", &encode(&mm).unwrap().1).is_ok());
    }

    #[test]
    fn bad_payloads_are_errors() {
        let (format, data) = encode(&DepthImage { width: 4, height: 4, pixels: DepthPixels::Millimetres(vec![700; 16]) }).unwrap();
        for cut in [0, 5, 12, 20, data.len() / 2] {
            assert!(decode(&format, &data[..cut]).is_err(), "{cut}");
        }
        assert!(decode("16UC1; compressedDepth rvl", &data).unwrap_err().to_string().contains("rvl"));
        assert!(decode("8UC3; compressedDepth png", &data).is_err());
        let mut corrupt = data.clone();
        for b in corrupt[HEADER_LEN + 40..].iter_mut() {
            *b ^= 0x5a;
        }
        assert!(decode(&format, &corrupt).is_err());
    }
}
