//! The weight loaders are strict and their errors name the culprit: every
//! naming variant of the same weights gives the same depth, anything
//! missing, unexpected, wrongly shaped or corrupt is refused with a message
//! that says which tensor or file is at fault.

mod common;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip_depth_ros::model::BackboneKind;
use clip_depth_ros::model::spaceclip::infer_architecture;
use clip_depth_ros::weights::StateDict;
use clip_depth_ros::{DepthEstimator, DeviceSpec, ImageView, ModelDType, ModelFiles, PixelFormat};
use common::*;

const BACKBONE: &str = "clip_vision_model.vision_model.";

/// Every tensor of the fixture's safetensors checkpoint, sorted by name.
fn checkpoint_tensors() -> Vec<(String, Tensor)> {
    let map = candle_core::safetensors::load(tiny_clip().join("checkpoint.safetensors"), &Device::Cpu)
        .expect("fixture checkpoint.safetensors");
    let mut tensors: Vec<_> = map.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(tensors.len() > 400, "fixture checkpoint has only {} tensors", tensors.len());
    tensors
}

fn save(dir: &Path, name: &str, tensors: Vec<(String, Tensor)>) -> PathBuf {
    let path = dir.join(name);
    let n = tensors.len();
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    assert_eq!(map.len(), n, "two tensors under one name in {name}");
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn renamed(f: impl Fn(&str) -> String) -> Vec<(String, Tensor)> {
    checkpoint_tensors().into_iter().map(|(k, t)| (f(&k), t)).collect()
}

fn files_for(checkpoint: PathBuf) -> ModelFiles {
    ModelFiles {
        config: tiny_clip().join("config.yaml"),
        checkpoint,
        clip_weights: None,
        clip_config: Some(tiny_clip().join("clip_config.json")),
    }
}

fn depth_224(est: &DepthEstimator) -> Vec<f32> {
    let (px, w, h) = rgb("scene_224.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let (depth, _) = est.estimate(&view, None).unwrap();
    assert_eq!((depth.width, depth.height), (224, 224));
    depth.data
}

/// Depth from the untouched fixture, itself checked against the reference.
fn reference_depth() -> Vec<f32> {
    let ours = depth_224(&load(&tiny_clip_files("checkpoint.safetensors")));
    let golden = golden(tiny_clip().join("expected/depth_224.npy"));
    assert!(rel_max_diff(&ours, &golden) <= 1e-4, "the fixture itself does not match the reference");
    ours
}

fn assert_same_depth(what: &str, files: &ModelFiles) {
    let ours = depth_224(&load(files));
    let rel = rel_max_diff(&ours, &reference_depth());
    assert!(rel <= 1e-6, "{what}: depth differs from checkpoint.safetensors by {rel:e}");
}

/// The error `DepthEstimator::load` returns; a panic or a success fails the test.
fn load_error(files: &ModelFiles) -> String {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        DepthEstimator::load(files, DeviceSpec::Cpu, ModelDType::default())
    }));
    match result {
        Err(_) => panic!("loading {} panicked instead of returning an error", files.checkpoint.display()),
        Ok(Ok(_)) => panic!("loading {} succeeded but should have failed", files.checkpoint.display()),
        Ok(Err(e)) => {
            let message = e.to_string();
            eprintln!("{}: {message}", files.checkpoint.display());
            assert!(!message.trim().is_empty(), "empty error message");
            message
        }
    }
}

fn without(names: &[&str]) -> Vec<(String, Tensor)> {
    let all = checkpoint_tensors();
    for n in names {
        assert!(all.iter().any(|(k, _)| k == n), "fixture has no {n}: the test would prove nothing");
    }
    all.into_iter().filter(|(k, _)| !names.contains(&k.as_str())).collect()
}

// ---------------------------------------------------------------- naming variants

