//! Reduced precision agrees with f32 (weights converted at load, BatchNorm
//! folded in f32 first, output always f32).

mod common;

use clip_depth_ros::{DepthEstimator, DeviceSpec, ImageView, ModelDType, PixelFormat};
use common::*;

const BAR: f32 = 1e-2;

fn depth(device: DeviceSpec, dtype: &str) -> Result<Vec<f32>, String> {
    let est = DepthEstimator::load(&tiny_clip_files("checkpoint.safetensors"), device, dtype.parse::<ModelDType>().unwrap())
        .map_err(|e| e.to_string())?;
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let (d, _) = est.estimate(&view, None).map_err(|e| e.to_string())?;
    Ok(d.data)
}

#[test]
fn f16_on_the_cpu_agrees_with_f32() {
    let f32_depth = depth(DeviceSpec::Cpu, "f32").unwrap();
    let f16_depth = depth(DeviceSpec::Cpu, "f16").unwrap();
    let rel = rel_max_diff(&f16_depth, &f32_depth);
    assert!(rel <= BAR, "f16 vs f32: {rel:e}");
    assert!(rel > 0.0, "f16 gave bit-identical output: the dtype was not applied");
}

#[test]
fn bf16_on_the_cpu_is_refused_clearly() {
    // candle has no bf16 matmul on the CPU: say so instead of failing mid-inference.
    let err = depth(DeviceSpec::Cpu, "bf16").unwrap_err();
    assert!(err.contains("bf16") && err.contains("CPU"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Needs a CUDA build (feature cuda) and an NVIDIA GPU: shown as ignored
/// elsewhere, and a failure in a CUDA build without a device.
#[test]
#[cfg_attr(not(feature = "cuda"), ignore = "needs the cuda feature and an NVIDIA GPU")]
fn reduced_precision_on_cuda_agrees_with_f32() {
    assert!(candle_core::Device::new_cuda(0).is_ok(), "a CUDA build without a usable CUDA device 0");
    let reference = depth(DeviceSpec::Cpu, "f32").unwrap();
    for dtype in ["f32", "f16", "bf16"] {
        let d = depth(DeviceSpec::Cuda(0), dtype).unwrap();
        let rel = rel_max_diff(&d, &reference);
        let bar = if dtype == "f32" { 1e-4 } else { BAR };
        assert!(rel <= bar, "cuda {dtype} vs cpu f32: {rel:e}");
    }
}
