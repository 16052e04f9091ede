//! Depth as a picture for people: near is warm, far is cool, invalid is
//! black. A piecewise-linear rainbow through a few anchor colours.

/// Anchor colours (RGB) from near (t = 0) to far (t = 1), evenly spaced.
const ANCHORS: [[f32; 3]; 7] = [
    [122.0, 4.0, 3.0],     // dark red
    [240.0, 60.0, 20.0],   // red-orange
    [250.0, 190.0, 40.0],  // amber
    [170.0, 240.0, 60.0],  // yellow-green
    [40.0, 210.0, 200.0],  // cyan
    [50.0, 110.0, 230.0],  // blue
    [48.0, 18.0, 59.0],    // deep indigo
];

/// The colour for `t` in [0, 1] (clamped).
pub fn colour_at(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (ANCHORS.len() - 1) as f32;
    let i = (x.floor() as usize).min(ANCHORS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * f).round() as u8)
}

/// Channel order of the produced pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourOrder {
    Rgb,
    Bgr,
}

/// Colours a depth map over [near, far] metres; non-finite or non-positive
/// depth is black. Returns packed 3-byte pixels.
pub fn colorize(depth: &[f32], near: f32, far: f32, order: ColourOrder) -> Vec<u8> {
    let span = (far - near).max(f32::EPSILON);
    let mut out = Vec::with_capacity(depth.len() * 3);
    for &d in depth {
        let rgb = if d.is_finite() && d > 0.0 { colour_at((d - near) / span) } else { [0, 0, 0] };
        match order {
            ColourOrder::Rgb => out.extend_from_slice(&rgb),
            ColourOrder::Bgr => out.extend_from_slice(&[rgb[2], rgb[1], rgb[0]]),
        }
    }
    out
}

/// The finite positive range of a depth map, for colouring and reports.
pub fn finite_range(depth: &[f32]) -> Option<(f32, f32)> {
    depth
        .iter()
        .filter(|d| d.is_finite() && **d > 0.0)
        .fold(None, |acc, &d| match acc {
            None => Some((d, d)),
            Some((lo, hi)) => Some((lo.min(d), hi.max(d))),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_invalid() {
        assert_eq!(colour_at(0.0), [122, 4, 3]);
        assert_eq!(colour_at(1.0), [48, 18, 59]);
        assert_eq!(colour_at(7.0), colour_at(1.0));
        let px = colorize(&[1.0, f32::NAN, 3.0, -1.0], 1.0, 3.0, ColourOrder::Bgr);
        assert_eq!(&px[0..3], &[3, 4, 122]);
        assert_eq!(&px[3..6], &[0, 0, 0]);
        assert_eq!(&px[6..9], &[59, 18, 48]);
        assert_eq!(&px[9..12], &[0, 0, 0]);
        assert_eq!(finite_range(&[f32::NAN, 2.0, 0.5, f32::INFINITY]), Some((0.5, 2.0)));
    }
}
