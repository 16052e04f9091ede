//! Depth maps as depth cameras record them: `16UC1` millimetres or `32FC1`
//! metres (REP 118); 0 and NaN mean no reading. Shared by the bag reader,
//! the dataset export and the registration of a depth camera to a colour
//! camera.

/// Stored depth value -> metres for a dataset's ground truth: the value
/// given wins; otherwise the authors' rule (`nyu`: millimetres, 1000;
/// `kitti`: 1/256 m, 256; anything else: stored in metres, 1).
pub fn stored_depth_divisor(dataset: &str, given: Option<f64>) -> f64 {
    given.unwrap_or(match dataset.to_ascii_lowercase().as_str() {
        "nyu" => 1000.0,
        "kitti" => 256.0,
        _ => 1.0,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum DepthPixels {
    Millimetres(Vec<u16>),
    Metres(Vec<f32>),
}

/// A packed depth map.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthImage {
    pub width: usize,
    pub height: usize,
    pub pixels: DepthPixels,
}

impl DepthImage {
    /// Depth in metres, `None` where there is no reading (0, NaN, inf, negative).
    pub fn metres_at(&self, i: usize) -> Option<f64> {
        let d = match &self.pixels {
            DepthPixels::Millimetres(v) => f64::from(v[i]) / 1000.0,
            DepthPixels::Metres(v) => f64::from(v[i]),
        };
        (d.is_finite() && d > 0.0).then_some(d)
    }

    pub fn len(&self) -> usize {
        self.width * self.height
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Millimetres as a 16-bit depth PNG stores them: `floor(d * 1000 +
    /// 0.5)`, 0 where there is no reading or beyond 65.535 m.
    pub fn to_millimetres(&self) -> Vec<u16> {
        match &self.pixels {
            DepthPixels::Millimetres(v) => v.clone(),
            DepthPixels::Metres(_) => (0..self.len()).map(|i| self.metres_at(i).map_or(0, metres_to_mm)).collect(),
        }
    }
}

/// `floor(d * 1000 + 0.5)`; 0 beyond the 16-bit range.
pub fn metres_to_mm(d: f64) -> u16 {
    let mm = (d * 1000.0 + 0.5).floor();
    if (1.0..=65535.0).contains(&mm) {
        mm as u16
    } else {
        0
    }
}
