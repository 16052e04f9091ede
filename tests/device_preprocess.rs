//! Preprocessing as tensor operations on the model's device (the GPU path),
//! run here on the CPU device: it must give Pillow's 8-bit pixels exactly
//! (only float rounding of the normalisation may differ), in every pixel
//! layout, and the same depth as the reference.

mod common;

use candle_core::Device;
use clip_depth_ros::image::device_preprocess::DevicePreprocessor;
use clip_depth_ros::{ImageView, PixelFormat};
use common::*;

/// Float noise of the normalisation; one grey level would be 0.015.
const SAME_PIXELS: f32 = 1e-5;

fn worst_difference(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()))
}

fn on_device(pre: &DevicePreprocessor, view: &ImageView<'_>) -> Vec<f32> {
    pre.process(view, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn matches_pillow_pixels_of_the_reference() {
    let est = load(&tiny_clip_files("checkpoint.safetensors"));
    let pre = est.model().input_description().device_preprocessor();
    let (px, w, h) = rgb("scene_640x480.png");
    let ours = on_device(&pre, &ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap());
    let worst = worst_difference(&ours, &golden(tiny_clip().join("expected/pixel_values_640x480.npy")));
    assert!(worst <= SAME_PIXELS, "pixel values differ by {worst}: not Pillow's bicubic");
}

#[test]
fn every_layout_and_stride_matches_the_cpu_path() {
    let est = load(&tiny_clip_files("checkpoint.safetensors"));
    let cfg = est.model().input_description();
    let (pre, cpu) = (cfg.device_preprocessor(), cfg.preprocessor());
    for scene in ["scene_640x480.png", "scene_224.png"] {
        let (rgb, w, h) = rgb(scene);
        let bgra: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0], 7]).collect();
        let mono: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
        // RGB rows padded to a stride with junk after each row.
        let stride = w * 3 + 5;
        let padded: Vec<u8> = rgb.chunks_exact(w * 3).flat_map(|r| r.iter().copied().chain([9u8; 5])).collect();
        let views = [
            ("rgb8", ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap()),
            ("bgra8", ImageView::packed(&bgra, w, h, PixelFormat::Bgra8).unwrap()),
            ("mono8", ImageView::packed(&mono, w, h, PixelFormat::Mono8).unwrap()),
            ("padded rgb8", ImageView::new(&padded, w, h, stride, PixelFormat::Rgb8).unwrap()),
        ];
        for (what, view) in views {
            let worst = worst_difference(&on_device(&pre, &view), &cpu.process(&view).unwrap());
            assert!(worst <= SAME_PIXELS, "{scene} {what}: pixel values differ by {worst}");
        }
    }
}

#[test]
fn depth_with_device_preprocessing_matches_the_reference() {
    let mut est = load(&tiny_clip_files("checkpoint.pt"));
    est.set_device_preprocessing(true);
    assert!(est.device_preprocessing());
    let (px, w, h) = rgb("scene_640x480.png");
    let (depth, _) = est.estimate(&ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap(), None).unwrap();
    let reference = golden(tiny_clip().join("expected/depth_640x480.npy"));
    let diff = rel_max_diff(&depth.data, &reference);
    assert!(diff <= 1e-3, "depth differs by {diff} relative");
}
