//! `sensor_msgs/PointCloud2` payloads in the layout depth_image_proc and PCL
//! use, so RViz, pcl_ros and Nav2 read them without field lookups going
//! wrong: `x, y, z` FLOAT32 at 0, 4, 8 with 4 padding bytes (point_step 16),
//! or with colour an `rgb` FLOAT32 at 16 whose bytes are `b, g, r, a`
//! (point_step 32, PCL's `PointXYZRGB`). Organised (one row per decimated
//! depth row), `is_dense = false` because invalid points are NaN,
//! little-endian.
//!
//! Cost: one pass writing `point_step` bytes per point into a buffer that is
//! reused across frames (640x480 xyz = 4.9 MB, xyzrgb = 9.8 MB).

use nalgebra::Point3;

use super::backproject::SampleGrid;
use crate::error::{Error, Result};
use crate::image::{ImageView, PixelFormat};

/// `sensor_msgs/PointField.FLOAT32`.
pub const FLOAT32: u8 = 7;

/// `sensor_msgs/PointField`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointField {
    pub name: &'static str,
    pub offset: u32,
    pub datatype: u8,
    pub count: u32,
}

const fn float32(name: &'static str, offset: u32) -> PointField {
    PointField {
        name,
        offset,
        datatype: FLOAT32,
        count: 1,
    }
}

const XYZ_FIELDS: [PointField; 3] = [float32("x", 0), float32("y", 4), float32("z", 8)];
const XYZRGB_FIELDS: [PointField; 4] = [
    float32("x", 0),
    float32("y", 4),
    float32("z", 8),
    float32("rgb", 16),
];

/// Everything of a `PointCloud2` but the header and the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointCloudLayout {
    pub width: u32,
    pub height: u32,
    pub fields: &'static [PointField],
    pub point_step: u32,
    /// `width * point_step`.
    pub row_step: u32,
    pub is_bigendian: bool,
    pub is_dense: bool,
}

impl PointCloudLayout {
    /// The layout of an organised `width` x `height` cloud, with or without
    /// the `rgb` field. Errors if `row_step * height` overflows u32/usize.
    pub fn new(width: u32, height: u32, with_rgb: bool) -> Result<Self> {
        let (fields, point_step): (&'static [PointField], u32) = if with_rgb {
            (&XYZRGB_FIELDS, 32)
        } else {
            (&XYZ_FIELDS, 16)
        };
        let row_step = width
            .checked_mul(point_step)
            .filter(|rs| rs.checked_mul(height).is_some())
            .ok_or_else(|| {
                Error::InvalidImage(format!("point cloud {width}x{height} is too large"))
            })?;
        Ok(Self {
            width,
            height,
            fields,
            point_step,
            row_step,
            is_bigendian: false,
            is_dense: false,
        })
    }

    pub fn has_rgb(&self) -> bool {
        self.fields.len() == XYZRGB_FIELDS.len()
    }

    /// `row_step * height`: the length of the data array.
    pub fn data_len(&self) -> usize {
        self.row_step as usize * self.height as usize
    }
}

