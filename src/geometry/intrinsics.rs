//! Camera intrinsics as depth_image_proc uses them: `sensor_msgs/CameraInfo`
//! mirrored as plain data, the pinhole parameters taken from P (not K) with
//! ROI and binning applied, resizing exactly like image_proc/resize, and the
//! camera_info a published depth image must carry.
//!
//! # The depth image's camera_info
//!
//! The input image may be a binned and/or ROI-cropped view of the calibrated
//! sensor (`binning_x/y`, `roi`), and the depth image generally has a
//! different size again (the model's output, resized). A consumer such as
//! depth_image_proc computes `fx = P[0] / binning_x`,
//! `cx = (P[2] - roi.x_offset) / binning_x`, and uses `width`/`height` as the
//! image size only when no ROI/binning is set. Copying the input's ROI and
//! binning and then resizing would make those numbers wrong: image_proc's
//! resize scales the ROI offset but not the binning, and `width`/`height`
//! would no longer be the calibrated size the ROI refers to.
//!
//! So [`depth_camera_info`] first bakes ROI and binning into K and P (what
//! image_geometry does internally), clears them (`roi` all zero,
//! `binning_x = binning_y = 0`) and sets `width`/`height` to the input
//! image's real size, then scales to the depth size like image_proc/resize.
//! The result describes the depth image exactly and on its own: any
//! consumer, whether it honours ROI/binning or ignores them, computes the same
//! intrinsics as [`PinholeIntrinsics::from_camera_info`] on the input scaled
//! to the depth size. An all-zero P is filled from K (`P = [K | 0]`) so that
//! P-only consumers work too. D and R are copied unchanged: they describe the
//! same physical camera and are not used for rectified images.

use crate::error::{Error, Result};

/// `sensor_msgs/RegionOfInterest`. All zero (or zero width/height) means the
/// full image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionOfInterest {
    pub x_offset: u32,
    pub y_offset: u32,
    pub width: u32,
    pub height: u32,
    pub do_rectify: bool,
}

/// The fields of `sensor_msgs/CameraInfo` (without the header) that geometry
/// needs; the ROS node converts the r2r message into this and back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CameraInfoData {
    /// Calibrated (full sensor) size; the image is smaller when ROI/binning
    /// are set, see [`CameraInfoData::image_size`].
    pub width: u32,
    pub height: u32,
    pub distortion_model: String,
    pub d: Vec<f64>,
    /// Intrinsic matrix of the raw image, row-major 3x3.
    pub k: [f64; 9],
    /// Rectification rotation, row-major 3x3.
    pub r: [f64; 9],
    /// Projection matrix of the rectified image, row-major 3x4.
    pub p: [f64; 12],
    /// 0 and 1 both mean no binning.
    pub binning_x: u32,
    pub binning_y: u32,
    pub roi: RegionOfInterest,
}

impl CameraInfoData {
    /// The size of the images this camera_info describes: the ROI (full size
    /// when its width/height is 0) divided by the binning (0 = 1), rounded
    /// down as camera drivers do. Lets a node check that an image matches its
    /// camera_info before trusting the intrinsics.
    pub fn image_size(&self) -> (u32, u32) {
        let roi_w = if self.roi.width == 0 {
            self.width
        } else {
            self.roi.width
        };
        let roi_h = if self.roi.height == 0 {
            self.height
        } else {
            self.roi.height
        };
        (roi_w / self.binning_x.max(1), roi_h / self.binning_y.max(1))
    }

    fn p_is_zero(&self) -> bool {
        self.p.iter().all(|&v| v == 0.0)
    }
}

