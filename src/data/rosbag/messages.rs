//! The ROS 2 messages a dataset is made from, decoded from (and encoded to)
//! CDR: `sensor_msgs/Image`, `CompressedImage`, `CameraInfo` and
//! `tf2_msgs/TFMessage`, with their `ros2msg` definitions for writing MCAP
//! schemas. Field order is the message definitions' order.

use super::cdr::{CdrReader, CdrWriter};
use super::BagError;
use crate::geometry::{CameraInfoData, RegionOfInterest};

pub const IMAGE: &str = "sensor_msgs/msg/Image";
pub const COMPRESSED_IMAGE: &str = "sensor_msgs/msg/CompressedImage";
pub const CAMERA_INFO: &str = "sensor_msgs/msg/CameraInfo";
pub const TF_MESSAGE: &str = "tf2_msgs/msg/TFMessage";

/// `std_msgs/Header`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub sec: i32,
    pub nanosec: u32,
    pub frame_id: String,
}

impl Header {
    /// The stamp in nanoseconds.
    pub fn stamp_ns(&self) -> i64 {
        i64::from(self.sec) * 1_000_000_000 + i64::from(self.nanosec)
    }

    pub fn from_ns(ns: i64, frame_id: &str) -> Self {
        Self { sec: ns.div_euclid(1_000_000_000) as i32, nanosec: ns.rem_euclid(1_000_000_000) as u32, frame_id: frame_id.into() }
    }

    fn read(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { sec: r.i32("header.stamp.sec")?, nanosec: r.u32("header.stamp.nanosec")?, frame_id: r.string("header.frame_id")? })
    }

    fn write(&self, w: &mut CdrWriter) {
        w.i32(self.sec);
        w.u32(self.nanosec);
        w.string(&self.frame_id);
    }
}

/// The header every image and camera_info message starts with; cheap, the
/// rest of the message is not touched.
pub fn read_header(data: &[u8]) -> Result<Header, BagError> {
    Header::read(&mut CdrReader::new(data)?)
}

/// `sensor_msgs/Image`, its pixels borrowed from the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<'a> {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: bool,
    pub step: u32,
    pub data: &'a [u8],
}

impl<'a> Image<'a> {
    pub fn decode(data: &'a [u8]) -> Result<Self, BagError> {
        let mut r = CdrReader::new(data)?;
        Ok(Self {
            header: Header::read(&mut r)?,
            height: r.u32("height")?,
            width: r.u32("width")?,
            encoding: r.string("encoding")?,
            is_bigendian: r.u8("is_bigendian")? != 0,
            step: r.u32("step")?,
            data: r.bytes("data")?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = CdrWriter::new();
        self.header.write(&mut w);
        w.u32(self.height);
        w.u32(self.width);
        w.string(&self.encoding);
        w.u8(self.is_bigendian as u8);
        w.u32(self.step);
        w.bytes(self.data);
        w.finish()
    }
}

/// `sensor_msgs/CompressedImage`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedImage<'a> {
    pub header: Header,
    pub format: String,
    pub data: &'a [u8],
}

impl<'a> CompressedImage<'a> {
    pub fn decode(data: &'a [u8]) -> Result<Self, BagError> {
        let mut r = CdrReader::new(data)?;
        Ok(Self { header: Header::read(&mut r)?, format: r.string("format")?, data: r.bytes("data")? })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = CdrWriter::new();
        self.header.write(&mut w);
        w.string(&self.format);
        w.bytes(self.data);
        w.finish()
    }
}

/// `sensor_msgs/CameraInfo`: its header and the fields as geometry uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    pub header: Header,
    pub info: CameraInfoData,
}

impl CameraInfo {
    pub fn decode(data: &[u8]) -> Result<Self, BagError> {
        let mut r = CdrReader::new(data)?;
        let header = Header::read(&mut r)?;
        let height = r.u32("height")?;
        let width = r.u32("width")?;
        let distortion_model = r.string("distortion_model")?;
        let d = r.f64_seq("d")?;
        let k = r.f64_array::<9>("k")?;
        let rr = r.f64_array::<9>("r")?;
        let p = r.f64_array::<12>("p")?;
        let binning_x = r.u32("binning_x")?;
        let binning_y = r.u32("binning_y")?;
        // RegionOfInterest: x_offset, y_offset, height, width, do_rectify.
        let x_offset = r.u32("roi.x_offset")?;
        let y_offset = r.u32("roi.y_offset")?;
        let roi_height = r.u32("roi.height")?;
        let roi_width = r.u32("roi.width")?;
        let do_rectify = r.bool("roi.do_rectify")?;
        let roi = RegionOfInterest { x_offset, y_offset, width: roi_width, height: roi_height, do_rectify };
        let info = CameraInfoData { width, height, distortion_model, d, k, r: rr, p, binning_x, binning_y, roi };
        Ok(Self { header, info })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = CdrWriter::new();
        self.header.write(&mut w);
        let i = &self.info;
        w.u32(i.height);
        w.u32(i.width);
        w.string(&i.distortion_model);
        w.f64_seq(&i.d);
        w.f64_array(&i.k);
        w.f64_array(&i.r);
        w.f64_array(&i.p);
        w.u32(i.binning_x);
        w.u32(i.binning_y);
        w.u32(i.roi.x_offset);
        w.u32(i.roi.y_offset);
        w.u32(i.roi.height);
        w.u32(i.roi.width);
        w.bool(i.roi.do_rectify);
        w.finish()
    }
}

