//! Depth images decoded from recorded messages: `16UC1` (or `mono16`)
//! millimetres and `32FC1` metres (REP 118), raw or `compressedDepth`.

use super::messages::{CompressedImage, Image};
use super::{compressed_depth, BagError};
pub use crate::data::depth::{metres_to_mm, DepthImage, DepthPixels};

/// Decodes a raw `sensor_msgs/Image` depth message (row padding and
/// big-endian data allowed).
pub fn from_image(msg: &Image<'_>) -> Result<DepthImage, BagError> {
    let bpp = match msg.encoding.as_str() {
        "16UC1" | "mono16" => 2,
        "32FC1" => 4,
        other => return Err(BagError::Decode(format!("depth encoding {other:?} is not supported (16UC1, mono16 or 32FC1)"))),
    };
    let (w, h, step) = (msg.width as usize, msg.height as usize, msg.step as usize);
    if w == 0 || h == 0 {
        return Err(BagError::Decode(format!("depth image has zero size {w}x{h}")));
    }
    let row = w * bpp;
    if step < row {
        return Err(BagError::Decode(format!("depth step {step} is smaller than width * {bpp} = {row}")));
    }
    let need = step.checked_mul(h - 1).and_then(|n| n.checked_add(row)).unwrap_or(usize::MAX);
    if msg.data.len() < need {
        return Err(BagError::Decode(format!("depth data has {} bytes, {w}x{h} with step {step} needs {need}", msg.data.len())));
    }
    let rows = (0..h).flat_map(|y| msg.data[y * step..y * step + row].chunks_exact(bpp));
    let pixels = if bpp == 2 {
        DepthPixels::Millimetres(
            rows.map(|b| if msg.is_bigendian { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) }).collect(),
        )
    } else {
        DepthPixels::Metres(
            rows.map(|b| {
                let b: [u8; 4] = b.try_into().expect("4 bytes");
                if msg.is_bigendian {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect(),
        )
    };
    Ok(DepthImage { width: w, height: h, pixels })
}

/// Decodes a `compressedDepth` `sensor_msgs/CompressedImage`.
pub fn from_compressed(msg: &CompressedImage<'_>) -> Result<DepthImage, BagError> {
    if !compressed_depth::is_compressed_depth(&msg.format) {
        return Err(BagError::Decode(format!("depth format {:?} is not compressedDepth (a colour codec cannot carry depth)", msg.format)));
    }
    compressed_depth::decode(&msg.format, msg.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rosbag::messages::Header;

    #[test]
    fn raw_depth_with_padding_and_byte_order() {
        let mut data = Vec::new();
        for v in [1.5f32, f32::NAN] {
            data.extend(v.to_be_bytes());
        }
        data.extend([0xEE; 4]);
        for v in [0.0f32, 2.25] {
            data.extend(v.to_be_bytes());
        }
        let msg =
            Image { header: Header::default(), height: 2, width: 2, encoding: "32FC1".into(), is_bigendian: true, step: 12, data: &data };
        let d = from_image(&msg).unwrap();
        assert_eq!(d.to_millimetres(), vec![1500, 0, 0, 2250]);
        assert_eq!(d.metres_at(3), Some(2.25));
        assert_eq!(d.metres_at(1), None);
        let short = Image { data: &data[..data.len() - 1], ..msg.clone() };
        assert!(from_image(&short).is_err());
        let wrong = Image { encoding: "rgb8".into(), ..msg };
        assert!(from_image(&wrong).unwrap_err().to_string().contains("rgb8"));
        assert_eq!(metres_to_mm(70.0), 0);
        assert_eq!(metres_to_mm(0.0004), 0);
        assert_eq!(metres_to_mm(1.2346), 1235);
    }
}
