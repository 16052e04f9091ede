//! An owned RGB8 image, rows packed without padding: what the dataset
//! loader and the bag export hand around once a frame is decoded.

#[derive(Debug, Clone, PartialEq)]
pub struct PackedRgb {
    /// `width * height * 3` bytes, row by row, R G B.
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
}
