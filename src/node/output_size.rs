//! The size of a published depth image. Either side may be 0 and then
//! follows the camera's aspect ratio (both 0: the camera's size), so that a
//! size can be changed one parameter at a time while the node runs without
//! passing through an invalid pair.

/// The largest side accepted (a typo guard, far beyond any camera).
pub const MAX_SIDE: i64 = 16384;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {param} must be 0 (follow the camera) or in 1..={MAX_SIDE}, got {value}")]
pub struct OutputSizeError {
    pub param: &'static str,
    pub value: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputSize {
    /// 0: from the camera.
    pub width: usize,
    /// 0: from the camera.
    pub height: usize,
}

impl OutputSize {
    pub fn new(width: i64, height: i64) -> Result<Self, OutputSizeError> {
        for (param, value) in [("output_width", width), ("output_height", height)] {
            if !(0..=MAX_SIDE).contains(&value) {
                return Err(OutputSizeError { param, value });
            }
        }
        Ok(Self { width: width as usize, height: height as usize })
    }

    /// The camera's own size.
    pub fn is_camera_size(&self) -> bool {
        self.width == 0 && self.height == 0
    }

    /// The pixel size for a `camera_w` x `camera_h` image: a side given as 0
    /// keeps the camera's aspect ratio (rounded, at least 1).
    pub fn resolve(&self, camera_w: usize, camera_h: usize) -> (usize, usize) {
        let scaled = |given: usize, from: usize, to: usize| {
            ((given as f64 * to as f64 / from.max(1) as f64).round() as usize).max(1)
        };
        match (self.width, self.height) {
            (0, 0) => (camera_w, camera_h),
            (w, 0) => (w, scaled(w, camera_w, camera_h)),
            (0, h) => (scaled(h, camera_h, camera_w), h),
            (w, h) => (w, h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_follow_the_camera_when_zero() {
        let cam = (640, 480);
        assert_eq!(OutputSize::new(0, 0).unwrap().resolve(cam.0, cam.1), (640, 480));
        assert_eq!(OutputSize::new(320, 0).unwrap().resolve(cam.0, cam.1), (320, 240));
        assert_eq!(OutputSize::new(0, 120).unwrap().resolve(cam.0, cam.1), (160, 120));
        assert_eq!(OutputSize::new(100, 50).unwrap().resolve(cam.0, cam.1), (100, 50));
        assert_eq!(OutputSize::new(1, 0).unwrap().resolve(640, 2), (1, 1), "never 0");
    }

    #[test]
    fn bad_sides_name_their_parameter() {
        assert_eq!(OutputSize::new(-1, 0).unwrap_err().param, "output_width");
        assert_eq!(OutputSize::new(0, MAX_SIDE + 1).unwrap_err().param, "output_height");
    }
}
