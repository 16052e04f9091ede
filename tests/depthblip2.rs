//! DepthBLIP-2 against its PyTorch reference (tests/reference/
//! depthblip2_ref.py, itself checked against transformers'
//! Blip2ForImageTextRetrieval and CLIPVisionModel): the BERT tokenizer
//! token for token, Pillow's bilinear resize byte for byte, and for tiny
//! random EVA and CLIP towers in LAVIS's and Hugging Face's formats the
//! image tokens (at 224 and, positions resized, at 168x280), the
//! Q-Former's multimodal query outputs per prompt, depth on the map with
//! and without flip averaging, and in the frame; the adaptive bins' MLP;
//! and the errors a user can cause.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use clip_depth_ros::estimator::ModelFamily;
use clip_depth_ros::image::pil_resize::{resize_with, Filter};
use clip_depth_ros::model::depthblip2::BinsMlp;
use clip_depth_ros::model::text::{pre_caption, BertTokenizer};
use clip_depth_ros::{DepthEstimator, ImageView, ModelFiles, PixelFormat};
use common::*;

const BAR: f32 = 1e-4;

fn dir() -> PathBuf {
    fixtures().join("depthblip2")
}

fn npy(path: PathBuf) -> Tensor {
    Tensor::read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, bar: f32) -> f32 {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
    let rel = rel_max_diff(&values(ours), &values(reference));
    eprintln!("{what}: max|diff|/max|ref| = {rel:.2e}");
    assert!(rel <= bar, "{what}: max|diff|/max|ref| = {rel:e} > {bar:e}");
    rel
}

/// (label, files, expected-output folder).
fn formats() -> Vec<(&'static str, ModelFiles, PathBuf)> {
    let d = dir();
    vec![
        (
            "EVA, LAVIS .pth",
            ModelFiles {
                config: d.join("eva/depthblip2.yaml"),
                checkpoint: d.join("eva/lavis/blip2_pretrained.pth"),
                clip_weights: Some(d.join("eva/lavis/eva_vit_g.pth")),
                clip_config: None,
            },
            d.join("eva/expected/lavis"),
        ),
        (
            "EVA, Hugging Face",
            ModelFiles { config: d.join("eva/depthblip2.yaml"), checkpoint: d.join("eva/hf/model.safetensors"), clip_weights: None, clip_config: None },
            d.join("eva/expected/hf"),
        ),
        (
            "CLIP ViT-L, LAVIS .pth",
            ModelFiles {
                config: d.join("clip/depthblip2.yaml"),
                checkpoint: d.join("clip/lavis/blip2_pretrained_vitL.pth"),
                clip_weights: Some(d.join("clip/lavis/clip_vit_L.pth")),
                clip_config: None,
            },
            d.join("clip/expected"),
        ),
    ]
}

/// The reference's deterministic pattern input (1, 3, h, w).
fn pattern_pixels(h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..3 * h * w).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    Tensor::from_vec(v, (1, 3, h, w), &Device::Cpu).unwrap()
}

