//! Depth registered to the colour camera: a depth map seen by one camera
//! re-projected into another with both cameras' pinhole intrinsics and the
//! rigid transform between them (a forward warp, as depth_image_proc's
//! `register` does): each depth pixel is back-projected, moved into the
//! colour frame, projected, and written to the nearest colour pixel,
//! keeping the nearest surface where several land on one (z-buffer).
//! Colour pixels nothing lands on stay holes (0), never filled in.

use crate::data::depth::DepthImage;
use crate::geometry::Rigid;
use crate::geometry::PinholeIntrinsics;

/// A camera: its intrinsics and image size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub intrinsics: PinholeIntrinsics,
    pub width: usize,
    pub height: usize,
}

/// How a dataset's depth came to be aligned with its colour images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Registration {
    /// Recorded registered (same frame and size, or an aligned topic).
    AsRecorded,
    /// Re-projected here into the colour camera.
    Reprojected,
}

impl Registration {
    pub fn describe(self) -> &'static str {
        match self {
            Registration::AsRecorded => "depth used as recorded (already registered to the colour camera)",
            Registration::Reprojected => "depth re-projected into the colour camera (both camera_infos and /tf_static)",
        }
    }
}

/// Re-projects `depth` (seen by `from`) into `to`; `depth_to_colour` takes
/// points in the depth camera's optical frame into the colour camera's.
/// Returns depth along the colour camera's optical axis in metres, 0 where
/// nothing landed. Pixel centres are at integer coordinates; a projected
/// point goes to pixel `floor(u + 0.5), floor(v + 0.5)`.
pub fn reproject(depth: &DepthImage, from: &Camera, to: &Camera, depth_to_colour: &Rigid) -> Vec<f64> {
    let mut out = vec![f64::INFINITY; to.width * to.height];
    let (fi, ti) = (&from.intrinsics, &to.intrinsics);
    let r = &depth_to_colour.r;
    let t = &depth_to_colour.t;
    for v in 0..depth.height.min(from.height) {
        for u in 0..depth.width.min(from.width) {
            let Some(z) = depth.metres_at(v * depth.width + u) else { continue };
            let x = (u as f64 - fi.cx) * z / fi.fx;
            let y = (v as f64 - fi.cy) * z / fi.fy;
            let xc = r[0][0] * x + r[0][1] * y + r[0][2] * z + t[0];
            let yc = r[1][0] * x + r[1][1] * y + r[1][2] * z + t[1];
            let zc = r[2][0] * x + r[2][1] * y + r[2][2] * z + t[2];
            if zc.is_nan() || zc <= 0.0 {
                continue;
            }
            let pu = (ti.fx * xc / zc + ti.cx + 0.5).floor();
            let pv = (ti.fy * yc / zc + ti.cy + 0.5).floor();
            if pu < 0.0 || pv < 0.0 || pu >= to.width as f64 || pv >= to.height as f64 {
                continue;
            }
            let cell = &mut out[pv as usize * to.width + pu as usize];
            if zc < *cell {
                *cell = zc;
            }
        }
    }
    for d in &mut out {
        if d.is_infinite() {
            *d = 0.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::depth::DepthPixels;

    fn cam(f: f64, w: usize, h: usize) -> Camera {
        Camera {
            intrinsics: PinholeIntrinsics { fx: f, fy: f, cx: (w as f64 - 1.0) / 2.0, cy: (h as f64 - 1.0) / 2.0 },
            width: w,
            height: h,
        }
    }

    #[test]
    fn identity_keeps_depth_and_a_shift_moves_it() {
        let (w, h) = (8, 6);
        let depth = DepthImage { width: w, height: h, pixels: DepthPixels::Metres((0..w * h).map(|i| 1.0 + i as f32 * 0.01).collect()) };
        let c = cam(10.0, w, h);
        let same = reproject(&depth, &c, &c, &Rigid::IDENTITY);
        for (i, d) in same.iter().enumerate() {
            assert!((d - depth.metres_at(i).unwrap()).abs() < 1e-6);
        }
        // A wall at 2 m seen by a camera 0.2 m to the colour camera's left
        // (depth = colour + (-0.2, 0, 0)): f * 0.2 / 2 = 1 pixel of parallax.
        let wall = DepthImage { width: w, height: h, pixels: DepthPixels::Millimetres(vec![2000; w * h]) };
        let shift = Rigid { t: [-0.2, 0.0, 0.0], ..Rigid::IDENTITY };
        let moved = reproject(&wall, &c, &c, &shift);
        for y in 0..h {
            assert_eq!(moved[y * w + w - 1], 0.0, "the right column is a hole");
            assert!(moved[y * w..y * w + w - 1].iter().all(|&d| (d - 2.0).abs() < 1e-12));
        }
    }

    #[test]
    fn the_nearest_surface_wins() {
        // Two depth pixels land on the same colour pixel: a near one kept.
        let depth = DepthImage { width: 2, height: 1, pixels: DepthPixels::Metres(vec![4.0, 1.0]) };
        let from = Camera { intrinsics: PinholeIntrinsics { fx: 1.0, fy: 1.0, cx: 0.5, cy: 0.0 }, width: 2, height: 1 };
        let to = Camera { intrinsics: PinholeIntrinsics { fx: 1e-3, fy: 1e-3, cx: 0.0, cy: 0.0 }, width: 1, height: 1 };
        assert_eq!(reproject(&depth, &from, &to, &Rigid::IDENTITY), vec![1.0]);
    }
}
