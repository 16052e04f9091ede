//! DepthCLIP against its PyTorch reference (tests/reference/depthclip_ref.py,
//! itself checked against OpenCLIP and transformers): text features, image
//! tokens, depth on the token grid and in the frame, for every weight
//! format (OpenAI TorchScript, OpenCLIP .bin and .safetensors, Hugging Face
//! CLIPModel); reduced precision; and the errors a user can cause.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use clip_depth_ros::model::prompt_bins::PromptOverrides;
use clip_depth_ros::model::{ModifiedResNet, ResnetConfig};
use clip_depth_ros::weights::ClipStateDict;
use clip_depth_ros::estimator::{ModelFamily, ModelOverrides};
use clip_depth_ros::{DepthEstimator, DeviceSpec, ImageView, ModelDType, ModelFiles, PixelFormat};
use common::*;

const BAR: f32 = 1e-4;

fn dir(tower: &str) -> PathBuf {
    fixtures().join("depthclip").join(tower)
}

fn expected(tower: &str, name: &str) -> Tensor {
    let path = dir(tower).join("expected").join(name);
    Tensor::read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, bar: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
    let rel = rel_max_diff(&values(ours), &values(reference));
    eprintln!("{what}: max|diff|/max|ref| = {rel:.2e}");
    assert!(rel <= bar, "{what}: max|diff|/max|ref| = {rel:e} > {bar:e}");
}

/// The four weight files, each with the config it needs.
fn formats() -> Vec<(&'static str, &'static str, ModelFiles)> {
    let rn = dir("rn");
    let vit = dir("vit");
    let files = |tower: &Path, checkpoint: PathBuf, clip_config: Option<PathBuf>| ModelFiles {
        config: tower.join("depthclip.yaml"),
        checkpoint,
        clip_weights: None,
        clip_config,
    };
    vec![
        // OpenAI's TorchScript carries no config; this tiny one's text heads
        // are not width / 64, so its OpenCLIP config is given.
        ("rn", "OpenAI TorchScript", files(&rn, rn.join("RN-tiny.pt"), Some(rn.join("open_clip_config.json")))),
        ("rn", "OpenCLIP .bin", files(&rn, rn.join("open_clip_pytorch_model.bin"), None)),
        ("vit", "Hugging Face", files(&vit, vit.join("hf/model.safetensors"), None)),
        ("vit", "OpenCLIP .safetensors", files(&vit, vit.join("open_clip/open_clip_model.safetensors"), None)),
    ]
}

fn load_dtype(files: &ModelFiles, dtype: &str) -> DepthEstimator {
    load_as(files, DeviceSpec::Cpu, dtype.parse::<ModelDType>().unwrap())
}

fn frame() -> (Vec<u8>, usize, usize) {
    rgb("scene_640x480.png")
}

#[test]
fn every_format_gives_the_reference_text_features() {
    for (tower, format, files) in formats() {
        let est = load(&files);
        assert_eq!(est.family(), ModelFamily::DepthClip);
        let ours = est.model().downcast_ref::<clip_depth_ros::model::DepthClip>().unwrap().text_features().t().unwrap();
        assert_close(&format!("{format}: text features"), &ours, &expected(tower, "text_features.npy"), BAR);
    }
}

#[test]
fn prompts_tokenise_as_the_reference() {
    for tower in ["rn", "vit"] {
        let cfg = clip_depth_ros::model::DepthClipConfig::from_yaml_file(&dir(tower).join("depthclip.yaml")).unwrap();
        let tokenizer = clip_depth_ros::model::text::ClipTokenizer::openai();
        let ids = clip_depth_ros::model::depthclip::prompt_ids(&cfg, &tokenizer, 77).unwrap();
        let reference = expected(tower, "prompt_ids.npy").to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap();
        let ours: Vec<Vec<i64>> = ids.iter().map(|r| r.iter().map(|&i| i as i64).collect()).collect();
        assert_eq!(ours, reference, "{tower}");
    }
}