#[test]
fn transformers5_names_without_vision_model_give_the_same_depth() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = renamed(|k| k.replacen(BACKBONE, "clip_vision_model.", 1));
    assert!(!tensors.iter().any(|(k, _)| k.contains("vision_model.vision_model")));
    assert!(tensors.iter().any(|(k, _)| k == "clip_vision_model.embeddings.patch_embedding.weight"));
    let path = save(dir.path(), "t5.safetensors", tensors);
    assert_same_depth("transformers-5 names", &files_for(path));
}

#[test]
fn dataparallel_module_prefix_gives_the_same_depth() {
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "module.safetensors", renamed(|k| format!("module.{k}")));
    assert_same_depth("module. prefix", &files_for(path));
}

#[test]
fn module_prefix_with_transformers5_names_gives_the_same_depth() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = renamed(|k| format!("module.{}", k.replacen(BACKBONE, "clip_vision_model.", 1)));
    assert!(tensors.iter().any(|(k, _)| k == "module.clip_vision_model.encoder.layers.0.mlp.fc1.weight"));
    let path = save(dir.path(), "both.safetensors", tensors);
    assert_same_depth("module. + transformers-5 names", &files_for(path));
}

/// Splits the fixture into a decoder-only checkpoint and a stand-alone HF
/// CLIP file (`vision_model.*` plus text-tower tensors that must be ignored).
fn decoder_and_hf_clip(dir: &Path) -> (PathBuf, PathBuf) {
    let (backbone, decoder): (Vec<_>, Vec<_>) =
        checkpoint_tensors().into_iter().partition(|(k, _)| k.starts_with(BACKBONE));
    assert!(!backbone.is_empty() && !decoder.is_empty());
    let mut clip: Vec<(String, Tensor)> = backbone
        .into_iter()
        .map(|(k, t)| (format!("vision_model.{}", &k[BACKBONE.len()..]), t))
        .collect();
    // Shapes that fit nothing in the model: read, they would be refused.
    clip.push(("text_model.embeddings.token_embedding.weight".into(), Tensor::ones((7, 5), DType::F32, &Device::Cpu).unwrap()));
    clip.push(("text_model.encoder.layers.0.mlp.fc1.weight".into(), Tensor::ones((3, 11), DType::F32, &Device::Cpu).unwrap()));
    clip.push(("text_model.final_layer_norm.weight".into(), Tensor::ones(13, DType::F32, &Device::Cpu).unwrap()));
    clip.push(("text_projection.weight".into(), Tensor::ones((2, 9), DType::F32, &Device::Cpu).unwrap()));
    clip.push(("visual_projection.weight".into(), Tensor::ones((2, 64), DType::F32, &Device::Cpu).unwrap()));
    clip.push(("logit_scale".into(), Tensor::new(2.6592f32, &Device::Cpu).unwrap()));
    clip.push(("vision_model.embeddings.position_ids".into(), Tensor::arange(0i64, 197, &Device::Cpu).unwrap().unsqueeze(0).unwrap()));
    let decoder_path = save(dir, "decoder.safetensors", decoder);
    std::fs::create_dir(dir.join("clip")).unwrap();
    let clip_path = save(&dir.join("clip"), "model.safetensors", clip);
    (decoder_path, clip_path)
}

#[test]
fn decoder_only_checkpoint_plus_hf_clip_file_gives_the_same_depth() {
    let dir = tempfile::tempdir().unwrap();
    let (decoder, clip) = decoder_and_hf_clip(dir.path());

    let dict = StateDict::from_files(&decoder, Some(&clip)).unwrap();
    for ignored in ["logit_scale", "text_model.embeddings.token_embedding.weight", "text_projection.weight", "visual_projection.weight"] {
        assert!(dict.ignored().iter().any(|n| n == ignored), "{ignored} not reported as ignored: {:?}", dict.ignored());
    }
    assert!(!dict.tensors().keys().any(|k| k.contains("text_model") || k.contains("logit_scale")));

    let files = ModelFiles {
        config: tiny_clip().join("config.yaml"),
        checkpoint: decoder.clone(),
        clip_weights: Some(clip.clone()),
        clip_config: Some(tiny_clip().join("clip_config.json")),
    };
    assert_same_depth("decoder + HF CLIP (explicit clip_config)", &files);

    // Without --clip-config the config.json beside the CLIP weights is used.
    std::fs::copy(tiny_clip().join("clip/config.json"), dir.path().join("clip/config.json")).unwrap();
    let files = ModelFiles { clip_config: None, ..files };
    assert_same_depth("decoder + HF CLIP (config.json beside)", &files);
}

