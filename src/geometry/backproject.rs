//! Depth map to organised XYZ points in the camera's optical frame (z
//! forward, x right, y down), as depth_image_proc's `convertDepth` does:
//! `X = (u - cx) * Z / fx`, `Y = (v - cy) * Z / fy`, `Z = depth`, pixel
//! centres at integer `u, v`.
//!
//! `(u - cx) / fx` depends only on the column and `(v - cy) / fy` only on the
//! row, so [`Backprojector`] tabulates both once per camera/size and the
//! per-pixel work is two multiplies and a range check. Cost: one pass over
//! `ceil(h/k) * ceil(w/k)` samples; a 640x480 map at decimation 1 is 307,200
//! points (3.7 MB of `Point3<f32>`), at decimation 4 it is 19,200.

use nalgebra::Point3;

use super::depth_image::RangeLimits;
use super::intrinsics::PinholeIntrinsics;
use crate::error::{Error, Result};

/// Which depth pixels become points: every `decimation`-th pixel in both
/// directions, starting at (0, 0), so output `(col, row)` samples depth
/// pixel `(col * k, row * k)` and the output is organised as
/// `ceil(h / k)` rows of `ceil(w / k)` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleGrid {
    source_width: usize,
    source_height: usize,
    decimation: usize,
}

impl SampleGrid {
    /// A grid over a `source_width` x `source_height` depth map. Decimation 0
    /// is read as 1 (every pixel), like ROS reads binning 0.
    pub fn new(source_width: usize, source_height: usize, decimation: usize) -> Self {
        Self {
            source_width,
            source_height,
            decimation: decimation.max(1),
        }
    }

    /// Points per output row: `ceil(source_width / decimation)`.
    pub fn width(&self) -> usize {
        self.source_width.div_ceil(self.decimation)
    }

    /// Output rows: `ceil(source_height / decimation)`.
    pub fn height(&self) -> usize {
        self.source_height.div_ceil(self.decimation)
    }

    /// Number of output points.
    pub fn len(&self) -> usize {
        self.width() * self.height()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn decimation(&self) -> usize {
        self.decimation
    }

    pub fn source_width(&self) -> usize {
        self.source_width
    }

    pub fn source_height(&self) -> usize {
        self.source_height
    }

    /// The depth pixel `(u, v)` that output point `(col, row)` samples.
    pub fn source_pixel(&self, col: usize, row: usize) -> (usize, usize) {
        (col * self.decimation, row * self.decimation)
    }
}

/// Back-projection tables for one camera and depth size; rebuild when the
/// intrinsics, the depth size or the decimation change.
#[derive(Debug, Clone)]
pub struct Backprojector {
    intrinsics: PinholeIntrinsics,
    grid: SampleGrid,
    /// `(u - cx) / fx` for each output column.
    x_per_z: Vec<f32>,
    /// `(v - cy) / fy` for each output row.
    y_per_z: Vec<f32>,
}

impl Backprojector {
    /// Tabulates the rays of `grid`'s sample pixels. The intrinsics must
    /// describe the depth map itself (see `depth_camera_info`); they are used
    /// in f64 and stored as f32.
    pub fn new(intrinsics: PinholeIntrinsics, grid: SampleGrid) -> Self {
        let k = grid.decimation as f64;
        let x_per_z = (0..grid.width())
            .map(|c| ((c as f64 * k - intrinsics.cx) / intrinsics.fx) as f32)
            .collect();
        let y_per_z = (0..grid.height())
            .map(|r| ((r as f64 * k - intrinsics.cy) / intrinsics.fy) as f32)
            .collect();
        Self {
            intrinsics,
            grid,
            x_per_z,
            y_per_z,
        }
    }

    pub fn grid(&self) -> SampleGrid {
        self.grid
    }

    pub fn intrinsics(&self) -> PinholeIntrinsics {
        self.intrinsics
    }

