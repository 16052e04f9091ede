//! The library's error type: every failure a user can cause (bad files, bad
//! configs, bad images) ends up here with a message that names the culprit.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("invalid config {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("invalid model config: {0}")]
    ModelConfig(String),

    #[error("cannot load weights from {path}: {message}")]
    Weights { path: PathBuf, message: String },

    #[error("checkpoint does not match the model: {0}")]
    WeightMismatch(String),

    #[error("invalid image: {0}")]
    InvalidImage(String),

    #[error("invalid camera info: {0}")]
    InvalidCameraInfo(String),

    #[error("device: {0}")]
    Device(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
