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
    /// NaN: no reading.
    Invalid,
    /// Nearer than `min`, zero or negative included (a model that says 0
    /// means "nearer than it can tell"), and -Inf.
    TooClose,
    /// Farther than `max`, +Inf included.
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

    /// The REP 117 class of a depth value as the model produced it (not
    /// saturated to its range first: a value beyond `max` must come out as
    /// too far, not as a reading at `max`).
    #[inline]
    pub fn classify(&self, z: f32) -> DepthClass {
        if z.is_nan() {
            DepthClass::Invalid
        } else if z <= 0.0 || z < self.min {
            DepthClass::TooClose
        } else if z > self.max || z == f32::INFINITY {
            DepthClass::TooFar
        } else if self.contains(z) {
            DepthClass::Valid(z)
        } else {
            // NaN limits.
            DepthClass::Invalid
        }
    }
}

/// A `min_range` / `max_range` setting that cannot be used; each names its
/// parameter, for the node's one-line start-up error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RangeError {
    #[error("parameter {param} must be a finite number >= 0 (0 = the model's), got {value}")]
    NotANumber { param: &'static str, value: f64 },
    #[error(
        "parameter {param} ({value} m) is outside the model's depth range [{model_min}, {model_max}] m, \
         where its output means nothing; set allow_out_of_model_range to use it anyway"
    )]
    OutsideModel { param: &'static str, value: f64, model_min: f32, model_max: f32 },
    #[error("parameter {param}: min_range ({min} m) must be below max_range ({max} m)")]
    Order { param: &'static str, min: f32, max: f32 },
}

impl RangeError {
    /// The parameter to blame.
    pub fn parameter(&self) -> &'static str {
        match self {
            RangeError::NotANumber { param, .. }
            | RangeError::OutsideModel { param, .. }
            | RangeError::Order { param, .. } => param,
        }
    }
}

/// The range test of a depth node from its `min_range` / `max_range`
/// parameters (0 = the model's `min_depth` / `max_depth`). Refused: values
/// that are not finite and >= 0, limits outside the model's range unless
/// `allow_outside_model` (a `min_range` beyond `max_depth` would turn every
/// pixel into -Inf), and `min >= max` after resolving.
pub fn resolve_range(
    min_range: f64,
    max_range: f64,
    model: (f32, f32),
    allow_outside_model: bool,
) -> Result<RangeLimits, RangeError> {
    let (model_min, model_max) = model;
    let mut resolved = [0f32; 2];
    for (i, (param, value, default)) in
        [("min_range", min_range, model_min), ("max_range", max_range, model_max)].into_iter().enumerate()
    {
        if !value.is_finite() || value < 0.0 {
            return Err(RangeError::NotANumber { param, value });
        }
        // Compared in f32, the model's own precision (0.001 must equal a
        // min_depth of 0.001f32).
        let v = if value == 0.0 { default } else { value as f32 };
        if !allow_outside_model && !(model_min..=model_max).contains(&v) {
            return Err(RangeError::OutsideModel { param, value, model_min, model_max });
        }
        resolved[i] = v;
    }
    let [min, max] = resolved;
    if min >= max {
        let param = if max_range > 0.0 { "max_range" } else { "min_range" };
        return Err(RangeError::Order { param, min, max });
    }
    Ok(RangeLimits::new(min, max))
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

/// `32FC1` payload: valid depth as is, NaN for no reading, -Inf below
/// `min_range` (and for `<= 0`), +Inf above `max_range` (see
/// [`RangeLimits::classify`]).
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
            f32::NEG_INFINITY,
        ];
        let bytes = to_32fc1_bytes(&depth, 0.3, 10.0);
        assert_eq!(bytes.len(), 40);
        assert_eq!(&bytes[0..4], &1.5f32.to_le_bytes());
        let back = from_32fc1_bytes(&bytes).unwrap();
        assert_eq!(back[0], 1.5);
        assert!(back[1].is_nan(), "NaN stays NaN");
        assert_eq!(back[2], f32::INFINITY);
        // Zero and negative: nearer than anything measurable.
        assert_eq!((back[3], back[4], back[5]), (f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY));
        assert_eq!(back[6], 0.3); // limits are inclusive
        assert_eq!(back[7], 10.0);
        assert_eq!(back[8], f32::INFINITY);
        assert_eq!(back[9], f32::NEG_INFINITY);
        // Just beyond the limit is too far, not a reading at the limit.
        let beyond = from_32fc1_bytes(&to_32fc1_bytes(&[10.0f32.next_up()], 0.3, 10.0)).unwrap();
        assert_eq!(beyond[0], f32::INFINITY);
    }

    #[test]
    fn ranges_resolve_against_the_model() {
        let model = (0.001, 10.0);
        assert_eq!(resolve_range(0.0, 0.0, model, false), Ok(RangeLimits::new(0.001, 10.0)));
        assert_eq!(resolve_range(0.5, 4.0, model, false), Ok(RangeLimits::new(0.5, 4.0)));
        // 0.001 and 10 as f64 parameters are the model's own limits.
        assert_eq!(resolve_range(0.001, 10.0, model, false), Ok(RangeLimits::new(0.001, 10.0)));
        let err = resolve_range(12.0, 0.0, model, false).unwrap_err();
        assert_eq!(err.parameter(), "min_range");
        assert!(err.to_string().contains("allow_out_of_model_range"), "{err}");
        assert_eq!(resolve_range(0.0, 80.0, model, false).unwrap_err().parameter(), "max_range");
        assert_eq!(resolve_range(0.0, 80.0, model, true), Ok(RangeLimits::new(0.001, 80.0)));
        // Allowed outside, but still ordered: 12 m against the model's 10 m.
        let err = resolve_range(12.0, 0.0, model, true).unwrap_err();
        assert!(matches!(err, RangeError::Order { param: "min_range", .. }), "{err}");
        let err = resolve_range(3.0, 2.0, model, false).unwrap_err();
        assert!(matches!(err, RangeError::Order { param: "max_range", .. }), "{err}");
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(resolve_range(bad, 0.0, model, true), Err(RangeError::NotANumber { param: "min_range", .. })));
            assert!(matches!(resolve_range(0.0, bad, model, true), Err(RangeError::NotANumber { param: "max_range", .. })));
        }
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
        // Beyond max_range, nearer than min_range (zero included) and NaN: all 0.
        let mm = u16s(&to_16uc1_bytes(&[5.0, 6.0, 0.0, 0.05, f32::NAN], 0.1, 5.5));
        assert_eq!(mm, [5000, 0, 0, 0, 0]);
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