#[test]
fn decoder_only_checkpoint_without_clip_weights_names_the_missing_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let (decoder, _) = decoder_and_hf_clip(dir.path());
    let err = load_error(&files_for(decoder));
    assert!(err.contains("missing"), "{err}");
    assert!(err.contains(BACKBONE), "{err}");
}

#[test]
fn f16_stored_weights_load_and_give_nearly_the_same_depth() {
    let dir = tempfile::tempdir().unwrap();
    let tensors: Vec<_> = checkpoint_tensors()
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype() == DType::F32 { t.to_dtype(DType::F16).unwrap() } else { t };
            (k, t)
        })
        .collect();
    let halves = tensors.iter().filter(|(_, t)| t.dtype() == DType::F16).count();
    let others: Vec<_> = tensors.iter().filter(|(_, t)| t.dtype() != DType::F16).map(|(k, _)| k.as_str()).collect();
    assert!(halves > 300, "only {halves} tensors stored as f16");
    // Only the BatchNorm step counters (int64) stay as they were.
    assert!(others.iter().all(|k| k.ends_with("num_batches_tracked")), "{others:?}");
    let path = save(dir.path(), "f16.safetensors", tensors);
    let ours = depth_224(&load(&files_for(path)));
    let rel = rel_max_diff(&ours, &reference_depth());
    assert!(rel <= 1e-2, "f16-stored weights: depth differs by {rel:e}");
    // Proves the f16 file (not some other copy) was read.
    assert!(rel > 0.0, "f16 rounding left the depth bit-identical: the f16 file was not used");
}

#[test]
fn the_same_tensor_under_two_spellings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = checkpoint_tensors();
    let name = format!("{BACKBONE}post_layernorm.weight");
    let t = tensors.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    tensors.push(("clip_vision_model.post_layernorm.weight".into(), t));
    let path = save(dir.path(), "twice.safetensors", tensors);
    let err = load_error(&files_for(path));
    assert!(err.contains("clip_vision_model.post_layernorm.weight"), "{err}");
    assert!(err.contains(&name), "{err}");
}

// ---------------------------------------------------------------- mismatches

#[test]
fn one_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "missing1.safetensors", without(&["depth_prediction_head.3.weight"]));
    let err = load_error(&files_for(path));
    assert!(err.contains("1 missing (depth_prediction_head.3.weight)"), "{err}");
    assert!(!err.contains("unexpected"), "{err}");
}

#[test]
fn five_missing_tensors_list_three_and_count_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let removed = [
        "depth_prediction_head.0.weight",
        "depth_prediction_head.1.weight",
        "depth_prediction_head.1.bias",
        "depth_prediction_head.3.weight",
        "main_path_projections.0.weight",
    ];
    let path = save(dir.path(), "missing5.safetensors", without(&removed));
    let err = load_error(&files_for(path));
    let start = err.find("5 missing (").unwrap_or_else(|| panic!("no '5 missing (' in: {err}")) + "5 missing (".len();
    let end = err[start..].find(" and 2 more)").unwrap_or_else(|| panic!("no ' and 2 more)' in: {err}")) + start;
    let listed: Vec<&str> = err[start..end].split(", ").collect();
    assert_eq!(listed.len(), 3, "{err}");
    for name in &listed {
        assert!(removed.contains(name), "{name:?} listed but not removed: {err}");
    }
    assert!(listed[0] != listed[1] && listed[1] != listed[2] && listed[0] != listed[2], "{err}");
}

#[test]
fn an_unexpected_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = checkpoint_tensors();
    tensors.push(("main_decoder_blocks.9.foo.weight".into(), Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap()));
    let path = save(dir.path(), "extra.safetensors", tensors);
    let err = load_error(&files_for(path));
    assert!(err.contains("1 unexpected (main_decoder_blocks.9.foo.weight)"), "{err}");
    assert!(!err.contains("missing"), "{err}");
}