    /// Back-projects a row-major depth map (metres along the optical axis,
    /// `source_width * source_height` values) into `out`, which is cleared
    /// and refilled with `grid().len()` points in row-major grid order, so
    /// its allocation is reused across frames. Invalid samples (non-finite,
    /// `<= 0`, or outside `range`) become all-NaN points, keeping the cloud
    /// organised as depth_image_proc does.
    pub fn backproject_into(
        &self,
        depth: &[f32],
        range: RangeLimits,
        out: &mut Vec<Point3<f32>>,
    ) -> Result<()> {
        let (w, h) = (self.grid.source_width, self.grid.source_height);
        if depth.len() != w * h {
            return Err(Error::InvalidImage(format!(
                "depth map has {} values, {w}x{h} needs {}",
                depth.len(),
                w * h
            )));
        }
        let nan = Point3::new(f32::NAN, f32::NAN, f32::NAN);
        let k = self.grid.decimation;
        out.clear();
        out.reserve(self.grid.len());
        for (row, &y_per_z) in self.y_per_z.iter().enumerate() {
            let v = row * k;
            let src = &depth[v * w..(v + 1) * w];
            out.extend(
                src.iter()
                    .step_by(k)
                    .zip(&self.x_per_z)
                    .map(|(&z, &x_per_z)| {
                        if range.contains(z) {
                            Point3::new(x_per_z * z, y_per_z * z, z)
                        } else {
                            nan
                        }
                    }),
            );
        }
        Ok(())
    }
}

/// One-shot convenience: builds the tables and back-projects a `width` x
/// `height` depth map. Returns the grid (output size) and the points.
pub fn backproject(
    depth: &[f32],
    width: usize,
    height: usize,
    intrinsics: &PinholeIntrinsics,
    decimation: usize,
    range: RangeLimits,
) -> Result<(SampleGrid, Vec<Point3<f32>>)> {
    let projector = Backprojector::new(*intrinsics, SampleGrid::new(width, height, decimation));
    let mut points = Vec::new();
    projector.backproject_into(depth, range, &mut points)?;
    Ok((projector.grid(), points))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTR: PinholeIntrinsics = PinholeIntrinsics {
        fx: 100.0,
        fy: 200.0,
        cx: 3.5,
        cy: 2.0,
    };

    /// The formula written out independently of the tables.
    fn expected(u: usize, v: usize, z: f32) -> [f32; 3] {
        let x = (u as f64 - INTR.cx) * z as f64 / INTR.fx;
        let y = (v as f64 - INTR.cy) * z as f64 / INTR.fy;
        [x as f32, y as f32, z]
    }

    fn assert_point(p: &Point3<f32>, e: [f32; 3]) {
        for (a, b) in p.coords.iter().zip(e) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{p:?} vs {e:?}");
        }
    }

    /// Depth that differs per pixel: z = 1 + u / 10 + v.
    fn ramp(w: usize, h: usize) -> Vec<f32> {
        (0..h)
            .flat_map(|v| (0..w).map(move |u| 1.0 + u as f32 / 10.0 + v as f32))
            .collect()
    }

    #[test]
    fn known_pixels() {
        let (w, h) = (8, 5);
        let depth = ramp(w, h);
        let (grid, pts) = backproject(&depth, w, h, &INTR, 1, RangeLimits::UNLIMITED).unwrap();
        assert_eq!((grid.width(), grid.height(), pts.len()), (8, 5, 40));
        for (u, v) in [(0, 0), (7, 0), (3, 2), (7, 4), (0, 4)] {
            assert_point(&pts[v * w + u], expected(u, v, depth[v * w + u]));
        }
        // A concrete one by hand: u = 7, v = 4, z = 1 + 0.7 + 4 = 5.7.
        let p = pts[4 * w + 7];
        assert!((p.x - 3.5 * 5.7 / 100.0).abs() < 1e-6);
        assert!((p.y - 2.0 * 5.7 / 200.0).abs() < 1e-6);
        assert!((p.z - 5.7).abs() < 1e-6);
    }

    #[test]
    fn invalid_and_out_of_range_are_nan() {
        let depth = [0.5, 1.0, 2.0, 3.0, f32::NAN, f32::INFINITY, 0.0, -1.0, 2.5];
        let range = RangeLimits::new(1.0, 2.5);
        let (_, pts) = backproject(&depth, 3, 3, &INTR, 1, range).unwrap();
        let valid: Vec<bool> = pts.iter().map(|p| !p.x.is_nan()).collect();
        assert_eq!(
            valid,
            [false, true, true, false, false, false, false, false, true]
        );
        for (i, p) in pts.iter().enumerate() {
            if valid[i] {
                assert_point(p, expected(i % 3, i / 3, depth[i]));
            } else {
                assert!(p.x.is_nan() && p.y.is_nan() && p.z.is_nan(), "{i}: {p:?}");
            }
        }
    }

    #[test]
    fn decimation_sizes_and_pixels() {
        for (w, h, k, gw, gh) in [
            (8, 5, 1, 8, 5),
            (8, 5, 2, 4, 3),
            (7, 5, 3, 3, 2),
            (9, 9, 4, 3, 3),
            (5, 3, 8, 1, 1),
        ] {
            let depth = ramp(w, h);
            let (grid, pts) = backproject(&depth, w, h, &INTR, k, RangeLimits::UNLIMITED).unwrap();
            assert_eq!(
                (grid.width(), grid.height(), pts.len()),
                (gw, gh, gw * gh),
                "{w}x{h}/{k}"
            );
            for row in 0..gh {
                for col in 0..gw {
                    let (u, v) = (col * k, row * k);
                    assert_eq!(grid.source_pixel(col, row), (u, v));
                    assert_point(&pts[row * gw + col], expected(u, v, depth[v * w + u]));
                }
            }
        }
        assert_eq!(SampleGrid::new(4, 4, 0).decimation(), 1);
    }

    #[test]
    fn reuses_output_and_checks_size() {
        let projector = Backprojector::new(INTR, SampleGrid::new(4, 3, 1));
        let mut out = vec![Point3::new(9.0, 9.0, 9.0); 100];
        projector
            .backproject_into(&ramp(4, 3), RangeLimits::UNLIMITED, &mut out)
            .unwrap();
        assert_eq!(out.len(), 12);
        assert_point(&out[5], expected(1, 1, 1.1 + 1.0));
        let err = projector.backproject_into(&ramp(4, 2), RangeLimits::UNLIMITED, &mut out);
        assert!(matches!(err, Err(Error::InvalidImage(m)) if m.contains("8 values")));
    }
}
