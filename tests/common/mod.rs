//! Shared helpers for the integration tests: fixture paths, golden arrays,
//! the parity measure.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::Tensor;
use clip_depth_ros::{DepthEstimator, DeviceSpec, ModelDType, ModelFiles};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_clip() -> PathBuf {
    fixtures().join("tiny_clip")
}

pub fn tiny_siglip() -> PathBuf {
    fixtures().join("tiny_siglip")
}

pub fn image_path(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

/// Packed RGB8 pixels of a fixture image.
pub fn rgb(name: &str) -> (Vec<u8>, usize, usize) {
    let img = image::open(image_path(name)).expect("fixture image").to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    (img.into_raw(), w, h)
}

pub fn golden(path: PathBuf) -> Vec<f32> {
    Tensor::read_npy(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// max |a - b| / max |b|: the parity measure of the reference README.
pub fn rel_max_diff(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len(), "length differs");
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "reference is all zeros: the test would prove nothing");
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

pub fn tiny_clip_files(checkpoint: &str) -> ModelFiles {
    ModelFiles {
        config: tiny_clip().join("config.yaml"),
        checkpoint: tiny_clip().join(checkpoint),
        clip_weights: None,
        clip_config: Some(tiny_clip().join("clip_config.json")),
    }
}

/// The model on the CPU in f32. Bin-based heads give the bins' weighted
/// mean everywhere (`BeyondBins::Keep`), as the references compute it.
pub fn load(files: &ModelFiles) -> DepthEstimator {
    load_as(files, DeviceSpec::Cpu, ModelDType::default())
}

/// As [`load`] on another device or in another precision.
pub fn load_as(files: &ModelFiles, device: DeviceSpec, dtype: ModelDType) -> DepthEstimator {
    let mut est = DepthEstimator::load(files, device, dtype).unwrap_or_else(|e| panic!("loading {}: {e}", files.checkpoint.display()));
    est.set_beyond_bins(clip_depth_ros::model::prompt_bins::BeyondBins::Keep);
    est
}
