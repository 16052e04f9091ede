//! Whether a camera_info can be trusted for one image: a depth node pairs
//! images and camera_infos by stamp, and a camera_info of another size (a
//! different stream, a stale calibration after a mode change) or with
//! unusable numbers would turn every point of the cloud into a wrong one
//! without any visible error. Checked per frame; the frame is skipped with
//! the reason.

use super::intrinsics::{CameraInfoData, PinholeIntrinsics};
use crate::error::{Error, Result};

/// The intrinsics of `info` for an image of `width` x `height` pixels, or why
/// it cannot be used: it describes another size (after ROI and binning,
/// [`CameraInfoData::image_size`]), or its K/P give no usable pinhole
/// ([`PinholeIntrinsics::from_camera_info`]).
pub fn check_camera_info(info: &CameraInfoData, width: usize, height: usize) -> Result<PinholeIntrinsics> {
    let (iw, ih) = info.image_size();
    if (iw as usize, ih as usize) != (width, height) {
        return Err(Error::InvalidCameraInfo(format!(
            "camera_info describes a {iw}x{ih} image (after ROI/binning) but the image is {width}x{height}"
        )));
    }
    PinholeIntrinsics::from_camera_info(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RegionOfInterest;

    /// A 640x480 pinhole camera (K = P's left 3x3).
    fn camera(width: u32, height: u32) -> CameraInfoData {
        let (f, cx, cy) = (500.0, 319.5, 239.5);
        CameraInfoData {
            width,
            height,
            k: [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            ..Default::default()
        }
    }

    fn reason(info: &CameraInfoData, w: usize, h: usize) -> String {
        match check_camera_info(info, w, h) {
            Err(Error::InvalidCameraInfo(m)) => m,
            other => panic!("{w}x{h}: expected InvalidCameraInfo, got {other:?}"),
        }
    }

    #[test]
    fn the_matching_size_gives_the_intrinsics() {
        let k = check_camera_info(&camera(640, 480), 640, 480).unwrap();
        assert_eq!((k.fx, k.fy, k.cx, k.cy), (500.0, 500.0, 319.5, 239.5));
    }

    #[test]
    fn another_size_is_refused_with_both_sizes() {
        let m = reason(&camera(640, 480), 320, 240);
        assert!(m.contains("640x480") && m.contains("320x240"), "{m}");
        // Transposed sizes are a different image too.
        assert!(reason(&camera(640, 480), 480, 640).contains("480x640"));
    }

    #[test]
    fn roi_and_binning_set_the_expected_size() {
        let mut info = camera(640, 480);
        info.binning_x = 2;
        info.binning_y = 2;
        let k = check_camera_info(&info, 320, 240).unwrap();
        assert_eq!((k.fx, k.cx), (250.0, 159.75));
        assert!(reason(&info, 640, 480).contains("320x240"));
        info.roi = RegionOfInterest { x_offset: 100, y_offset: 40, width: 200, height: 100, do_rectify: false };
        let k = check_camera_info(&info, 100, 50).unwrap();
        assert_eq!((k.cx, k.cy), ((319.5 - 100.0) / 2.0, (239.5 - 40.0) / 2.0));
    }

    #[test]
    fn unusable_intrinsics_are_refused_with_the_reason() {
        let mut info = camera(640, 480);
        info.p[0] = f64::NAN;
        assert!(reason(&info, 640, 480).contains("fx = P[0] is not finite"));
        let mut info = camera(640, 480);
        info.p[5] = 0.0;
        assert!(reason(&info, 640, 480).contains("fy = P[5] must be positive"));
        let mut info = camera(640, 480);
        info.p = [0.0; 12];
        info.k = [0.0; 9];
        assert!(reason(&info, 640, 480).contains("all zero"));
        // Zero size (uncalibrated) never matches a real image.
        assert!(reason(&camera(0, 0), 640, 480).contains("0x0"));
    }
}