#[test]
fn a_wrongly_shaped_tensor_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = checkpoint_tensors();
    let slot = tensors.iter_mut().find(|(k, _)| k == "depth_prediction_head.3.weight").unwrap();
    assert_eq!(slot.1.dims(), &[1, 4, 3, 3]);
    slot.1 = Tensor::zeros((1, 4, 5, 5), DType::F32, &Device::Cpu).unwrap();
    let path = save(dir.path(), "shape.safetensors", tensors);
    let err = load_error(&files_for(path));
    assert!(
        err.contains("1 with the wrong shape (depth_prediction_head.3.weight: expected [1, 4, 3, 3], found [1, 4, 5, 5])"),
        "{err}"
    );
}

#[test]
fn backbone_in_the_checkpoint_and_in_clip_weights_is_refused() {
    let checkpoint = tiny_clip().join("checkpoint.safetensors");
    let clip = tiny_clip().join("clip/model.safetensors");
    let files = ModelFiles { clip_weights: Some(clip.clone()), ..files_for(checkpoint.clone()) };
    let err = load_error(&files);
    assert!(err.contains(&checkpoint.display().to_string()), "{err}");
    assert!(err.contains(&clip.display().to_string()), "{err}");
    assert!(err.contains("is in both"), "{err}");
    assert!(err.contains(BACKBONE), "{err}");
}

// ---------------------------------------------------------------- corrupt files

#[test]
fn corrupt_weight_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pt = std::fs::read(tiny_clip().join("checkpoint.pt")).unwrap();
    let st = std::fs::read(tiny_clip().join("checkpoint.safetensors")).unwrap();
    // Deterministic noise; neither a zip, safetensors nor pickle signature.
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    noise[0] = 0x13;
    noise[8] = 0x21;
    let mut legacy = vec![0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8];
    legacy.extend_from_slice(&[0u8; 200]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.pt", pt[..pt.len() / 2].to_vec()),
        ("truncated.safetensors", st[..st.len() / 2].to_vec()),
        ("header_only.safetensors", st[..64].to_vec()),
        ("noise.pt", noise),
        ("zero_bytes.safetensors", Vec::new()),
        ("text.pt", b"this is not a checkpoint\nsecond line\n".to_vec()),
        ("old_format.pt", legacy),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load_error(&files_for(path.clone()));
        assert!(err.contains(&path.display().to_string()), "{name}: error does not name the file: {err}");
        assert!(!err.contains('\n'), "{name}: multi-line error: {err}");
        if name == "old_format.pt" {
            assert!(err.to_lowercase().contains("legacy"), "{name}: {err}");
        }
        if name == "zero_bytes.safetensors" {
            assert!(err.contains("empty"), "{name}: {err}");
        }
    }
}

#[test]
fn a_missing_weight_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_such_checkpoint.pt");
    let err = load_error(&files_for(path.clone()));
    assert!(err.contains(&path.display().to_string()), "{err}");

    let missing_clip = dir.path().join("no_such_clip.safetensors");
    let (decoder, _) = decoder_and_hf_clip(dir.path());
    let files = ModelFiles { clip_weights: Some(missing_clip.clone()), ..files_for(decoder) };
    let err = load_error(&files);
    assert!(err.contains(&missing_clip.display().to_string()), "{err}");
}

// ---------------------------------------------------------------- config errors

fn yaml_with(dir: &Path, replace: &str, with: &str) -> PathBuf {
    let text = std::fs::read_to_string(tiny_clip().join("config.yaml")).unwrap();
    assert!(text.contains(replace), "fixture config.yaml has no {replace:?}");
    let path = dir.join("config.yaml");
    std::fs::write(&path, text.replace(replace, with)).unwrap();
    path
}