/// `geometry_msgs/TransformStamped`: the pose of `child_frame_id` in
/// `header.frame_id` (maps child coordinates into the parent frame).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformStamped {
    pub header: Header,
    pub child_frame_id: String,
    pub translation: [f64; 3],
    /// x, y, z, w.
    pub rotation: [f64; 4],
}

/// `tf2_msgs/TFMessage`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TfMessage {
    pub transforms: Vec<TransformStamped>,
}

impl TfMessage {
    pub fn decode(data: &[u8]) -> Result<Self, BagError> {
        let mut r = CdrReader::new(data)?;
        // Each transform is at least a header and 7 doubles.
        let n = r.u32("transforms")? as usize;
        if n > data.len() / 64 {
            return Err(BagError::Decode(format!("transforms: {n} entries cannot fit in {} bytes", data.len())));
        }
        let mut transforms = Vec::with_capacity(n);
        for _ in 0..n {
            let header = Header::read(&mut r)?;
            let child_frame_id = r.string("child_frame_id")?;
            let translation = r.f64_array::<3>("transform.translation")?;
            let rotation = r.f64_array::<4>("transform.rotation")?;
            transforms.push(TransformStamped { header, child_frame_id, translation, rotation });
        }
        Ok(Self { transforms })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = CdrWriter::new();
        w.u32(self.transforms.len() as u32);
        for t in &self.transforms {
            t.header.write(&mut w);
            w.string(&t.child_frame_id);
            w.f64_array(&t.translation);
            w.f64_array(&t.rotation);
        }
        w.finish()
    }
}

const SEPARATOR: &str = "================================================================================\n";

const HEADER_DEF: &str = "builtin_interfaces/Time stamp\nstring frame_id\n";
const TIME_DEF: &str = "int32 sec\nuint32 nanosec\n";

fn with_deps(main: &str, deps: &[(&str, &str)]) -> String {
    let mut s = main.to_string();
    for (name, def) in deps {
        s.push_str(SEPARATOR);
        s.push_str(&format!("MSG: {name}\n{def}"));
    }
    s
}

/// The `ros2msg` definition text (with its dependencies, as rosbag2 writes
/// MCAP schemas) of a message type this module encodes.
pub fn definition(type_name: &str) -> Option<String> {
    let header = [("std_msgs/Header", HEADER_DEF), ("builtin_interfaces/Time", TIME_DEF)];
    Some(match type_name {
        IMAGE => with_deps(
            "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n",
            &header,
        ),
        COMPRESSED_IMAGE => with_deps("std_msgs/Header header\nstring format\nuint8[] data\n", &header),
        CAMERA_INFO => with_deps(
            "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\n\
             float64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\n\
             sensor_msgs/RegionOfInterest roi\n",
            &[
                header[0],
                header[1],
                ("sensor_msgs/RegionOfInterest", "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n"),
            ],
        ),
        TF_MESSAGE => with_deps(
            "geometry_msgs/TransformStamped[] transforms\n",
            &[
                ("geometry_msgs/TransformStamped", "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/Transform transform\n"),
                header[0],
                header[1],
                ("geometry_msgs/Transform", "geometry_msgs/Vector3 translation\ngeometry_msgs/Quaternion rotation\n"),
                ("geometry_msgs/Vector3", "float64 x\nfloat64 y\nfloat64 z\n"),
                ("geometry_msgs/Quaternion", "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n"),
            ],
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let px = [1u8, 2, 3, 4, 5, 6];
        let img = Image {
            header: Header::from_ns(1_700_000_000_123_456_789, "cam"),
            height: 1,
            width: 2,
            encoding: "rgb8".into(),
            is_bigendian: false,
            step: 6,
            data: &px,
        };
        let bytes = img.encode();
        assert_eq!(Image::decode(&bytes).unwrap(), img);
        assert_eq!(read_header(&bytes).unwrap().stamp_ns(), 1_700_000_000_123_456_789);
        let info = CameraInfo {
            header: Header::from_ns(5, "cam"),
            info: CameraInfoData {
                width: 4,
                height: 3,
                distortion_model: "plumb_bob".into(),
                d: vec![0.1, 0.2],
                k: [1.0; 9],
                r: [2.0; 9],
                p: [3.0; 12],
                binning_x: 1,
                binning_y: 2,
                roi: RegionOfInterest { x_offset: 1, y_offset: 2, width: 3, height: 4, do_rectify: true },
            },
        };
        assert_eq!(CameraInfo::decode(&info.encode()).unwrap(), info);
        let tf = TfMessage {
            transforms: vec![TransformStamped {
                header: Header::from_ns(0, "base"),
                child_frame_id: "cam".into(),
                translation: [1.0, 2.0, 3.0],
                rotation: [0.0, 0.0, 0.0, 1.0],
            }],
        };
        assert_eq!(TfMessage::decode(&tf.encode()).unwrap(), tf);
        // Every truncation is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(Image::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        assert!(definition(CAMERA_INFO).unwrap().contains("MSG: sensor_msgs/RegionOfInterest"));
    }
}