/// Pinhole parameters in pixels of the image actually received (ROI and
/// binning already applied), pixel centres at integer coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinholeIntrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl PinholeIntrinsics {
    /// Intrinsics as depth_image_proc (image_geometry) computes them: from P
    /// (`fx = P[0]`, `fy = P[5]`, `cx = P[2]`, `cy = P[6]`), or from K when P
    /// is all zero (uncalibrated-rectification drivers); then the principal
    /// point is shifted by the ROI offset and everything divided by the
    /// binning. Rejects what would silently produce garbage clouds: zero
    /// size, an all-zero camera, and non-finite or non-positive focal
    /// lengths or non-finite principal points.
    pub fn from_camera_info(info: &CameraInfoData) -> Result<Self> {
        if info.width == 0 || info.height == 0 {
            return Err(Error::InvalidCameraInfo(format!(
                "zero size {}x{} (camera not calibrated?)",
                info.width, info.height
            )));
        }
        let (m, fx, fy, cx, cy) = if info.p_is_zero() {
            if info.k.iter().all(|&v| v == 0.0) {
                return Err(Error::InvalidCameraInfo(
                    "K and P are all zero (camera not calibrated)".into(),
                ));
            }
            (
                "K",
                (0, info.k[0]),
                (4, info.k[4]),
                (2, info.k[2]),
                (5, info.k[5]),
            )
        } else {
            (
                "P",
                (0, info.p[0]),
                (5, info.p[5]),
                (2, info.p[2]),
                (6, info.p[6]),
            )
        };
        for (what, (idx, f)) in [("fx", fx), ("fy", fy)] {
            if !f.is_finite() {
                return Err(Error::InvalidCameraInfo(format!(
                    "focal length {what} = {m}[{idx}] is not finite ({f})"
                )));
            }
            if f <= 0.0 {
                return Err(Error::InvalidCameraInfo(format!(
                    "focal length {what} = {m}[{idx}] must be positive, got {f}"
                )));
            }
        }
        for (what, (idx, c)) in [("cx", cx), ("cy", cy)] {
            if !c.is_finite() {
                return Err(Error::InvalidCameraInfo(format!(
                    "principal point {what} = {m}[{idx}] is not finite ({c})"
                )));
            }
        }
        let bx = f64::from(info.binning_x.max(1));
        let by = f64::from(info.binning_y.max(1));
        Ok(Self {
            fx: fx.1 / bx,
            fy: fy.1 / by,
            cx: (cx.1 - f64::from(info.roi.x_offset)) / bx,
            cy: (cy.1 - f64::from(info.roi.y_offset)) / by,
        })
    }

    /// Intrinsics of the image resized by `sx` horizontally and `sy`
    /// vertically, with image_proc/resize's convention (`cx * sx`), so that
    /// this agrees with [`scale_camera_info`].
    pub fn scaled(&self, sx: f64, sy: f64) -> Self {
        Self {
            fx: self.fx * sx,
            fy: self.fy * sy,
            cx: self.cx * sx,
            cy: self.cy * sy,
        }
    }
}

/// Resizes a camera_info to `new_width` x `new_height` exactly as
/// image_proc/resize does: `sx = new_width / width`, `sy = new_height /
/// height`; `k[0], k[2] *= sx`; `k[4], k[5] *= sy`; `p[0], p[2], p[3] *= sx`;
/// `p[5], p[6] *= sy`; ROI offsets and sizes scaled and truncated;
/// width/height set. Everything else is copied.
///
/// The old size is `info.width`/`info.height`, which is the image size only
/// without ROI/binning: pass the result of [`bake_roi_and_binning`] when
/// they may be set (as [`depth_camera_info`] does). A zero old dimension has
/// nothing to scale from: that axis keeps its parameters (scale 1).
pub fn scale_camera_info(info: &CameraInfoData, new_width: u32, new_height: u32) -> CameraInfoData {
    let ratio = |new: u32, old: u32| {
        if old == 0 {
            1.0
        } else {
            f64::from(new) / f64::from(old)
        }
    };
    let sx = ratio(new_width, info.width);
    let sy = ratio(new_height, info.height);
    let mut out = info.clone();
    out.width = new_width;
    out.height = new_height;
    out.k[0] *= sx;
    out.k[2] *= sx;
    out.k[4] *= sy;
    out.k[5] *= sy;
    out.p[0] *= sx;
    out.p[2] *= sx;
    out.p[3] *= sx;
    out.p[5] *= sy;
    out.p[6] *= sy;
    // `as u32` truncates (and saturates), like image_proc's static_cast<int>.
    out.roi.x_offset = (f64::from(info.roi.x_offset) * sx) as u32;
    out.roi.y_offset = (f64::from(info.roi.y_offset) * sy) as u32;
    out.roi.width = (f64::from(info.roi.width) * sx) as u32;
    out.roi.height = (f64::from(info.roi.height) * sy) as u32;
    out
}