#[test]
fn a_tap_beyond_the_backbone_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = yaml_with(dir.path(), "main_path_indices: [12, 9, 6, 3]", "main_path_indices: [13, 9, 6, 3]");
    let files = ModelFiles { config: config.clone(), ..tiny_clip_files("checkpoint.safetensors") };
    let err = load_error(&files);
    assert!(err.contains("main_path_indices"), "{err}");
    assert!(err.contains("13"), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
}

#[test]
fn an_unknown_backbone_name_without_clip_config_lists_the_presets() {
    let dir = tempfile::tempdir().unwrap();
    let config = yaml_with(dir.path(), "clip_model_name: \"tiny-random-clip\"", "clip_model_name: \"my-own/clip-vit-huge\"");
    // A checkpoint with no clip_config.json beside it (the fixture folder has one).
    let checkpoint = dir.path().join("checkpoint.safetensors");
    std::fs::copy(tiny_clip().join("checkpoint.safetensors"), &checkpoint).unwrap();
    let files = ModelFiles { config: config.clone(), checkpoint, clip_weights: None, clip_config: None };
    let err = load_error(&files);
    assert!(err.contains("my-own/clip-vit-huge"), "{err}");
    for preset in clip_depth_ros::model::BackboneConfig::PRESETS {
        assert!(err.contains(preset), "preset {preset} not listed: {err}");
    }
    assert!(err.contains(&config.display().to_string()), "{err}");
}

#[test]
fn a_clip_config_of_another_width_is_a_shape_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(tiny_clip().join("clip_config.json")).unwrap();
    assert!(text.contains("\"hidden_size\": 64"));
    let clip_config = dir.path().join("clip_config.json");
    std::fs::write(&clip_config, text.replace("\"hidden_size\": 64", "\"hidden_size\": 32")).unwrap();
    let files = ModelFiles { clip_config: Some(clip_config), ..tiny_clip_files("checkpoint.safetensors") };
    let err = load_error(&files);
    assert!(err.contains("with the wrong shape"), "{err}");
    assert!(err.contains(BACKBONE), "{err}");
    // The width the config asks for, and the one the weights have.
    assert!(err.contains("embeddings.class_embedding: expected [32], found [64]"), "{err}");
}

// ---------------------------------------------------------------- inspect

#[test]
fn the_architecture_is_inferred_from_the_tensors() {
    let dict = StateDict::from_files(&tiny_clip().join("checkpoint.pt"), None).unwrap();
    let arch = infer_architecture(&dict);
    let b = arch.backbone.expect("backbone inferred");
    assert_eq!(b.kind, BackboneKind::Clip);
    assert_eq!(b.hidden_size, 64);
    assert_eq!(b.num_hidden_layers, 12);
    assert_eq!(b.patch_size, 16);
    assert_eq!(b.image_size, 224);
    assert_eq!(b.intermediate_size, 256);
    let d = arch.decoder.expect("decoder inferred");
    assert_eq!(d.decoder_channels, vec![32, 16, 16, 8]);
    assert!(d.use_film);
    assert_eq!(d.film_param_hidden_dim, 32);
    assert!(d.use_structural_pathway);
    assert!(d.use_multiscale_supervision);

    // A decoder-only file has no backbone; an HF CLIP file no decoder.
    let dict = StateDict::from_files(&tiny_clip().join("decoder.safetensors"), None).unwrap();
    let arch = infer_architecture(&dict);
    assert!(arch.backbone.is_none());
    assert_eq!(arch.decoder.unwrap().decoder_channels, vec![32, 16, 16, 8]);
    let dict = StateDict::from_files(&tiny_clip().join("clip/model.safetensors"), None).unwrap();
    let arch = infer_architecture(&dict);
    assert!(arch.decoder.is_none());
    assert_eq!(arch.backbone.unwrap().hidden_size, 64);

    // SigLIP: no class token, so the kind and the grid come out differently.
    let dict = StateDict::from_files(&tiny_siglip().join("checkpoint.safetensors"), None).unwrap();
    let b = infer_architecture(&dict).backbone.unwrap();
    assert_eq!(b.kind, BackboneKind::Siglip);
    assert_eq!(b.image_size, 224);
}
