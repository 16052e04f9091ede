//! Training and evaluation against the PyTorch reference
//! (tests/reference/make_train_fixtures.py): the losses and their
//! gradients, one train-mode forward and backward pass, three optimiser
//! steps, resume, the evaluation protocol; and the `train` / `eval`
//! commands end to end on the synthetic rooms of tests/fixtures/train_data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor, Var};
use clip_depth_ros::model::nn::{Ctx, Features, InitSource, Role, TrainableModel};
use clip_depth_ros::model::{DecoderConfig, Precision, TrainOptions};
use clip_depth_ros::train::loss::{gradient, silog, ssim, total_loss, valid_mask, LossWeights};
use clip_depth_ros::train::{load_trainable, TrainConfig, WeightSources};
use clip_depth_ros::weights::read_safetensors;

const CONFIG: &str = "tests/fixtures/train_data/config.yaml";
const CLIP_WEIGHTS: &str = "tests/fixtures/tiny_clip/clip/model.safetensors";
const TINY_CHECKPOINT: &str = "tests/fixtures/tiny_clip/checkpoint.safetensors";

fn fixture(name: &str) -> HashMap<String, Tensor> {
    read_safetensors(Path::new(&format!("tests/fixtures/train/{name}"))).unwrap().0.into_iter().collect()
}

/// max |a - b| / max |b|.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    let diff = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    if scale == 0.0 { diff } else { diff / scale }
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clip_depth"))
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().expect("run clip_depth")
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn losses_and_their_gradients_match_the_reference() {
    let f = fixture("losses.safetensors");
    for case in ["same", "resize", "empty_sample"] {
        let pred = &f[&format!("{case}.pred")];
        let gt = &f[&format!("{case}.gt")];
        let mask = valid_mask(gt, 0.001, 10.0).unwrap();
        type LossFn = fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>;
        for (name, func) in [("silog", silog as LossFn), ("ssim", ssim as LossFn), ("grad", gradient as LossFn)] {
            let p = Var::from_tensor(pred).unwrap();
            let value = func(p.as_tensor(), gt, &mask).unwrap();
            let want = f[&format!("{case}.{name}.value")].to_vec1::<f64>().unwrap()[0];
            let got = value.to_scalar::<f64>().unwrap();
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-12), "{case} {name}: {got} vs {want}");
            let grads = value.backward().unwrap();
            let g = grads.get(p.as_tensor()).unwrap();
            let r = rel(g, &f[&format!("{case}.{name}.grad")]);
            assert!(r <= 1e-5, "{case} {name} gradient: relative error {r:.2e}");
        }
    }
}

fn decoder_cfg() -> (TrainConfig, DecoderConfig) {
    TrainConfig::load(Path::new(CONFIG), &["decoder_dropout=0.0".into()]).unwrap()
}

fn tiny_trainable(precision: Precision) -> Box<dyn TrainableModel> {
    let (cfg, decoder) = decoder_cfg();
    let sources = WeightSources {
        config: CONFIG.into(),
        init: Some(TINY_CHECKPOINT.into()),
        clip_weights: None,
        clip_config: Some("tests/fixtures/tiny_clip/clip_config.json".into()),
    };
    let opts = TrainOptions { aux_heads: cfg.use_multiscale_supervision, dropout: 0.0 };
    load_trainable(&sources, &decoder, opts, 0, &Device::Cpu, precision).unwrap()
}

/// The first training batch as the reference loads it (no augmentation).
fn first_batch(model: &dyn TrainableModel) -> (Features, Tensor) {
    use clip_depth_ros::data::{read_list, Augment, DataSpec};
    use clip_depth_ros::image::preprocess::Preprocessor;
    let (cfg, _) = decoder_cfg();
    let (mean, std) = model.normalisation();
    let spec = DataSpec {
        dataset: "nyu".into(),
        data_root: cfg.data_path.clone(),
        gt_root: Some(cfg.gt_path.clone()),
        input_height: cfg.input_height,
        input_width: cfg.input_width,
        kb_crop: false,
        nyu_crop: false,
        rotate_degree: None,
        depth_divisor: 1000.0,
        preprocessor: Preprocessor::new(model.input_size(), mean, std),
    };
    let list = read_list(&cfg.filenames_file).unwrap();
    let mut rng = clip_depth_ros::rng::Rng::seed(0);
    let samples: Vec<_> = (0..2).map(|i| spec.load_train(&list[i], i, Augment::Off, &mut rng).unwrap()).collect();
    let s = model.input_size();
    let pixels: Vec<f32> = samples.iter().flat_map(|x| x.pixels.clone()).collect();
    let depth: Vec<f32> = samples.iter().flat_map(|x| x.depth.clone().unwrap()).collect();
    let pixels = Tensor::from_vec(pixels, (2, 3, s, s), &Device::Cpu).unwrap();
    (model.features(&pixels).unwrap(), Tensor::from_vec(depth, (2, 1, cfg.input_height, cfg.input_width), &Device::Cpu).unwrap())
}

