//! Colour frames from a bag as packed RGB: raw `sensor_msgs/Image` in any
//! encoding the model takes (8-bit colour or grey, 16-bit grey stretched)
//! and `CompressedImage` JPEG/PNG, through the same decoders as the node.

use super::messages::{CompressedImage, Image};
use super::BagError;
use crate::image::ros_image::{decode_compressed, RawImage};
use crate::image::{ImageView, PackedRgb, PixelFormat};


fn to_rgb(view: &ImageView<'_>) -> PackedRgb {
    let (w, h) = (view.width(), view.height());
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let row = view.row(y);
        match view.format() {
            PixelFormat::Rgb8 => data.extend_from_slice(&row[..w * 3]),
            PixelFormat::Bgr8 => row.chunks_exact(3).take(w).for_each(|p| data.extend_from_slice(&[p[2], p[1], p[0]])),
            PixelFormat::Rgba8 => row.chunks_exact(4).take(w).for_each(|p| data.extend_from_slice(&p[..3])),
            PixelFormat::Bgra8 => row.chunks_exact(4).take(w).for_each(|p| data.extend_from_slice(&[p[2], p[1], p[0]])),
            PixelFormat::Mono8 => row.iter().take(w).for_each(|&g| data.extend_from_slice(&[g, g, g])),
        }
    }
    PackedRgb { data, width: w, height: h }
}

pub fn from_image(msg: &Image<'_>) -> Result<PackedRgb, BagError> {
    let raw = RawImage {
        encoding: &msg.encoding,
        width: msg.width,
        height: msg.height,
        step: msg.step,
        is_bigendian: msg.is_bigendian,
        data: msg.data,
    };
    let img = raw.to_model_image().map_err(|e| BagError::Decode(e.to_string()))?;
    Ok(to_rgb(&img.view().map_err(|e| BagError::Decode(e.to_string()))?))
}

pub fn from_compressed(msg: &CompressedImage<'_>) -> Result<PackedRgb, BagError> {
    let img = decode_compressed(&msg.format, msg.data).map_err(|e| BagError::Decode(e.to_string()))?;
    Ok(to_rgb(&img.view().map_err(|e| BagError::Decode(e.to_string()))?))
}
