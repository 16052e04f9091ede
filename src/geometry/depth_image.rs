//! REP 117/118 depth image payloads: `32FC1` metres with NaN / -Inf / +Inf
//! for invalid / too close / too far (depthimage_to_laserscan and costmaps
//! treat +-Inf as "free up to the limit", NaN as "unknown"), or `16UC1`
//! millimetres where 0 is the only "no reading" value. Bytes are
//! little-endian (`is_bigendian = false`), rows packed, so
//! `step = width * bytes_per_pixel`.

use crate::error::{Error, Result};

/// Valid depth interval `[min, max]` in metres. Depth must also be finite
/// and positive. NaN limits make every sample invalid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeLimits {
    pub min: f32,
    pub max: f32,
}

/// How one depth sample is reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DepthClass {
    Valid(f32),
    /// Non-finite, zero or negative: no reading.
    Invalid,
    /// A reading closer than `min`.
    TooClose,
    /// A reading farther than `max`.
    TooFar,
}

impl RangeLimits {
    /// Every finite positive depth is valid.
    pub const UNLIMITED: Self = Self {
        min: 0.0,
        max: f32::INFINITY,
    };

    pub const fn new(min: f32, max: f32) -> Self {
        Self { min, max }
    }

    /// True for a finite, positive depth within `[min, max]`.
    #[inline]
    pub fn contains(&self, z: f32) -> bool {
        z.is_finite() && z > 0.0 && z >= self.min && z <= self.max
    }

    #[inline]
    pub fn classify(&self, z: f32) -> DepthClass {
        if !z.is_finite() || z <= 0.0 {
            DepthClass::Invalid
        } else if z < self.min {
            DepthClass::TooClose
        } else if z > self.max {
            DepthClass::TooFar
        } else if self.contains(z) {
            DepthClass::Valid(z)
        } else {
            // NaN limits.
            DepthClass::Invalid
        }
    }
}

/// The two depth encodings of REP 117.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthEncoding {
    /// `32FC1`, metres.
    Float32,
    /// `16UC1`, millimetres.
    U16Millimetres,
}

impl DepthEncoding {
    pub fn ros_encoding(self) -> &'static str {
        match self {
            DepthEncoding::Float32 => "32FC1",
            DepthEncoding::U16Millimetres => "16UC1",
        }
    }

    pub fn bytes_per_pixel(self) -> usize {
        match self {
            DepthEncoding::Float32 => 4,
            DepthEncoding::U16Millimetres => 2,
        }
    }

    /// Bytes of `depth` encoded this way (see [`to_32fc1_bytes`],
    /// [`to_16uc1_bytes`]).
    pub fn encode(self, depth: &[f32], min_range: f32, max_range: f32) -> Vec<u8> {
        match self {
            DepthEncoding::Float32 => to_32fc1_bytes(depth, min_range, max_range),
            DepthEncoding::U16Millimetres => to_16uc1_bytes(depth, min_range, max_range),
        }
    }
}

/// `32FC1` payload: valid depth as is, NaN for no reading (non-finite or
/// `<= 0`), -Inf below `min_range`, +Inf above `max_range`.
pub fn to_32fc1_bytes(depth: &[f32], min_range: f32, max_range: f32) -> Vec<u8> {
    let range = RangeLimits::new(min_range, max_range);
    let mut out = Vec::with_capacity(depth.len() * 4);
    out.extend(depth.iter().flat_map(|&z| {
        let v = match range.classify(z) {
            DepthClass::Valid(z) => z,
            DepthClass::Invalid => f32::NAN,
            DepthClass::TooClose => f32::NEG_INFINITY,
            DepthClass::TooFar => f32::INFINITY,
        };
        v.to_le_bytes()
    }));
    out
}