/// One forward and backward pass in train mode: (loss terms, gradient of
/// every trainable parameter that has one, buffers after).
fn one_step(precision: Precision) -> (Vec<f64>, Vec<(String, Option<Tensor>)>, Vec<(String, Tensor)>) {
    let (cfg, _) = decoder_cfg();
    let model = tiny_trainable(precision);
    let (features, depth) = first_batch(model.as_ref());
    let ctx = Ctx::train(clip_depth_ros::rng::Rng::seed(0));
    let pred = model.forward(&features, (cfg.input_height, cfg.input_width), &ctx).unwrap();
    let mask = valid_mask(&depth, cfg.min_depth, cfg.max_depth).unwrap();
    let weights = LossWeights { w_ssim: cfg.w_ssim, w_grad: cfg.w_grad, aux: cfg.aux_loss_weights.as_list(), multiscale: true };
    let terms = total_loss(&pred, &depth, &mask, &weights).unwrap();
    let values = vec![terms.total_value().unwrap(), terms.silog, terms.ssim, terms.aux, terms.grad];
    let grads = terms.total.backward().unwrap();
    let g = model.store().with_role(Role::Trainable).into_iter().map(|e| (e.name.clone(), grads.get(e.var.as_tensor()).cloned())).collect();
    let b = model.store().with_role(Role::Buffer).into_iter().map(|e| (e.name.clone(), e.tensor())).collect();
    (values, g, b)
}

#[test]
fn one_train_mode_step_in_f64_matches_the_reference_gradients_and_batch_norm_statistics() {
    let f = fixture("train_step.safetensors");
    let (values, grads, buffers) = one_step(Precision { encoder: DType::F64, train: DType::F64 });
    let want = f["loss64"].to_vec1::<f64>().unwrap();
    for (g, w) in values.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w.abs().max(1e-9), "loss terms {values:?} vs {want:?}");
    }
    let mut checked = 0;
    for (name, g) in &grads {
        match (g, f.get(&format!("grad64.{name}"))) {
            (Some(g), Some(w)) => {
                let r = rel(g, w);
                assert!(r <= 1e-6, "{name}: gradient relative error {r:.2e}");
                checked += 1;
            }
            (None, None) => {}
            (g, w) => panic!("{name}: gradient here {} / in the reference {}", g.is_some(), w.is_some()),
        }
    }
    assert!(checked > 100, "only {checked} gradients compared");
    for (name, t) in &buffers {
        let want = &f[&format!("after64.{name}")];
        if t.dtype() == DType::I64 {
            assert_eq!(t.to_vec0::<i64>().unwrap(), want.to_vec0::<i64>().unwrap(), "{name}");
        } else {
            let r = rel(t, want);
            assert!(r <= 1e-9, "{name} after one step: relative error {r:.2e}");
        }
    }
}

/// In f32 the same pass is within float32's own noise: PyTorch's f32
/// gradients differ from its f64 ones by up to 6.5e-3 (relative, per
/// tensor) on this model, as batch norm over few, similar values makes
/// some gradients ill-conditioned; ours are held to the same distance.
#[test]
fn one_train_mode_step_in_f32_is_within_float32_noise_of_the_reference() {
    let f = fixture("train_step.safetensors");
    let (values, grads, buffers) = one_step(Precision::default());
    let want = f["loss64"].to_vec1::<f64>().unwrap();
    for (g, w) in values.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1e-9), "loss terms {values:?} vs {want:?}");
    }
    let mut ours = Vec::new();
    let mut torch32 = Vec::new();
    for (name, g) in &grads {
        let (Some(g), Some(w)) = (g, f.get(&format!("grad64.{name}"))) else { continue };
        ours.push((rel(g, w), name.clone()));
        torch32.push(rel(&f[&format!("grad.{name}")], w));
    }
    ours.sort_by(|a, b| a.0.total_cmp(&b.0));
    torch32.sort_by(|a, b| a.total_cmp(b));
    let (worst, median) = (ours.last().unwrap(), ours[ours.len() / 2].0);
    let torch_worst = *torch32.last().unwrap();
    eprintln!("f32 gradients against f64: worst {:.2e} ({}), median {median:.2e}; PyTorch f32 worst {torch_worst:.2e}", worst.0, worst.1);
    assert!(worst.0 <= 1.5 * torch_worst.max(1e-3), "{}: {:.2e} (PyTorch f32: {torch_worst:.2e})", worst.1, worst.0);
    assert!(median <= 1e-3, "median gradient error {median:.2e}");
    for (name, t) in &buffers {
        if t.dtype() != DType::I64 {
            let r = rel(t, &f[&format!("after64.{name}")]);
            assert!(r <= 1e-4, "{name}: {r:.2e}");
        }
    }
}