#[test]
fn resnet_tokens_and_depth_match_from_the_torchscript_and_the_bin() {
    let (px, w, h) = frame();
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    for (tower, format, files) in formats().into_iter().filter(|f| f.0 == "rn") {
        let est = load(&files);
        let model = est.model().downcast_ref::<clip_depth_ros::model::DepthClip>().unwrap();
        let pixels = est.preprocess(&[view]).unwrap();
        assert_eq!(pixels.dims(), &[1, 3, 416, 544], "{format}: the NYU crop");
        let (tokens, grid) = model.image_tokens(&pixels).unwrap();
        assert_eq!(grid, (13, 17));
        assert_close(&format!("{format}: layer4 tokens"), &tokens, &expected(tower, "image_tokens_416x544.npy"), BAR);
        let grid_depth = model.forward(&pixels).unwrap().squeeze(1).unwrap();
        assert_close(&format!("{format}: depth grid (flip averaged)"), &grid_depth, &expected(tower, "depth_grid_416x544.npy"), BAR);
        let no_flip = model.head(&tokens, grid).unwrap().squeeze(1).unwrap();
        assert_close(&format!("{format}: depth grid"), &no_flip, &expected(tower, "depth_grid_noflip_416x544.npy"), BAR);

        // The frame: the crop's depth in place, NaN (no reading) around it.
        let (depth, timings) = est.estimate(&view, None).unwrap();
        assert!(timings.encoder > timings.decoder, "{format}: stage timings {timings:?}");
        assert_eq!((depth.width, depth.height), (640, 480));
        let mut inside = Vec::with_capacity(544 * 416);
        for (i, v) in depth.data.iter().enumerate() {
            let (x, y) = (i % 640, i / 640);
            if (60..604).contains(&x) && (56..472).contains(&y) {
                inside.push(*v);
            } else {
                assert!(v.is_nan(), "{format}: ({x}, {y}) outside the crop is {v}, not NaN");
            }
        }
        let reference = values(&expected(tower, "depth_crop_416x544.npy"));
        let rel = rel_max_diff(&inside, &reference);
        assert!(rel <= BAR, "{format}: depth in the frame {rel:e}");
    }
}

#[test]
fn vit_tokens_and_depth_match_from_hugging_face_and_open_clip_files() {
    let (px, w, h) = frame();
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let px64 = expected("rn", "pixel_values_64.npy");
    for (tower, format, files) in formats().into_iter().filter(|f| f.0 == "vit") {
        let est = load(&files);
        let model = est.model().downcast_ref::<clip_depth_ros::model::DepthClip>().unwrap();
        let pixels = est.preprocess(&[view]).unwrap();
        assert_close(&format!("{format}: Pillow squash to 128x96"), &pixels, &expected(tower, "pixel_values_96x128.npy"), 1e-6);
        let (tokens, grid) = model.image_tokens(&pixels).unwrap();
        assert_eq!(grid, (6, 8));
        assert_close(&format!("{format}: tokens (release position resize)"), &tokens, &expected(tower, "image_tokens_96x128.npy"), BAR);
        let (native, _) = model.image_tokens(&px64).unwrap();
        assert_close(&format!("{format}: tokens at 64x64"), &native, &expected(tower, "image_tokens_64.npy"), BAR);
        let grid_depth = model.forward(&pixels).unwrap().squeeze(1).unwrap();
        assert_close(&format!("{format}: depth grid"), &grid_depth, &expected(tower, "depth_grid_96x128.npy"), BAR);
        let (depth, _) = est.estimate(&view, Some((320, 240))).unwrap();
        let ours = Tensor::from_vec(depth.data, (240, 320), &Device::Cpu).unwrap();
        assert_close(&format!("{format}: depth 320x240"), &ours, &expected(tower, "depth_320x240.npy"), BAR);
    }
}

#[test]
fn vit_position_table_resized_on_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(dir("vit").join("depthclip.yaml")).unwrap().replace("sequence_linear", "grid_bilinear");
    let config = tmp.path().join("depthclip.yaml");
    std::fs::write(&config, yaml).unwrap();
    let files = ModelFiles { config, checkpoint: dir("vit").join("hf/model.safetensors"), clip_weights: None, clip_config: None };
    let est = load(&files);
    let (px, w, h) = frame();
    let pixels = est.preprocess(&[ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap()]).unwrap();
    let (tokens, _) = est.model().downcast_ref::<clip_depth_ros::model::DepthClip>().unwrap().image_tokens(&pixels).unwrap();
    assert_close("grid-bilinear tokens", &tokens, &expected("vit", "image_tokens_96x128_grid_bilinear.npy"), BAR);
}

#[test]
fn resnet_attention_pool_gives_clips_image_embedding() {
    let rn = dir("rn");
    let dict = ClipStateDict::from_file(&rn.join("RN-tiny.pt")).unwrap();
    let cfg = ResnetConfig { layers: [1, 1, 1, 1], width: 4, heads: 2, output_dim: 64, image_size: 64 };
    let vb = dict.into_var_builder(DType::F32, &Device::Cpu);
    let resnet = ModifiedResNet::new(vb.pp("visual"), &cfg, true).unwrap();
    let ours = resnet.embedding(&expected("rn", "pixel_values_64.npy")).unwrap();
    assert_close("pooled embedding", &ours, &expected("rn", "image_embedding_64.npy"), BAR);
}

