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

    /// Only the first line: candle appends a backtrace when RUST_BACKTRACE
    /// is set (and not kept as the error's source, which would print it).
    #[error("{}", first_line(.0))]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

/// Makes a panic (a bug, never user data) print one readable line,
/// `<program>: internal error: ...`, instead of a backtrace.
pub fn one_line_panics(program: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("{program}: internal error: {}", panic_message(info.payload()).replace('\n', " "));
    }));
}

/// The text a panic carries (`panic!` with a literal or a format).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "unknown panic",
    }
}

fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().trim().to_string()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_errors_show_one_line_without_their_backtrace() {
        std::env::set_var("RUST_BACKTRACE", "1");
        let inner = candle_core::Error::Msg("unsupported dtype BF16 for op matmul".into()).bt();
        assert!(inner.to_string().lines().count() > 1, "candle did not attach a backtrace");
        let ours = Error::from(inner).to_string();
        assert_eq!(ours, "unsupported dtype BF16 for op matmul");
    }
}