/// `16UC1` payload: depth in millimetres rounded to nearest; 0 for no
/// reading and for anything outside `[min_range, max_range]` (16UC1 cannot
/// say "too close/far"). Depths that round above 65535 mm (65.535 m) are
/// also written as 0 rather than clamped, because a clamped 65535 would be a
/// false obstacle at 65.5 m.
pub fn to_16uc1_bytes(depth: &[f32], min_range: f32, max_range: f32) -> Vec<u8> {
    let range = RangeLimits::new(min_range, max_range);
    let mut out = Vec::with_capacity(depth.len() * 2);
    out.extend(depth.iter().flat_map(|&z| {
        let mm = match range.classify(z) {
            DepthClass::Valid(z) => {
                // f64 so the product of the f32 value is exact before rounding.
                let mm = (f64::from(z) * 1000.0).round();
                if mm <= f64::from(u16::MAX) {
                    mm as u16
                } else {
                    0
                }
            }
            _ => 0,
        };
        mm.to_le_bytes()
    }));
    out
}

/// Decodes a little-endian `32FC1` payload (packed rows), e.g. to check what
/// a node published.
pub fn from_32fc1_bytes(data: &[u8]) -> Result<Vec<f32>> {
    if !data.len().is_multiple_of(4) {
        return Err(Error::InvalidImage(format!(
            "32FC1 data has {} bytes, not a multiple of 4",
            data.len()
        )));
    }
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_nan_and_infinities() {
        let depth = [
            1.5,
            f32::NAN,
            f32::INFINITY,
            0.0,
            -2.0,
            0.2,
            0.3,
            10.0,
            10.5,
        ];
        let bytes = to_32fc1_bytes(&depth, 0.3, 10.0);
        assert_eq!(bytes.len(), 36);
        assert_eq!(&bytes[0..4], &1.5f32.to_le_bytes());
        let back = from_32fc1_bytes(&bytes).unwrap();
        assert_eq!(back[0], 1.5);
        assert!(back[1].is_nan() && back[2].is_nan() && back[3].is_nan() && back[4].is_nan());
        assert_eq!(back[5], f32::NEG_INFINITY);
        assert_eq!(back[6], 0.3); // limits are inclusive
        assert_eq!(back[7], 10.0);
        assert_eq!(back[8], f32::INFINITY);
    }

    #[test]
    fn float32_decoding_rejects_ragged_data() {
        assert!(matches!(
            from_32fc1_bytes(&[0; 7]),
            Err(Error::InvalidImage(_))
        ));
    }

    fn u16s(bytes: &[u8]) -> Vec<u16> {
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn u16_millimetres_rounding() {
        let depth = [0.25, 1.2344, 1.2346, 0.0004, 0.0006, 2.0];
        let mm = u16s(&to_16uc1_bytes(&depth, 0.0, f32::INFINITY));
        assert_eq!(mm, [250, 1234, 1235, 0, 1, 2000]);
        let bytes = to_16uc1_bytes(&[1.0], 0.0, 100.0);
        assert_eq!(bytes, [0xE8, 0x03]); // 1000 little-endian
    }

    #[test]
    fn u16_invalid_range_and_saturation_are_zero() {
        let depth = [
            f32::NAN,
            f32::INFINITY,
            -1.0,
            0.1,
            50.0,
            65.535,
            65.5354,
            65.536,
            70.0,
        ];
        let mm = u16s(&to_16uc1_bytes(&depth, 0.2, f32::INFINITY));
        assert_eq!(mm, [0, 0, 0, 0, 50000, 65535, 65535, 0, 0]);
        let mm = u16s(&to_16uc1_bytes(&[5.0, 6.0], 0.0, 5.5));
        assert_eq!(mm, [5000, 0]);
    }

    #[test]
    fn encoding_names() {
        assert_eq!(DepthEncoding::Float32.ros_encoding(), "32FC1");
        assert_eq!(DepthEncoding::U16Millimetres.ros_encoding(), "16UC1");
        assert_eq!(
            DepthEncoding::U16Millimetres.encode(&[1.0], 0.0, 2.0).len(),
            2
        );
    }

    #[test]
    fn classify_with_nan_limits_is_invalid() {
        let r = RangeLimits::new(f32::NAN, f32::NAN);
        assert_eq!(r.classify(1.0), DepthClass::Invalid);
        assert!(!r.contains(1.0));
        assert_eq!(
            RangeLimits::UNLIMITED.classify(1e30),
            DepthClass::Valid(1e30)
        );
    }
}