#[test]
fn the_torchscript_archive_reads_as_its_state_dict() {
    let rn = dir("rn");
    let ts = ClipStateDict::from_file(&rn.join("RN-tiny.pt")).unwrap();
    let bin = ClipStateDict::from_file(&rn.join("open_clip_pytorch_model.bin")).unwrap();
    assert_eq!(ts.names(), bin.names());
    // OpenAI's files keep norms in float32 and convolutions in float16.
    assert_eq!(ts.tensors()["visual.bn1.weight"].dtype(), DType::F32);
    assert_eq!(ts.tensors()["visual.conv1.weight"].dtype(), DType::F16);
    for (name, t) in ts.tensors() {
        let a = values(t);
        let b = values(&bin.tensors()[name]);
        assert_eq!(a, b, "{name}");
    }
    let ignored: Vec<&str> = ts.ignored().iter().map(String::as_str).filter(|n| !n.ends_with("num_batches_tracked")).collect();
    assert_eq!(ignored, ["context_length", "input_resolution", "logit_scale", "vocab_size"]);
}

#[test]
fn f16_agrees_with_f32() {
    let (px, w, h) = frame();
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    for (_, format, files) in formats() {
        let reference = load(&files).estimate(&view, Some((160, 120))).unwrap().0.data;
        let half = load_dtype(&files, "f16").estimate(&view, Some((160, 120))).unwrap().0.data;
        let keep = |d: &[f32]| d.iter().copied().filter(|v| v.is_finite()).collect::<Vec<_>>();
        let rel = rel_max_diff(&keep(&half), &keep(&reference));
        assert!(rel <= 1e-2, "{format}: f16 vs f32 {rel:e}");
    }
}

