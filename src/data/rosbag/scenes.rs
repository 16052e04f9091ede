//! The synthetic scenes (`data::synth`) as a rosbag2 recording of an RGB-D
//! camera: colour, depth, both camera_infos and `/tf_static`, with the depth
//! camera beside the colour camera when unregistered, so that the bag path
//! can be exercised end to end with exact depth.

use std::path::PathBuf;

use super::messages::{self, CameraInfo, Header, Image, TfMessage, TransformStamped};
use super::writer::BagWriter;
use super::BagError;
use crate::data::depth::metres_to_mm;
use crate::data::synth::{depth_rig, RenderedScene, SceneSink};
use crate::geometry::rigid::quaternion;
use crate::geometry::{CameraInfoData, PinholeIntrinsics};

pub const COLOUR_FRAME: &str = "camera_color_optical_frame";
pub const DEPTH_FRAME: &str = "camera_depth_optical_frame";
pub const RIG_FRAME: &str = "camera_link";
pub const COLOUR_TOPIC: &str = "/camera/color/image_raw";
pub const COLOUR_INFO_TOPIC: &str = "/camera/color/camera_info";
pub const DEPTH_TOPIC: &str = "/camera/depth/image_raw";
pub const DEPTH_INFO_TOPIC: &str = "/camera/depth/camera_info";