/// Writes `points` (organised as `grid`, e.g. from `Backprojector`) into
/// `out` as PointCloud2 data and returns the matching layout. `out` is
/// resized only when the size changes, so after the first frame no
/// allocation happens; every byte, padding included (zero), is rewritten.
///
/// With `colour`, each point gets the colour of the pixel it came from:
/// depth pixel `grid.source_pixel(col, row)` mapped to the colour image's
/// nearest pixel when the sizes differ (pixel-centre aligned, so a colour
/// image of the same size is sampled 1:1). Any [`PixelFormat`] works
/// (mono is grey); alpha is written as 255.
pub fn write_point_cloud(
    points: &[Point3<f32>],
    grid: &SampleGrid,
    colour: Option<&ImageView<'_>>,
    out: &mut Vec<u8>,
) -> Result<PointCloudLayout> {
    if points.len() != grid.len() {
        return Err(Error::InvalidImage(format!(
            "{} points for a {}x{} cloud",
            points.len(),
            grid.width(),
            grid.height()
        )));
    }
    let too_large = || Error::InvalidImage("point cloud is too large".into());
    let layout = PointCloudLayout::new(
        u32::try_from(grid.width()).map_err(|_| too_large())?,
        u32::try_from(grid.height()).map_err(|_| too_large())?,
        colour.is_some(),
    )?;
    let len = layout.data_len();
    if out.len() != len {
        out.clear();
        out.resize(len, 0);
    }
    if points.is_empty() {
        return Ok(layout);
    }
    let step = layout.point_step as usize;
    let rows = out
        .chunks_exact_mut(layout.row_step as usize)
        .zip(points.chunks_exact(grid.width()));
    for (row, (out_row, pts)) in rows.enumerate() {
        for (o, p) in out_row.chunks_exact_mut(step).zip(pts) {
            o[0..4].copy_from_slice(&p.x.to_le_bytes());
            o[4..8].copy_from_slice(&p.y.to_le_bytes());
            o[8..12].copy_from_slice(&p.z.to_le_bytes());
            o[12..16].fill(0);
        }
        if let Some(img) = colour {
            let (_, v) = grid.source_pixel(0, row);
            let src = img.row(nearest(v, grid.source_height(), img.height()));
            let ch = img.format().channels();
            for (col, o) in out_row.chunks_exact_mut(step).enumerate() {
                let (u, _) = grid.source_pixel(col, row);
                let cu = nearest(u, grid.source_width(), img.width());
                let (r, g, b) = rgb(img.format(), &src[cu * ch..cu * ch + ch]);
                o[16..20].copy_from_slice(&[b, g, r, 255]);
                o[20..32].fill(0);
            }
        }
    }
    Ok(layout)
}

/// Nearest pixel in an axis of `to` pixels for pixel `i` of `from` pixels,
/// matching pixel centres: `floor((i + 0.5) * to / from)`, in integers.
fn nearest(i: usize, from: usize, to: usize) -> usize {
    if from == to {
        return i;
    }
    let n = (2 * i as u64 + 1) * to as u64 / (2 * from as u64);
    (n as usize).min(to - 1)
}