#[test]
fn overrides_replace_the_prompts_and_bins() {
    let (_, _, files) = formats().remove(2);
    let overrides = ModelOverrides {
        model_type: None,
        prompts: PromptOverrides {
            depth_classes: Some(vec!["close".into(), "far".into()]),
            bin_list: Some(vec![1.0, 5.0]),
            ..Default::default()
        },
    };
    let mut est = DepthEstimator::load_with(&files, &overrides, DeviceSpec::Cpu, ModelDType::default()).unwrap();
    est.set_beyond_bins(clip_depth_ros::model::prompt_bins::BeyondBins::Keep);
    assert_eq!(est.model().downcast_ref::<clip_depth_ros::model::DepthClip>().unwrap().text_features().dims(), &[16, 2]);
    assert_eq!(est.depth_range(), (1.0, 5.0));
    let bad = ModelOverrides { prompts: PromptOverrides { bin_list: Some(vec![1.0]), ..Default::default() }, ..overrides.clone() };
    let err = match DepthEstimator::load_with(&files, &bad, DeviceSpec::Cpu, ModelDType::default()) {
        Ok(_) => panic!("a bin list of the wrong length was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("bin_list") && err.lines().count() == 1, "{err}");
}

fn load_err(files: &ModelFiles) -> String {
    match DepthEstimator::load(files, DeviceSpec::Cpu, ModelDType::default()) {
        Ok(_) => panic!("{} loaded", files.checkpoint.display()),
        Err(e) => {
            let s = e.to_string();
            assert_eq!(s.lines().count(), 1, "{s}");
            s
        }
    }
}

#[test]
fn wrong_weight_files_are_named() {
    let (_, _, rn) = formats().remove(1);
    // A SPACE-CLIP checkpoint given to DepthCLIP.
    let err = load_err(&ModelFiles { checkpoint: tiny_clip().join("checkpoint.safetensors"), ..rn.clone() });
    assert!(err.contains("SPACE-CLIP"), "{err}");
    // A ResNet config for ViT weights.
    let vit = dir("vit").join("open_clip/open_clip_model.safetensors");
    let err = load_err(&ModelFiles { checkpoint: vit, clip_config: Some(dir("rn").join("open_clip_config.json")), ..rn.clone() });
    assert!(err.contains("missing") && err.contains("visual.layer1"), "{err}");
    // Hugging Face weights without their config.json.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir("vit").join("hf/model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let err = load_err(&ModelFiles { checkpoint: tmp.path().join("model.safetensors"), ..rn.clone() });
    assert!(err.contains("config.json"), "{err}");
    // Image weights only (no text tower).
    let dict = ClipStateDict::from_file(&dir("rn").join("open_clip_pytorch_model.bin")).unwrap();
    let image_only: Vec<(String, Tensor)> = dict
        .tensors()
        .iter()
        .filter(|(n, _)| n.starts_with("visual."))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    let path = tmp.path().join("visual_only.safetensors");
    clip_depth_ros::weights::write_safetensors(&path, &image_only, &Default::default()).unwrap();
    let err = load_err(&ModelFiles { checkpoint: path, clip_config: Some(dir("rn").join("open_clip_config.json")), ..rn.clone() });
    assert!(err.contains("text tower"), "{err}");
    // SPACE-CLIP's separate CLIP weights make no sense here.
    let err = load_err(&ModelFiles { clip_weights: Some(dir("vit").join("hf/model.safetensors")), ..rn });
    assert!(err.contains("whole CLIP"), "{err}");
}

#[test]
fn mismatched_text_and_image_widths_are_named() {
    // The tiny ResNet's 128-channel tokens against a 48-wide text space.
    let rn = dir("rn");
    let tmp = tempfile::tempdir().unwrap();
    let stored = clip_depth_ros::weights::read_tensor_file(&rn.join("open_clip_pytorch_model.bin")).unwrap().tensors;
    let stored: Vec<(String, Tensor)> = stored
        .into_iter()
        .map(|(n, t)| if n == "text_projection" { (n, Tensor::ones((8, 48), DType::F32, &Device::Cpu).unwrap()) } else { (n, t) })
        .collect();
    let path = tmp.path().join("weights.safetensors");
    clip_depth_ros::weights::write_safetensors(&path, &stored, &Default::default()).unwrap();
    let config = tmp.path().join("depthclip.yaml");
    std::fs::copy(rn.join("depthclip.yaml"), &config).unwrap();
    let err = load_err(&ModelFiles { config, checkpoint: path, clip_weights: None, clip_config: None });
    assert!(err.contains("128 wide") && err.contains("48"), "{err}");
}

#[test]
fn unknown_model_types_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("m.yaml");
    std::fs::write(&config, "model_type: midas\n").unwrap();
    let (_, _, files) = formats().remove(1);
    let err = load_err(&ModelFiles { config, ..files });
    assert!(err.contains("midas") && err.contains("depthclip"), "{err}");
}

/// The CLI runs DepthCLIP as it runs SPACE-CLIP, and refuses bad prompt
/// lists with exit code 2 and one line.
#[test]
fn clip_depth_infer_runs_depthclip() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("depth.npy");
    let rn = dir("rn");
    let run = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_clip_depth"))
            .args(["infer", "--beyond-bins", "keep"])
            .arg("--config")
            .arg(config)
            .arg("--checkpoint")
            .arg(rn.join("RN-tiny.pt"))
            .arg("--clip-config")
            .arg(rn.join("open_clip_config.json"))
            .arg("--input")
            .arg(image_path("scene_640x480.png"))
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap()
    };
    let ok = run(&rn.join("depthclip.yaml"));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let depth = values(&Tensor::read_npy(&out).unwrap());
    let inside: Vec<f32> = depth.iter().copied().filter(|v| v.is_finite()).collect();
    assert_eq!(inside.len(), 544 * 416);
    let rel = rel_max_diff(&inside, &values(&expected("rn", "depth_crop_416x544.npy")));
    assert!(rel <= BAR, "infer: {rel:e}");

    let bad = tmp.path().join("bad.yaml");
    let yaml = std::fs::read_to_string(rn.join("depthclip.yaml")).unwrap().replace("bin_list: [1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00]", "bin_list: [1.0, 2.0]");
    std::fs::write(&bad, yaml).unwrap();
    let failed = run(&bad);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{stderr}");
    assert!(stderr.contains("bin_list") && !stderr.contains("panicked"), "{stderr}");
}

/// Needs a CUDA build (feature cuda) and an NVIDIA GPU: shown as ignored
/// elsewhere, and a failure in a CUDA build without a device.
#[test]
#[cfg_attr(not(feature = "cuda"), ignore = "needs the cuda feature and an NVIDIA GPU")]
fn reduced_precision_on_cuda_agrees_with_f32() {
    assert!(Device::new_cuda(0).is_ok(), "a CUDA build without a usable CUDA device 0");
    let (px, w, h) = frame();
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let keep = |d: &[f32]| d.iter().copied().filter(|v| v.is_finite()).collect::<Vec<_>>();
    for (_, format, files) in formats() {
        let reference = keep(&load(&files).estimate(&view, Some((160, 120))).unwrap().0.data);
        for dtype in ["f32", "f16", "bf16"] {
            let est = load_as(&files, DeviceSpec::Cuda(0), dtype.parse::<ModelDType>().unwrap());
            let ours = keep(&est.estimate(&view, Some((160, 120))).unwrap().0.data);
            let rel = rel_max_diff(&ours, &reference);
            let bar = if dtype == "f32" { BAR } else { 1e-2 };
            assert!(rel <= bar, "{format} cuda {dtype}: {rel:e}");
        }
    }
}
