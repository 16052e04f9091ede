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

/// The one rule for a strided image buffer, shared by [`ImageView`] and the
/// ROS message adapter ([`crate::image::ros_image`]): a non-zero size, rows of
/// at least `width * bytes_per_pixel` bytes, and data up to the last pixel
/// of the last row (which may stop short of the stride, as a crop of a
/// larger buffer does). `what` names the image in the error, e.g. `"rgb8
/// image"`. Returns the bytes of pixels per row.
pub fn check_layout(
    what: &str,
    width: usize,
    height: usize,
    stride: usize,
    bytes_per_pixel: usize,
    data_len: usize,
) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidImage(format!("{what} has zero size ({width}x{height})")));
    }
    let overflow = || Error::InvalidImage(format!("{what} size overflows ({width}x{height}, stride {stride})"));
    let row_bytes = width.checked_mul(bytes_per_pixel).ok_or_else(overflow)?;
    if stride < row_bytes {
        return Err(Error::InvalidImage(format!(
            "{what} row stride {stride} is smaller than width {width} * {bytes_per_pixel} bytes = {row_bytes}"
        )));
    }
    let needed = stride
        .checked_mul(height - 1)
        .and_then(|n| n.checked_add(row_bytes))
        .ok_or_else(overflow)?;
    if data_len < needed {
        return Err(Error::InvalidImage(format!(
            "{what} data has {data_len} bytes, {width}x{height} with stride {stride} needs {needed}"
        )));
    }
    Ok(row_bytes)
}

impl<'a> ImageView<'a> {
    /// Checks sizes ([`check_layout`]) so later stages can index without
    /// bounds surprises.
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self> {
        let what = format!("{} image", format.ros_encoding());
        check_layout(&what, width, height, stride, format.channels(), data.len())?;
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