/// Trains from the tiny checkpoint without augmentation or shuffling.
fn deterministic_run(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "train", "--config", CONFIG, "--output-dir", dir.to_str().unwrap(), "--init", TINY_CHECKPOINT,
        "--clip-config", "tests/fixtures/tiny_clip/clip_config.json", "--no-augment", "--no-shuffle",
        "--set", "decoder_dropout=0.0",
    ];
    args.extend_from_slice(extra);
    ok(&run(&args));
}

/// The same in f64 (the reference precision of the three-step fixture).
fn deterministic_run_f64(dir: &Path, extra: &[&str]) {
    let mut args = vec!["--dtype", "f64"];
    args.extend_from_slice(extra);
    deterministic_run(dir, &args);
}

fn weights(path: &Path) -> HashMap<String, Tensor> {
    read_safetensors(path).unwrap().0.into_iter().collect()
}

#[test]
fn three_deterministic_steps_match_the_reference() {
    let f = fixture("three_steps.safetensors");
    let want_lr = f["lr"].to_vec1::<f64>().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for k in 1..=3usize {
        let dir = tmp.path().join(format!("k{k}"));
        deterministic_run_f64(&dir, &["--max-steps", &k.to_string()]);
        for (file, prefix) in [("last.safetensors", "step"), ("ema.safetensors", "ema")] {
            let got = weights(&dir.join(file));
            let mut compared = 0;
            let mut worst = 0f64;
            for (key, want) in &f {
                let Some(name) = key.strip_prefix(&format!("{prefix}{k}.")) else { continue };
                let init = &f[&format!("init.{name}")];
                let have = &got[name];
                if want.dtype() == DType::I64 {
                    assert_eq!(have.to_vec0::<i64>().unwrap(), want.to_vec0::<i64>().unwrap(), "{file} {name}");
                    continue;
                }
                // Compare the change from the start: what the steps did.
                let (d_have, d_want) = ((have - init).unwrap(), (want - init).unwrap());
                let r = rel(&d_have, &d_want);
                assert!(r <= 1e-4, "step {k} {file} {name}: relative error of the change {r:.2e}");
                worst = worst.max(r);
                compared += 1;
            }
            assert!(compared > 100, "{file}: {compared} tensors compared");
            eprintln!("step {k} {file}: {compared} tensors, worst relative error of the change {worst:.2e}");
        }
        let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let lrs: Vec<f64> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["kind"] == "train")
            .map(|r| r["lr"].as_f64().unwrap())
            .collect();
        assert_eq!(lrs.len(), k);
        for (g, w) in lrs.iter().zip(&want_lr) {
            assert!((g - w).abs() <= 1e-12 * w, "learning rates {lrs:?} vs {want_lr:?}");
        }
    }
}

#[test]
fn a_run_resumed_after_two_steps_equals_four_straight_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    deterministic_run(&straight, &["--max-steps", "4"]);
    let first = tmp.path().join("first");
    deterministic_run(&first, &["--max-steps", "2"]);
    let resumed = tmp.path().join("resumed");
    ok(&run(&[
        "train", "--config", CONFIG, "--output-dir", resumed.to_str().unwrap(), "--resume", first.to_str().unwrap(),
        "--clip-config", "tests/fixtures/tiny_clip/clip_config.json", "--no-augment", "--no-shuffle",
        "--set", "decoder_dropout=0.0", "--max-steps", "4",
    ]));
    for file in ["last.safetensors", "ema.safetensors"] {
        let (a, b) = (weights(&straight.join(file)), weights(&resumed.join(file)));
        assert_eq!(a.len(), b.len());
        for (name, t) in &a {
            let same = match t.dtype() {
                DType::I64 => t.flatten_all().unwrap().to_vec1::<i64>().unwrap() == b[name].flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                _ => {
                    let x = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let y = b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits())
                }
            };
            assert!(same, "{file} {name} differs after resuming");
        }
    }
}