#[inline]
fn rgb(format: PixelFormat, px: &[u8]) -> (u8, u8, u8) {
    match format {
        PixelFormat::Rgb8 | PixelFormat::Rgba8 => (px[0], px[1], px[2]),
        PixelFormat::Bgr8 | PixelFormat::Bgra8 => (px[2], px[1], px[0]),
        PixelFormat::Mono8 => (px[0], px[0], px[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_at(data: &[u8], offset: usize) -> f32 {
        f32::from_le_bytes(data[offset..offset + 4].try_into().unwrap())
    }

    fn points(n: usize) -> Vec<Point3<f32>> {
        (0..n)
            .map(|i| Point3::new(i as f32, -(i as f32) * 0.5, 1.0 + i as f32))
            .collect()
    }

    #[test]
    fn xyz_layout() {
        let l = PointCloudLayout::new(3, 2, false).unwrap();
        assert_eq!((l.point_step, l.row_step, l.data_len()), (16, 48, 96));
        assert!(!l.is_bigendian && !l.is_dense && !l.has_rgb());
        let fields: Vec<_> = l
            .fields
            .iter()
            .map(|f| (f.name, f.offset, f.datatype, f.count))
            .collect();
        assert_eq!(fields, [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]);
        let l = PointCloudLayout::new(3, 2, true).unwrap();
        assert_eq!(
            (
                l.point_step,
                l.row_step,
                l.fields[3].name,
                l.fields[3].offset
            ),
            (32, 96, "rgb", 16)
        );
        assert!(PointCloudLayout::new(u32::MAX / 16, 2, false).is_err());
    }

    #[test]
    fn xyz_bytes_and_padding() {
        let grid = SampleGrid::new(3, 2, 1);
        let mut pts = points(6);
        pts[4] = Point3::new(f32::NAN, f32::NAN, f32::NAN);
        let mut out = vec![0xAA; 96]; // garbage of the right length: must be overwritten
        let l = write_point_cloud(&pts, &grid, None, &mut out).unwrap();
        assert_eq!((l.width, l.height, out.len()), (3, 2, 96));
        for (i, p) in pts.iter().enumerate() {
            let o = i * 16;
            if i == 4 {
                assert!(f32_at(&out, o).is_nan() && f32_at(&out, o + 8).is_nan());
            } else {
                assert_eq!(
                    [f32_at(&out, o), f32_at(&out, o + 4), f32_at(&out, o + 8)],
                    [p.x, p.y, p.z]
                );
            }
            assert_eq!(&out[o + 12..o + 16], &[0; 4]);
        }
    }

    #[test]
    fn rgb_bytes_order_and_formats() {
        // 2x1 depth, same-size colour: red then (10, 20, 30).
        let grid = SampleGrid::new(2, 1, 1);
        let pts = points(2);
        let rgb_data = [255, 0, 0, 10, 20, 30];
        let bgr_data = [0, 0, 255, 30, 20, 10];
        let mut out = vec![0xAA; 64];
        for img in [
            ImageView::packed(&rgb_data, 2, 1, PixelFormat::Rgb8).unwrap(),
            ImageView::packed(&bgr_data, 2, 1, PixelFormat::Bgr8).unwrap(),
        ] {
            let l = write_point_cloud(&pts, &grid, Some(&img), &mut out).unwrap();
            assert_eq!((l.point_step, out.len()), (32, 64));
            assert_eq!(&out[16..20], &[0, 0, 255, 255]); // b, g, r, a
            assert_eq!(&out[48..52], &[30, 20, 10, 255]);
            assert_eq!(f32_at(&out, 32 + 8), pts[1].z);
            for o in [0, 32] {
                assert_eq!(&out[o + 12..o + 16], &[0; 4]);
                assert_eq!(&out[o + 20..o + 32], &[0; 12]);
            }
        }
        let mono = [7, 9];
        let img = ImageView::packed(&mono, 2, 1, PixelFormat::Mono8).unwrap();
        write_point_cloud(&pts, &grid, Some(&img), &mut out).unwrap();
        assert_eq!(&out[48..52], &[9, 9, 9, 255]);
    }

    /// Colour value encoding its pixel: r = x, g = y.
    fn coord_image(w: usize, h: usize, pad: usize) -> Vec<u8> {
        let mut d = Vec::new();
        for y in 0..h {
            for x in 0..w {
                d.extend([x as u8, y as u8, 0]);
            }
            d.extend(std::iter::repeat_n(0xEE, pad));
        }
        d
    }

    fn sampled(out: &[u8]) -> Vec<(u8, u8)> {
        out.chunks_exact(32).map(|p| (p[18], p[17])).collect()
    }

    #[test]
    fn colour_nearest_with_decimation_and_size_change() {
        // 4x4 depth decimated by 2 samples (0,0) (2,0) (0,2) (2,2); a 2x2
        // colour image (with row padding) has those at (0,0) (1,0) (0,1) (1,1).
        let grid = SampleGrid::new(4, 4, 2);
        let data = coord_image(2, 2, 2);
        let img = ImageView::new(&data, 2, 2, 8, PixelFormat::Rgb8).unwrap();
        let mut out = Vec::new();
        write_point_cloud(&points(4), &grid, Some(&img), &mut out).unwrap();
        assert_eq!(sampled(&out), [(0, 0), (1, 0), (0, 1), (1, 1)]);

        // 2x2 depth, 4x4 colour: depth pixel u maps to floor((u + 0.5) * 2).
        let grid = SampleGrid::new(2, 2, 1);
        let data = coord_image(4, 4, 0);
        let img = ImageView::packed(&data, 4, 4, PixelFormat::Rgb8).unwrap();
        write_point_cloud(&points(4), &grid, Some(&img), &mut out).unwrap();
        assert_eq!(sampled(&out), [(1, 1), (3, 1), (1, 3), (3, 3)]);

        // 3x1 depth decimated by 2 (u = 0, 2), 5x1 colour: floor(0.5*5/3) = 0, floor(2.5*5/3) = 4.
        let grid = SampleGrid::new(3, 1, 2);
        let data = coord_image(5, 1, 0);
        let img = ImageView::packed(&data, 5, 1, PixelFormat::Rgb8).unwrap();
        write_point_cloud(&points(2), &grid, Some(&img), &mut out).unwrap();
        assert_eq!(sampled(&out), [(0, 0), (4, 0)]);
    }

    #[test]
    fn reuses_buffer_and_checks_count() {
        let grid = SampleGrid::new(4, 3, 1);
        let mut out = Vec::new();
        write_point_cloud(&points(12), &grid, None, &mut out).unwrap();
        let ptr = out.as_ptr();
        write_point_cloud(&points(12), &grid, None, &mut out).unwrap();
        assert_eq!(out.as_ptr(), ptr);
        let err = write_point_cloud(&points(11), &grid, None, &mut out);
        assert!(matches!(err, Err(Error::InvalidImage(_))));
    }
}
