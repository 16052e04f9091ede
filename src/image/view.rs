//! A borrowed view of an 8-bit camera frame with an explicit row stride, so a
//! ROS `sensor_msgs/Image` buffer can be handed to the model without a copy.

use crate::error::{Error, Result};

/// Pixel layouts the model accepts directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Mono8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn channels(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
            PixelFormat::Mono8 => 1,
        }
    }

    /// The ROS `sensor_msgs/Image` encoding name of this layout.
    pub fn ros_encoding(self) -> &'static str {
        match self {
            PixelFormat::Rgb8 => "rgb8",
            PixelFormat::Bgr8 => "bgr8",
            PixelFormat::Rgba8 => "rgba8",
            PixelFormat::Bgra8 => "bgra8",
            PixelFormat::Mono8 => "mono8",
        }
    }

    /// Parses a ROS encoding name of an 8-bit layout (`rgb8`, `bgr8`, `rgba8`,
    /// `bgra8`, `mono8`, and `8UC1`/`8UC3` read as mono8/bgr8).
    pub fn from_ros_encoding(encoding: &str) -> Option<Self> {
        Some(match encoding {
            "rgb8" => PixelFormat::Rgb8,
            "bgr8" | "8UC3" => PixelFormat::Bgr8,
            "rgba8" => PixelFormat::Rgba8,
            "bgra8" => PixelFormat::Bgra8,
            "mono8" | "8UC1" => PixelFormat::Mono8,
            _ => return None,
        })
    }
}

/// A validated, borrowed 8-bit image: `height` rows of `stride` bytes, of which
/// the first `width * channels` hold pixels (the rest is row padding).
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
    format: PixelFormat,
}

impl<'a> ImageView<'a> {
    /// Checks sizes so later stages can index without bounds surprises. The
    /// last row may be shorter than `stride` (only its pixels must be there).
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidImage(format!(
                "image has zero size ({width}x{height})"
            )));
        }
        let row_bytes = width
            .checked_mul(format.channels())
            .ok_or_else(|| Error::InvalidImage("image width overflows".into()))?;
        if stride < row_bytes {
            return Err(Error::InvalidImage(format!(
                "row stride {stride} is smaller than width*channels = {row_bytes}"
            )));
        }
        let needed = stride
            .checked_mul(height - 1)
            .and_then(|n| n.checked_add(row_bytes))
            .ok_or_else(|| Error::InvalidImage("image size overflows".into()))?;
        if data.len() < needed {
            return Err(Error::InvalidImage(format!(
                "image data has {} bytes, {}x{} {} with stride {} needs {}",
                data.len(),
                width,
                height,
                format.ros_encoding(),
                stride,
                needed
            )));
        }
        Ok(Self { data, width, height, stride, format })
    }

    /// A tightly packed image (stride = width * channels).
    pub fn packed(data: &'a [u8], width: usize, height: usize, format: PixelFormat) -> Result<Self> {
        Self::new(data, width, height, width * format.channels(), format)
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// All pixels as one slice when rows have no padding.
    pub fn packed_pixels(&self) -> Option<&'a [u8]> {
        let row_bytes = self.width * self.format.channels();
        (self.stride == row_bytes).then(|| &self.data[..row_bytes * self.height])
    }

    /// The pixel bytes of row `y` (without padding).
    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width * self.format.channels()]
    }
}