/// The same camera_info with ROI and binning folded into K and P, as
/// image_geometry does before use: principal points shifted by the ROI
/// offset, then `k[0], k[2], p[0], p[2], p[3]` divided by `binning_x` and
/// `k[4], k[5], p[5], p[6], p[7]` by `binning_y`. An all-zero P is first
/// filled from K (`[K | 0]`). ROI and binning are cleared and
/// width/height become [`CameraInfoData::image_size`]. Validates like
/// [`PinholeIntrinsics::from_camera_info`].
pub fn bake_roi_and_binning(info: &CameraInfoData) -> Result<CameraInfoData> {
    PinholeIntrinsics::from_camera_info(info)?;
    let (w, h) = info.image_size();
    if w == 0 || h == 0 {
        return Err(Error::InvalidCameraInfo(format!(
            "ROI {}x{} with binning {}x{} leaves an empty image",
            info.roi.width, info.roi.height, info.binning_x, info.binning_y
        )));
    }
    let mut out = info.clone();
    if out.p_is_zero() {
        for row in 0..3 {
            out.p[row * 4..row * 4 + 3].copy_from_slice(&info.k[row * 3..row * 3 + 3]);
        }
    }
    let (xo, yo) = (f64::from(info.roi.x_offset), f64::from(info.roi.y_offset));
    out.k[2] -= xo;
    out.k[5] -= yo;
    out.p[2] -= xo;
    out.p[6] -= yo;
    let bx = f64::from(info.binning_x.max(1));
    let by = f64::from(info.binning_y.max(1));
    for i in [0, 2] {
        out.k[i] /= bx;
    }
    for i in [0, 2, 3] {
        out.p[i] /= bx;
    }
    for i in [4, 5] {
        out.k[i] /= by;
    }
    for i in [5, 6, 7] {
        out.p[i] /= by;
    }
    out.width = w;
    out.height = h;
    out.binning_x = 0;
    out.binning_y = 0;
    out.roi = RegionOfInterest::default();
    Ok(out)
}