#[test]
fn bert_tokenizer_matches_transformers_token_for_token() {
    let text = std::fs::read_to_string(dir().join("tokenizer/sentences.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tok = BertTokenizer::bert_base_uncased();
    let mut n = 0;
    for case in cases["cases"].as_array().unwrap() {
        let s = case["text"].as_str().unwrap();
        let ids = |key: &str| case[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
        assert_eq!(tok.encode(s), ids("ids"), "{s:?}");
        let caption = pre_caption(s, 50);
        assert_eq!(caption, case["caption"].as_str().unwrap(), "caption of {s:?}");
        assert_eq!(tok.encode(&caption), ids("caption_ids"), "{caption:?}");
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn tokenizer_files_read_as_the_built_in_one() {
    let json = BertTokenizer::from_file(&dir().join("eva/hf/tokenizer.json")).unwrap();
    let txt = BertTokenizer::from_file(&dir().join("eva/lavis/vocab.txt")).unwrap();
    for s in ["this object is not in distance", "a little remote", "unseen wall!"] {
        assert_eq!(json.encode(s), txt.encode(s), "{s}");
    }
    assert_eq!(json.vocab_size(), txt.vocab_size());
}

#[test]
fn pillow_bilinear_resize_is_byte_exact() {
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir().join("pil/cases.json")).unwrap()).unwrap();
    let frame = image::open(image_path("scene_640x480.png")).unwrap().to_rgb8();
    let portrait = image::open(fixtures().join("pil/portrait_333x517.png")).unwrap().to_rgb8();
    let crop = image::open(dir().join("pil/scene_crop.png")).unwrap().to_rgb8();
    let small = image::open(dir().join("pil/scene_small.png")).unwrap().to_rgb8();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let size = case["size"].as_array().unwrap();
        let (w, h) = (size[0].as_u64().unwrap() as usize, size[1].as_u64().unwrap() as usize);
        let src = match name {
            "scene_to_96x72" => &frame,
            "scene_crop_to_50x40" => &crop,
            "portrait_to_64x64" => &portrait,
            _ => &small,
        };
        let view = ImageView::packed(src.as_raw(), src.width() as usize, src.height() as usize, PixelFormat::Rgb8).unwrap();
        let ours = resize_with(&view, w, h, Filter::Bilinear);
        let reference = npy(dir().join("pil").join(format!("{name}.npy"))).flatten_all().unwrap().to_vec1::<u8>().unwrap();
        assert_eq!(ours, reference, "{name}");
    }
}

#[test]
fn image_tokens_query_outputs_and_depth_match_in_every_format() {
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let mut worst = 0f32;
    for (label, files, expected) in formats() {
        let est = load(&files);
        assert_eq!(est.family(), ModelFamily::DepthBlip2);
        let model = est.model().downcast_ref::<clip_depth_ros::model::DepthBlip2>().unwrap();
        // The NYU crop, Pillow bilinear to 224, ImageNet statistics.
        let pixels = est.preprocess(&[view]).unwrap();
        worst = worst.max(assert_close(&format!("{label}: pixels"), &pixels.squeeze(0).unwrap(), &npy(dir().join("pixel_values_nyu.npy")), 1e-6));
        let emb = model.image_embeds(&pixels).unwrap();
        worst = worst.max(assert_close(&format!("{label}: image tokens 224"), &emb.squeeze(0).unwrap(), &npy(expected.join("image_embeds_224.npy")), BAR));
        let q = model.query_outputs(&emb).unwrap().squeeze(0).unwrap();
        worst = worst.max(assert_close(&format!("{label}: multimodal query outputs"), &q, &npy(expected.join("qformer_224.npy")), BAR));
        let d = model.depth(&emb).unwrap().squeeze(0).unwrap().squeeze(0).unwrap();
        worst = worst.max(assert_close(&format!("{label}: depth map"), &d, &npy(expected.join("depth_grid_noflip.npy")), BAR));
        // The model's own forward: flip averaged when its YAML says so
        // (the reference's depth_grid.npy is always flip averaged).
        let flip = model.config().flip_average;
        let d = model.forward(&pixels).unwrap().squeeze(0).unwrap().squeeze(0).unwrap();
        let reference = npy(expected.join(if flip { "depth_grid.npy" } else { "depth_grid_noflip.npy" }));
        worst = worst.max(assert_close(&format!("{label}: depth map (flip {flip})"), &d, &reference, BAR));
        let odd = model.image_embeds(&pattern_pixels(168, 280)).unwrap().squeeze(0).unwrap();
        worst = worst.max(assert_close(&format!("{label}: image tokens 168x280 (positions resized)"), &odd, &npy(expected.join("image_embeds_168x280.npy")), BAR));
    }
    eprintln!("worst: {worst:.2e}");
}

#[test]
fn depth_lands_in_the_crop_of_the_frame() {
    let (label, files, expected) = formats().remove(0);
    let est = load(&files);
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let (depth, timings) = est.estimate(&view, Some((160, 120))).unwrap();
    assert!(timings.encoder.as_nanos() > 0 && timings.decoder.as_nanos() > 0);
    let reference = values(&npy(expected.join("depth_frame_160x120.npy")));
    assert_eq!(depth.data.len(), reference.len());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for (i, (a, b)) in depth.data.iter().zip(&reference).enumerate() {
        assert_eq!(a.is_nan(), b.is_nan(), "{label}: pixel {i}: {a} vs {b}");
        if !b.is_nan() {
            ours.push(*a);
            theirs.push(*b);
        }
    }
    let rel = rel_max_diff(&ours, &theirs);
    eprintln!("{label}: depth in the 160x120 frame: max|diff|/max|ref| = {rel:.2e}");
    assert!(rel <= BAR);
}

#[test]
fn adaptive_bins_mlp_in_both_release_layouts_and_safetensors() {
    let bins = [1.00, 1.75, 2.25, 2.50, 2.75, 3.00, 3.50];
    for (file, reference) in [("mlp_flag2.pth", "bins_flag2.npy"), ("mlp_flag1.pth", "bins_flag1.npy"), ("mlp_flag2.safetensors", "bins_flag2.npy")] {
        let mlp = BinsMlp::from_file(&dir().join("bins").join(file), 7).unwrap();
        let ours: Vec<f32> = mlp.bins(&bins).unwrap().iter().map(|&b| b as f32).collect();
        let rel = rel_max_diff(&ours, &values(&npy(dir().join("bins").join(reference))));
        eprintln!("{file}: adaptive bins max|diff|/max|ref| = {rel:.2e}");
        assert!(rel <= 1e-6, "{file}: {rel}");
    }
    let err = BinsMlp::from_file(&dir().join("bins/mlp_flag2.pth"), 5).unwrap_err().to_string();
    assert!(err.contains("5 depth classes"), "{err}");
}

#[test]
fn f16_agrees_with_f32() {
    let (_, files, _) = formats().remove(1);
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let f32_map = load(&files).estimate(&view, Some((160, 120))).unwrap().0.data;
    let est = load_as(&files, clip_depth_ros::DeviceSpec::Cpu, "f16".parse().unwrap());
    let f16_map = est.estimate(&view, Some((160, 120))).unwrap().0.data;
    let (a, b): (Vec<f32>, Vec<f32>) = f16_map.iter().zip(&f32_map).filter(|(_, b)| !b.is_nan()).map(|(a, b)| (*a, *b)).unzip();
    let rel = rel_max_diff(&a, &b);
    eprintln!("f16 vs f32 depth: {rel:.2e}");
    assert!(rel < 1e-2, "{rel}");
}

#[test]
fn user_errors_are_named() {
    let d = dir();
    let err = |files: ModelFiles| match DepthEstimator::load(&files, clip_depth_ros::DeviceSpec::Cpu, Default::default()) {
        Ok(_) => panic!("{} loaded", files.checkpoint.display()),
        Err(e) => e.to_string(),
    };
    let eva = |checkpoint: &str, vision: Option<&str>| ModelFiles {
        config: d.join("eva/depthblip2.yaml"),
        checkpoint: d.join(checkpoint),
        clip_weights: vision.map(|v| d.join(v)),
        clip_config: None,
    };
    // LAVIS's checkpoint without the tower's file.
    let e = err(eva("eva/lavis/blip2_pretrained.pth", None));
    assert!(e.contains("no image tower"), "{e}");
    // The CLIP tower under the EVA Q-Former: the widths differ.
    let e = err(eva("eva/lavis/blip2_pretrained.pth", Some("clip/lavis/clip_vit_L.pth")));
    assert!(e.contains("cross-attends") || e.contains("shape"), "{e}");
    // The tower given twice.
    let e = err(eva("eva/lavis/eva_vit_g.pth", Some("eva/lavis/eva_vit_g.pth")));
    assert!(e.contains("neither a LAVIS"), "{e}");
    // Hugging Face weights without their config.json.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("eva/hf/model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let e = err(ModelFiles { config: d.join("eva/depthblip2.yaml"), checkpoint: tmp.path().join("model.safetensors"), clip_weights: None, clip_config: None });
    assert!(e.contains("config.json"), "{e}");
    // A map that does not fit the Q-Former's width.
    let yaml = std::fs::read_to_string(d.join("eva/depthblip2.yaml")).unwrap().replace("map_height: 8", "map_height: 5");
    std::fs::write(tmp.path().join("bad.yaml"), yaml).unwrap();
    let mut files = formats().remove(0).1;
    files.config = tmp.path().join("bad.yaml");
    let e = err(files);
    assert!(e.contains("map_height"), "{e}");
}

#[test]
fn clip_depth_infer_and_bench_run_depthblip2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("depth.npy");
    let d = dir();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .args(["infer", "--beyond-bins", "keep", "--output-size", "160x120", "--config"])
        .arg(d.join("eva/depthblip2.yaml"))
        .arg("--checkpoint")
        .arg(d.join("eva/lavis/blip2_pretrained.pth"))
        .arg("--clip-weights")
        .arg(d.join("eva/lavis/eva_vit_g.pth"))
        .arg("--input")
        .arg(image_path("scene_640x480.png"))
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let ours: Vec<f32> = values(&npy(out)).into_iter().filter(|v| !v.is_nan()).collect();
    let reference: Vec<f32> = values(&npy(d.join("eva/expected/lavis/depth_frame_160x120.npy"))).into_iter().filter(|v| !v.is_nan()).collect();
    assert!(rel_max_diff(&ours, &reference) <= BAR);

    // Random weights of the shapes a Hugging Face config.json gives.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .args(["bench", "--batch", "1", "--iters", "1", "--warmup", "0", "--config"])
        .arg(d.join("eva/depthblip2.yaml"))
        .arg("--clip-config")
        .arg(d.join("eva/hf/config.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("random weights") && text.contains("DepthBLIP-2"), "{text}");
}

/// Each shipped config is one release version's settings (especiallyW/
/// DepthBLIP-2: v2's method "second" on NYU, models/model.py and main.py;
/// v1's models/model.py).
#[test]
fn shipped_configs_are_the_release_versions() {
    use clip_depth_ros::model::depthblip2::MapLayout;
    use clip_depth_ros::model::DepthBlip2Config;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    for (name, layers, temperature, layout) in
        [("depthblip2_nyu.yaml", 39, 0.5, MapLayout::GroupsOuter), ("depthblip2_vitl_nyu.yaml", 23, 0.05, MapLayout::GroupsInner)]
    {
        let path = root.join(name);
        assert_eq!(ModelFamily::of_config(&path).unwrap(), ModelFamily::DepthBlip2, "{name}");
        let cfg = DepthBlip2Config::from_yaml_file(&path).unwrap();
        assert_eq!(cfg.vision_layers, Some(layers), "{name}");
        assert!(clip_depth_ros::model::blip2::Blip2Config::preset(&cfg.blip2_vis).is_some(), "{name}");
        assert_eq!((cfg.map_groups, cfg.map_height, cfg.input_width), (3, 16, 224));
        assert_eq!((cfg.temperature, cfg.map_layout, cfg.flip_average), (temperature, layout, true), "{name}");
        assert_eq!(cfg.bin_list, vec![1.00, 1.75, 2.25, 2.50, 2.75, 3.00, 3.50], "{name}");
        assert_eq!((cfg.depth_templates.len(), cfg.obj_classes.len(), cfg.crop), (1, 1, Some([60, 56, 604, 472])), "{name}");
    }
}

/// InstructBLIP's trimmed LAVIS file (v2's "second" method): the Q-Former
/// without BLIP-2's heads (Qformer.cls, the projections, itm_head, temp)
/// and with a projection into the language model (llm_proj), which
/// DepthBLIP-2 sets aside by name. Made here from the EVA fixture's tensors:
/// the depth equals the full file's.
#[test]
fn instructblip_trimmed_files_load_with_their_language_projection_set_aside() {
    use clip_depth_ros::weights::{read_tensor_file, write_safetensors};
    let (_, files, _) = formats().remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let blip2 = read_tensor_file(&files.checkpoint).unwrap().tensors;
    let heads = |n: &str| n.starts_with("Qformer.cls.") || ["vision_proj.", "text_proj.", "itm_head."].iter().any(|p| n.starts_with(p)) || n == "temp";
    assert!(blip2.iter().any(|(n, _)| heads(n)), "the fixture has BLIP-2's heads");
    let hidden = blip2.iter().find(|(n, _)| n == "query_tokens").unwrap().1.dim(2).unwrap();
    let mut instruct: Vec<(String, Tensor)> = blip2.into_iter().filter(|(n, _)| !heads(n)).collect();
    instruct.push(("llm_proj.weight".into(), Tensor::ones((16, hidden), DType::F32, &Device::Cpu).unwrap()));
    instruct.push(("llm_proj.bias".into(), Tensor::zeros(16, DType::F32, &Device::Cpu).unwrap()));
    let trimmed = tmp.path().join("instruct_blip_trimmed.safetensors");
    write_safetensors(&trimmed, &instruct, &Default::default()).unwrap();
    // The tiny model's vocabulary goes beside its weights, as with the fixture.
    std::fs::copy(files.checkpoint.with_file_name("vocab.txt"), tmp.path().join("vocab.txt")).unwrap();
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let want = load(&files).estimate(&view, Some((160, 120))).unwrap().0.data;
    let got = load(&ModelFiles { checkpoint: trimmed, ..files }).estimate(&view, Some((160, 120))).unwrap().0.data;
    assert_eq!(want.len(), got.len());
    assert!(want.iter().zip(&got).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
}

#[test]
fn bins_training_matches_three_adamw_steps_of_the_reference() {
    use clip_depth_ros::model::nn::ForwardMode;
    use clip_depth_ros::train::bins::{bins_loss, optimiser, train_step, BinsSample, TrainableBins};
    let steps = candle_core::safetensors::load(dir().join("bins/train_steps.safetensors"), &Device::Cpu).unwrap();
    let get = |n: &str| steps.get(n).unwrap_or_else(|| panic!("{n}")).clone();
    let release = [1.00, 1.75, 2.25, 2.50, 2.75, 3.00, 3.50];
    let init: std::collections::HashMap<String, Tensor> =
        steps.iter().filter_map(|(n, t)| n.strip_prefix("init.").map(|k| (k.to_string(), t.clone()))).collect();
    let mlp = TrainableBins::new(&release, 0.0, Some(init), 0, &Device::Cpu).unwrap();
    let (probs, mirror, gt) = (get("probs"), get("probs_mirror"), get("gt"));
    let (b, _, h, w) = gt.dims4().unwrap();
    let batch: Vec<BinsSample> = (0..b)
        .map(|i| BinsSample {
            probs: probs.get(i).unwrap(),
            mirror: Some(mirror.get(i).unwrap()),
            gt: values(&gt.get(i).unwrap()),
            gt_size: (w, h),
        })
        .collect();
    let range = (1e-3, 10.0);
    // The first step's gradients.
    let bins = mlp.bins(&ForwardMode::eval()).unwrap();
    let loss = bins_loss(&bins, &batch, 0.5, range).unwrap().loss;
    let grads = loss.backward().unwrap();
    let mut worst = 0f32;
    for (name, var) in mlp.params() {
        let rel = rel_max_diff(&values(grads.get(var.as_tensor()).unwrap()), &values(&get(&format!("grad.{name}"))));
        worst = worst.max(rel);
    }
    eprintln!("step 0 gradients: worst max|diff|/max|ref| = {worst:.2e}");
    assert!(worst <= BAR, "{worst}");
    let mut opt = optimiser(&mlp, 0.01).unwrap();
    for step in 0..3 {
        let bins = mlp.bins(&ForwardMode::eval()).unwrap();
        let rel = rel_max_diff(&values(&bins), &values(&get(&format!("bins.{step}"))));
        let loss = train_step(&mlp, &mut opt, &batch, 1e-3, 0.5, range, &ForwardMode::eval()).unwrap();
        let reference = values(&get(&format!("loss.{step}")))[0];
        eprintln!("step {step}: bins {rel:.2e}, loss {loss:.6} vs {reference:.6}");
        assert!(rel <= 1e-5, "step {step} bins: {rel}");
        assert!(((loss as f32 - reference) / reference).abs() <= 1e-5, "step {step} loss {loss} vs {reference}");
    }
    let rel = rel_max_diff(&values(&mlp.bins(&ForwardMode::eval()).unwrap()), &values(&get("bins.3")));
    eprintln!("bins after 3 steps: {rel:.2e}");
    assert!(rel <= 1e-5);
}

#[test]
fn clip_depth_train_adapts_the_bins_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixtures().join("train_data");
    // The tiny EVA model without the NYU crop (the synthetic rooms are
    // smaller than it), with the training keys.
    let yaml = std::fs::read_to_string(dir().join("eva/depthblip2.yaml")).unwrap().replace("crop: [60, 56, 604, 472]\n", "");
    let yaml = format!(
        "{yaml}dataset: nyu\ndata_path: {d:?}\ngt_path: {d:?}\nfilenames_file: {t:?}\nfilenames_file_eval: {v:?}\nbatch_size: 4\nmin_depth_eval: 0.001\nmax_depth_eval: 10\n",
        d = data.display().to_string(),
        t = data.join("train.txt").display().to_string(),
        v = data.join("val.txt").display().to_string()
    );
    let config = tmp.path().join("model.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = tmp.path().join("run");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .args(["train", "--epochs", "8", "--seed", "3", "--set", "temperature=0.7", "--config"])
        .arg(&config)
        .arg("--init")
        .arg(dir().join("eva/hf/model.safetensors"))
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{log}");
    assert!(log.contains("10 training and 4 validation images"), "{log}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bins.json")).unwrap()).unwrap();
    let list = |k: &str| summary[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    let (before, after) = (list("initial_bins"), list("bins"));
    assert_eq!(after.len(), 7);
    assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-4), "the bins did not move: {before:?} {after:?}");
    assert_eq!(list("validation_loss").len(), 8);

    // The written config runs with the learnt bins.
    let files = ModelFiles { config: out.join("config.yaml"), checkpoint: dir().join("eva/hf/model.safetensors"), clip_weights: None, clip_config: None };
    let est = load(&files);
    // A model key given with --set is the model's in training and in the config written.
    assert_eq!(est.model().downcast_ref::<clip_depth_ros::model::DepthBlip2>().unwrap().config().temperature, 0.7);
    let bins = est.model().downcast_ref::<clip_depth_ros::model::DepthBlip2>().unwrap().bins().to_vec();
    for (a, b) in bins.iter().zip(&after) {
        assert!((a - b).abs() < 1e-5, "{bins:?} vs {after:?}");
    }
    // And `clip_depth eval` reads it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .arg("eval")
        .arg("--config")
        .arg(out.join("config.yaml"))
        .arg("--checkpoint")
        .arg(dir().join("eva/hf/model.safetensors"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && text.contains("4 images evaluated"), "{text}");
}

#[test]
fn torch_archives_the_zip_crate_misplaces_still_read() {
    let path = dir().join("zip/zip_entry_76_bytes_xy.pth");
    // candle's own reader refuses this valid archive...
    assert!(candle_core::pickle::read_all_with_key(&path, Some("model")).is_err());
    // ...the weight reader falls back to reading it at offset 0.
    let file = clip_depth_ros::weights::read_tensor_file(&path).unwrap();
    let mut tensors = file.tensors;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(tensors.len(), 2);
    assert_eq!(tensors[0].0, "a");
    assert_eq!(tensors[0].1.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
    assert_eq!(tensors[1].0, "b");
    assert_eq!(tensors[1].1.dtype(), DType::F16);
    assert_eq!(values(&tensors[1].1), vec![1.0, 1.0]);
}

#[test]
fn transformers_5_packed_qkv_bias_loads_and_a_nonzero_k_bias_is_refused() {
    use clip_depth_ros::weights::{read_tensor_file, write_safetensors};
    let d = dir();
    let file = read_tensor_file(&d.join("eva/hf/model.safetensors")).unwrap();
    let mut by_name: std::collections::BTreeMap<String, Tensor> = file.tensors.into_iter().collect();
    let layers: Vec<String> = by_name.keys().filter_map(|n| n.strip_suffix(".self_attn.q_bias").map(String::from)).collect();
    assert!(!layers.is_empty());
    let packed = |by_name: &mut std::collections::BTreeMap<String, Tensor>, k_value: f64| {
        for l in &layers {
            let q = by_name.remove(&format!("{l}.self_attn.q_bias")).unwrap();
            let v = by_name.remove(&format!("{l}.self_attn.v_bias")).unwrap();
            let k = (q.zeros_like().unwrap() + k_value).unwrap();
            by_name.insert(format!("{l}.self_attn.qkv.bias"), Tensor::cat(&[&q, &k, &v], 0).unwrap());
        }
    };
    let write = |by_name: &std::collections::BTreeMap<String, Tensor>, tmp: &std::path::Path| {
        let tensors: Vec<(String, Tensor)> = by_name.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        write_safetensors(&tmp.join("model.safetensors"), &tensors, &Default::default()).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(d.join("eva/hf").join(f), tmp.join(f)).unwrap();
        }
        ModelFiles { config: d.join("eva/depthblip2.yaml"), checkpoint: tmp.join("model.safetensors"), clip_weights: None, clip_config: None }
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut good = by_name.clone();
    packed(&mut good, 0.0);
    let est = load(&write(&good, tmp.path()));
    let model = est.model().downcast_ref::<clip_depth_ros::model::DepthBlip2>().unwrap();
    let emb = model.image_embeds(&npy(d.join("pixel_values_nyu.npy")).unsqueeze(0).unwrap()).unwrap();
    assert_close("packed qkv.bias: image tokens", &emb.squeeze(0).unwrap(), &npy(d.join("eva/expected/hf/image_embeds_224.npy")), BAR);

    let tmp = tempfile::tempdir().unwrap();
    packed(&mut by_name, 0.5);
    let err = match DepthEstimator::load(&write(&by_name, tmp.path()), clip_depth_ros::DeviceSpec::Cpu, Default::default()) {
        Ok(_) => panic!("a nonzero k bias was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("k part"), "{err}");
}

#[test]
fn a_batch_gives_each_frame_its_own_depth() {
    let (_, files, _) = formats().remove(0);
    let mut est = load(&files);
    // One forward pass over the batch (not the CPU's split into single frames).
    est.set_batch_split(false);
    let (px, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&px, w, h, PixelFormat::Rgb8).unwrap();
    let mirrored: Vec<u8> = px.chunks_exact(w * 3).flat_map(|row| row.chunks_exact(3).rev().flatten().copied().collect::<Vec<_>>()).collect();
    let other = ImageView::packed(&mirrored, w, h, PixelFormat::Rgb8).unwrap();
    let (both, timings) = est.estimate_batch(&[view, other], (160, 120)).unwrap();
    assert_eq!(timings.groups, 1, "the batch ran as one pass");
    for (i, v) in [view, other].iter().enumerate() {
        let alone = est.estimate(v, Some((160, 120))).unwrap().0.data;
        let (a, b): (Vec<f32>, Vec<f32>) = both[i].data.iter().zip(&alone).filter(|(_, b)| !b.is_nan()).map(|(a, b)| (*a, *b)).unzip();
        assert!(rel_max_diff(&a, &b) < 1e-5, "frame {i}");
    }
    assert_ne!(both[0].data, both[1].data);
}

#[test]
fn clip_depth_inspect_checks_blip2_files() {
    let d = dir();
    let run = |extra: &[PathBuf]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_clip_depth"));
        cmd.arg("inspect").arg(d.join("eva/lavis/blip2_pretrained.pth"));
        if let Some(tower) = extra.first() {
            cmd.arg("--clip-weights").arg(tower);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, text) = run(&[d.join("eva/lavis/eva_vit_g.pth")]);
    assert!(ok && text.contains("EVA ViT width 176 x 2 layers") && text.contains("Lavis"), "{text}");
    let (ok, text) = run(&[]);
    assert!(!ok && text.contains("no image tower"), "{text}");
}
