//! Numerical parity with the PyTorch reference (tests/reference): the golden
//! arrays were computed by HF transformers' CLIP/SigLIP and the reference
//! decoder on the same seeded weights.

mod common;

use candle_core::{Device, Tensor};
use clip_depth_ros::{ImageView, ModelFiles, PixelFormat};
use common::*;

const BAR_224: f32 = 1e-4;
const BAR_640: f32 = 1e-3;

fn depth_224(files: &ModelFiles) -> Vec<f32> {
    let est = load(files);
    let (px, w, h) = rgb("scene_224.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let (depth, _) = est.estimate(&view, None).unwrap();
    assert_eq!((depth.width, depth.height), (224, 224));
    depth.data
}

fn assert_close(what: &str, ours: &[f32], reference: &[f32], bar: f32) {
    let rel = rel_max_diff(ours, reference);
    assert!(rel <= bar, "{what}: max|diff|/max|ref| = {rel:e} > {bar:e}");
}

#[test]
fn every_hidden_state_and_the_pooler_match_hf_clip() {
    let est = load(&tiny_clip_files("checkpoint.safetensors"));
    let (px, w, h) = rgb("scene_224.png");
    let pixels = est.preprocess(&[ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap()]).unwrap();
    let taps: Vec<usize> = (0..=12).collect();
    let out = est.model().downcast_ref::<clip_depth_ros::model::SpaceClip>().unwrap().hidden_states(&pixels, &taps).unwrap();
    let reference = Tensor::read_npy(tiny_clip().join("expected/hidden_states_224.npy")).unwrap();
    assert_eq!(reference.dims(), &[13, 197, 64]);
    for (k, h) in out.hidden_states.iter().enumerate() {
        let ours = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theirs = reference.get(k).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&format!("hidden state {k}"), &ours, &theirs, BAR_224);
    }
    let pooler = out.pooler.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close("pooler", &pooler, &golden(tiny_clip().join("expected/pooler_224.npy")), BAR_224);
}

#[test]
fn depth_at_224_matches_from_the_pt_checkpoint() {
    let ours = depth_224(&tiny_clip_files("checkpoint.pt"));
    assert_close("depth 224 (.pt)", &ours, &golden(tiny_clip().join("expected/depth_224.npy")), BAR_224);
}

#[test]
fn depth_at_224_matches_from_safetensors() {
    let ours = depth_224(&tiny_clip_files("checkpoint.safetensors"));
    assert_close("depth 224 (.safetensors)", &ours, &golden(tiny_clip().join("expected/depth_224.npy")), BAR_224);
}

#[test]
fn depth_at_224_matches_from_dataparallel_transformers5_checkpoint() {
    let ours = depth_224(&tiny_clip_files("checkpoint_module.pt"));
    assert_close("depth 224 (module.)", &ours, &golden(tiny_clip().join("expected/depth_224.npy")), BAR_224);
}

#[test]
fn depth_at_224_matches_from_decoder_plus_hf_clip_file() {
    // No --clip-config: the config.json beside the CLIP weights is used.
    let files = ModelFiles {
        config: tiny_clip().join("config.yaml"),
        checkpoint: tiny_clip().join("decoder.safetensors"),
        clip_weights: Some(tiny_clip().join("clip/model.safetensors")),
        clip_config: None,
    };
    let ours = depth_224(&files);
    assert_close("depth 224 (decoder + CLIP)", &ours, &golden(tiny_clip().join("expected/depth_224.npy")), BAR_224);
}

#[test]
fn raw_head_output_matches_before_clamping() {
    let est = load(&tiny_clip_files("checkpoint.safetensors"));
    let (px, w, h) = rgb("scene_224.png");
    let pixels = est.preprocess(&[ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap()]).unwrap();
    let head = est.model().forward(&pixels).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close("depth head", &head, &golden(tiny_clip().join("expected/depth_head_224.npy")), BAR_224);
}

#[test]
fn preprocessing_of_640x480_matches_pil_bicubic() {
    let est = load(&tiny_clip_files("checkpoint.safetensors"));
    let (px, w, h) = rgb("scene_640x480.png");
    assert_eq!((w, h), (640, 480));
    let pixels = est.preprocess(&[ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap()]).unwrap();
    let ours = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let reference = golden(tiny_clip().join("expected/pixel_values_640x480.npy"));
    // Same 8-bit pixels as Pillow: only float rounding of the normalisation
    // may differ (one grey level would be 1/255/std = 0.015).
    let worst = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-5, "pixel values differ by {worst}: not Pillow's bicubic");
}

#[test]
fn depth_at_640x480_matches_including_both_resizes() {
    let est = load(&tiny_clip_files("checkpoint.pt"));
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let (depth, _) = est.estimate(&view, None).unwrap();
    assert_eq!((depth.width, depth.height), (640, 480));
    assert_close("depth 640x480", &depth.data, &golden(tiny_clip().join("expected/depth_640x480.npy")), BAR_640);
}

#[test]
fn siglip_backbone_and_depth_match() {
    let files = ModelFiles {
        config: tiny_siglip().join("config.yaml"),
        checkpoint: tiny_siglip().join("checkpoint.safetensors"),
        clip_weights: None,
        clip_config: Some(tiny_siglip().join("siglip_config.json")),
    };
    let est = load(&files);
    let (px, w, h) = rgb("scene_224.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let pixels = est.preprocess(&[view]).unwrap();
    let taps: Vec<usize> = (0..=12).collect();
    let out = est.model().downcast_ref::<clip_depth_ros::model::SpaceClip>().unwrap().hidden_states(&pixels, &taps).unwrap();
    let reference = Tensor::read_npy(tiny_siglip().join("expected/hidden_states_224.npy")).unwrap();
    assert_eq!(reference.dims(), &[13, 196, 64]);
    for (k, h) in out.hidden_states.iter().enumerate() {
        let ours = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theirs = reference.get(k).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&format!("siglip hidden state {k}"), &ours, &theirs, BAR_224);
    }
    let pooler = out.pooler.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close("siglip pooler", &pooler, &golden(tiny_siglip().join("expected/pooler_224.npy")), BAR_224);
    let (depth, _) = est.estimate(&view, None).unwrap();
    assert_close("siglip depth 224", &depth.data, &golden(tiny_siglip().join("expected/depth_224.npy")), BAR_224);
}

#[test]
fn a_batch_gives_each_frame_its_own_depth() {
    let mut est = load(&tiny_clip_files("checkpoint.safetensors"));
    // One forward pass over the batch (not the CPU's split into single frames).
    est.set_batch_split(false);
    let (a, aw, ah) = rgb("scene_224.png");
    let (b, bw, bh) = rgb("scene_640x480.png");
    let va = ImageView::packed(&a, aw, ah, PixelFormat::Rgb8).unwrap();
    let vb = ImageView::packed(&b, bw, bh, PixelFormat::Rgb8).unwrap();
    let (batch, timings) = est.estimate_batch(&[va, vb], (224, 224)).unwrap();
    assert_eq!(timings.groups, 1, "the batch ran as one pass");
    let (single_a, _) = est.estimate(&va, Some((224, 224))).unwrap();
    let (single_b, _) = est.estimate(&vb, Some((224, 224))).unwrap();
    assert!(rel_max_diff(&batch[0].data, &single_a.data) < 1e-5);
    assert!(rel_max_diff(&batch[1].data, &single_b.data) < 1e-5);
    assert!(rel_max_diff(&batch[0].data, &batch[1].data) > 1e-2, "two scenes gave the same depth");
    let _ = Device::Cpu;
}