/// The camera_info to publish with a `depth_width` x `depth_height` depth
/// image computed from an image described by `input`: ROI/binning baked in
/// (see the module docs for why), then resized like image_proc/resize.
pub fn depth_camera_info(
    input: &CameraInfoData,
    depth_width: u32,
    depth_height: u32,
) -> Result<CameraInfoData> {
    if depth_width == 0 || depth_height == 0 {
        return Err(Error::InvalidCameraInfo(format!(
            "depth image has zero size {depth_width}x{depth_height}"
        )));
    }
    let baked = bake_roi_and_binning(input)?;
    Ok(scale_camera_info(&baked, depth_width, depth_height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// 640x480 camera, K and P differ so tests can tell which one was used.
    fn info() -> CameraInfoData {
        CameraInfoData {
            width: 640,
            height: 480,
            distortion_model: "plumb_bob".into(),
            d: vec![0.1, -0.2, 0.0, 0.0, 0.0],
            k: [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0],
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [
                450.0, 0.0, 310.0, -45.0, 0.0, 460.0, 230.0, 0.0, 0.0, 0.0, 1.0, 0.0,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn uses_p_not_k() {
        let i = PinholeIntrinsics::from_camera_info(&info()).unwrap();
        assert_eq!(
            i,
            PinholeIntrinsics {
                fx: 450.0,
                fy: 460.0,
                cx: 310.0,
                cy: 230.0
            }
        );
    }

    #[test]
    fn falls_back_to_k_when_p_is_zero() {
        let mut c = info();
        c.p = [0.0; 12];
        let i = PinholeIntrinsics::from_camera_info(&c).unwrap();
        assert_eq!(
            i,
            PinholeIntrinsics {
                fx: 500.0,
                fy: 510.0,
                cx: 320.0,
                cy: 240.0
            }
        );
    }

    #[test]
    fn roi_then_binning() {
        let mut c = info();
        c.roi = RegionOfInterest {
            x_offset: 100,
            y_offset: 50,
            width: 400,
            height: 300,
            do_rectify: false,
        };
        c.binning_x = 2;
        c.binning_y = 4;
        let i = PinholeIntrinsics::from_camera_info(&c).unwrap();
        assert!(close(i.fx, 225.0));
        assert!(close(i.fy, 115.0));
        assert!(close(i.cx, (310.0 - 100.0) / 2.0));
        assert!(close(i.cy, (230.0 - 50.0) / 4.0));
        assert_eq!(c.image_size(), (200, 75));
    }

    #[test]
    fn binning_zero_means_one() {
        let mut c = info();
        c.binning_x = 0;
        c.binning_y = 1;
        let i = PinholeIntrinsics::from_camera_info(&c).unwrap();
        assert_eq!(i, PinholeIntrinsics::from_camera_info(&info()).unwrap());
        assert_eq!(c.image_size(), (640, 480));
    }

    fn err_message(c: &CameraInfoData) -> String {
        match PinholeIntrinsics::from_camera_info(c) {
            Err(Error::InvalidCameraInfo(m)) => m,
            other => panic!("expected InvalidCameraInfo, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_focal_lengths() {
        for (idx, bad, word) in [
            (0, f64::NAN, "not finite"),
            (0, f64::INFINITY, "not finite"),
            (5, 0.0, "positive"),
            (5, -300.0, "positive"),
        ] {
            let mut c = info();
            c.p[idx] = bad;
            let m = err_message(&c);
            assert!(m.contains(word) && m.contains(&format!("P[{idx}]")), "{m}");
        }
        let mut c = info();
        c.p = [0.0; 12];
        c.k[4] = -1.0;
        assert!(err_message(&c).contains("K[4]"));
        let mut c = info();
        c.p[2] = f64::NAN;
        assert!(err_message(&c).contains("cx"));
    }

    #[test]
    fn rejects_zero_size_and_uncalibrated() {
        let mut c = info();
        c.width = 0;
        assert!(err_message(&c).contains("zero size"));
        let mut c = info();
        c.k = [0.0; 9];
        c.p = [0.0; 12];
        assert!(err_message(&c).contains("all zero"));
    }

    #[test]
    fn scale_like_image_proc_resize() {
        let mut c = info();
        c.roi = RegionOfInterest {
            x_offset: 101,
            y_offset: 51,
            width: 401,
            height: 301,
            do_rectify: true,
        };
        let s = scale_camera_info(&c, 320, 120); // sx = 0.5, sy = 0.25
        assert_eq!((s.width, s.height), (320, 120));
        assert_eq!(s.k, [250.0, 0.0, 160.0, 0.0, 127.5, 60.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            s.p,
            [225.0, 0.0, 155.0, -22.5, 0.0, 115.0, 57.5, 0.0, 0.0, 0.0, 1.0, 0.0]
        );
        // Truncated: 50.5 -> 50, 12.75 -> 12, 200.5 -> 200, 75.25 -> 75.
        assert_eq!(
            s.roi,
            RegionOfInterest {
                x_offset: 50,
                y_offset: 12,
                width: 200,
                height: 75,
                do_rectify: true
            }
        );
        assert_eq!(
            (s.d.clone(), s.r, s.distortion_model.clone()),
            (c.d, c.r, c.distortion_model)
        );
    }

    #[test]
    fn scaled_intrinsics_agree_with_scaled_info() {
        let s = scale_camera_info(&info(), 224, 168);
        let a = PinholeIntrinsics::from_camera_info(&s).unwrap();
        let b = PinholeIntrinsics::from_camera_info(&info())
            .unwrap()
            .scaled(0.35, 0.35);
        for (x, y) in [(a.fx, b.fx), (a.fy, b.fy), (a.cx, b.cx), (a.cy, b.cy)] {
            assert!(close(x, y), "{a:?} vs {b:?}");
        }
        assert!(close(b.fx, 157.5) && close(b.cy, 80.5));
    }

    #[test]
    fn depth_info_bakes_roi_and_binning() {
        let mut c = info();
        c.roi = RegionOfInterest {
            x_offset: 100,
            y_offset: 40,
            width: 400,
            height: 320,
            do_rectify: false,
        };
        c.binning_x = 2;
        c.binning_y = 2;
        // Received image: 200x160. Depth image: 100x80 (scale 0.5).
        let d = depth_camera_info(&c, 100, 80).unwrap();
        assert_eq!(
            (d.width, d.height, d.binning_x, d.binning_y),
            (100, 80, 0, 0)
        );
        assert_eq!(d.roi, RegionOfInterest::default());
        // Hand-computed: fx = 450 / 2 * 0.5, cx = (310 - 100) / 2 * 0.5, ...
        let p = d.p;
        assert!(close(p[0], 112.5) && close(p[2], 52.5) && close(p[3], -11.25));
        assert!(close(p[5], 115.0) && close(p[6], 47.5));
        assert!(close(d.k[0], 125.0) && close(d.k[2], 55.0));
        assert!(close(d.k[4], 127.5) && close(d.k[5], 50.0));
        // What depth_image_proc would compute equals the scaled input intrinsics.
        let from_depth = PinholeIntrinsics::from_camera_info(&d).unwrap();
        let expected = PinholeIntrinsics::from_camera_info(&c)
            .unwrap()
            .scaled(0.5, 0.5);
        assert_eq!(from_depth, expected);
    }

    #[test]
    fn depth_info_fills_p_from_k() {
        let mut c = info();
        c.p = [0.0; 12];
        let d = depth_camera_info(&c, 320, 240).unwrap();
        assert_eq!(
            d.p,
            [250.0, 0.0, 160.0, 0.0, 0.0, 255.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        );
    }

    #[test]
    fn depth_info_rejects_invalid() {
        let mut c = info();
        c.p[0] = f64::NAN;
        assert!(matches!(
            depth_camera_info(&c, 10, 10),
            Err(Error::InvalidCameraInfo(_))
        ));
        assert!(matches!(
            depth_camera_info(&info(), 0, 10),
            Err(Error::InvalidCameraInfo(_))
        ));
        let mut c = info();
        c.binning_x = 1000;
        assert!(matches!(
            depth_camera_info(&c, 10, 10),
            Err(Error::InvalidCameraInfo(_))
        ));
    }
}