/// The rotation from a body frame (x forward, y left, z up) to the optical
/// frame (x right, y down, z forward), REP 103: columns are the optical
/// axes in body coordinates.
const BODY_FROM_OPTICAL: [[f64; 3]; 3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]];
fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// The `/tf_static` message of the rig: the colour optical frame at the
/// rig's origin, the depth optical frame offset as [`depth_rig`] says (or,
/// registered, at the colour frame's place).
pub fn rig_transforms(stamp_ns: i64, unregistered: bool) -> TfMessage {
    let colour = TransformStamped {
        header: Header::from_ns(stamp_ns, RIG_FRAME),
        child_frame_id: COLOUR_FRAME.into(),
        translation: [0.0; 3],
        rotation: quaternion(&BODY_FROM_OPTICAL),
    };
    let (offset, turn) = if unregistered { depth_rig() } else { ([0.0; 3], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) };
    let t = |v: [f64; 3]| -> [f64; 3] {
        let m = &BODY_FROM_OPTICAL;
        [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
    };
    let depth = TransformStamped {
        header: Header::from_ns(stamp_ns, RIG_FRAME),
        child_frame_id: DEPTH_FRAME.into(),
        translation: t(offset),
        rotation: quaternion(&matmul(&BODY_FROM_OPTICAL, &turn)),
    };
    TfMessage { transforms: vec![colour, depth] }
}

/// A `sensor_msgs/CameraInfo` for rectified pinhole intrinsics.
pub fn camera_info(i: &PinholeIntrinsics, width: usize, height: usize, header: Header) -> CameraInfo {
    CameraInfo {
        header,
        info: CameraInfoData {
            width: width as u32,
            height: height as u32,
            distortion_model: "plumb_bob".into(),
            d: vec![0.0; 5],
            k: [i.fx, 0.0, i.cx, 0.0, i.fy, i.cy, 0.0, 0.0, 1.0],
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [i.fx, 0.0, i.cx, 0.0, 0.0, i.fy, i.cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            ..Default::default()
        },
    }
}

/// Stamps of the scenes in a bag: 10 frames a second from a fixed start.
pub fn stamp_of(index: usize) -> i64 {
    1_700_000_000_000_000_000 + index as i64 * 100_000_000
}

/// A bag the scenes are written to as they are rendered.
pub struct SceneBag {
    writer: BagWriter,
}

impl SceneBag {
    /// Creates the bag with its topics and the rig's `/tf_static`.
    pub fn create(path: &std::path::Path, unregistered: bool) -> Result<Self, BagError> {
        let mut b = BagWriter::create(path)?;
        b.add_topic("/tf_static", messages::TF_MESSAGE, true)?;
        for (topic, ty) in [
            (COLOUR_TOPIC, messages::IMAGE),
            (COLOUR_INFO_TOPIC, messages::CAMERA_INFO),
            (DEPTH_TOPIC, messages::IMAGE),
            (DEPTH_INFO_TOPIC, messages::CAMERA_INFO),
        ] {
            b.add_topic(topic, ty, false)?;
        }
        b.write("/tf_static", stamp_of(0), &rig_transforms(stamp_of(0), unregistered).encode())?;
        Ok(Self { writer: b })
    }

    /// Closes the bag; its path.
    pub fn finish(self) -> Result<PathBuf, BagError> {
        self.writer.finish()
    }
}

impl SceneSink for SceneBag {
    fn scene(&mut self, scene: &RenderedScene<'_>) -> Result<(), String> {
        write_scene(&mut self.writer, scene).map_err(|e| e.to_string())
    }
}

fn write_scene(b: &mut BagWriter, r: &RenderedScene<'_>) -> Result<(), BagError> {
    let ((w, h), intr) = (r.size, r.intrinsics);
    let stamp = stamp_of(r.index);
    let log = stamp + 2_000_000;
    let colour = Image {
        header: Header::from_ns(stamp, COLOUR_FRAME),
        height: h as u32,
        width: w as u32,
        encoding: "rgb8".into(),
        is_bigendian: false,
        step: (w * 3) as u32,
        data: r.rgb,
    };
    b.write(COLOUR_TOPIC, log, &colour.encode())?;
    b.write(COLOUR_INFO_TOPIC, log, &camera_info(intr, w, h, Header::from_ns(stamp, COLOUR_FRAME)).encode())?;
    let (bytes, frame, dw, dh, dintr): (Vec<u8>, &str, usize, usize, &PinholeIntrinsics) = match r.rig_depth {
        Some((d, (dw, dh), dintr)) => (
            d.iter().flat_map(|&m| (if m > 0.0 { metres_to_mm(f64::from(m)) } else { 0 }).to_le_bytes()).collect(),
            DEPTH_FRAME,
            dw,
            dh,
            dintr,
        ),
        None => (r.depth_mm.iter().flat_map(|v| v.to_le_bytes()).collect(), COLOUR_FRAME, w, h, intr),
    };
    let depth = Image {
        header: Header::from_ns(stamp, frame),
        height: dh as u32,
        width: dw as u32,
        encoding: "16UC1".into(),
        is_bigendian: false,
        step: (dw * 2) as u32,
        data: &bytes,
    };
    b.write(DEPTH_TOPIC, log + 1_000_000, &depth.encode())?;
    b.write(DEPTH_INFO_TOPIC, log + 1_000_000, &camera_info(dintr, dw, dh, Header::from_ns(stamp, frame)).encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rosbag::tf::TfTree;
    use crate::data::synth::Pose;
    use crate::geometry::Rigid;

    #[test]
    fn the_rig_in_tf_matches_the_rendered_rig() {
        let mut tree = TfTree::default();
        tree.add(&rig_transforms(0, true));
        let t = tree.lookup(COLOUR_FRAME, DEPTH_FRAME).unwrap();
        let (offset, turn) = depth_rig();
        let want = Rigid { r: turn, t: offset };
        for p in [[0.0, 0.0, 1.0], [0.3, -0.2, 2.5]] {
            let (a, b) = (t.apply(p), want.apply(p));
            assert!((0..3).all(|i| (a[i] - b[i]).abs() < 1e-12), "{a:?} vs {b:?}");
        }
        // And the rig pose places the depth camera where the transform says.
        let pose = Pose::looking([1.0, 1.5, -2.0], 0.7, -0.2, 0.03);
        let rig = pose.rig(offset, turn);
        let world = |pose: &Pose, p: [f64; 3]| (0..3).fold(pose.position, |acc, k| crate::data::synth::shapes::add(acc, crate::data::synth::shapes::scale(pose.axes[k], p[k])));
        let p = [0.2, 0.1, 3.0];
        let (a, b) = (world(&rig, p), world(&pose, t.apply(p)));
        assert!((0..3).all(|i| (a[i] - b[i]).abs() < 1e-12));
    }
}
