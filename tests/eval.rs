//! `clip_depth eval` against the reference protocol
//! (tests/reference/make_train_fixtures.py): metrics of fixed predictions
//! under every protocol option to 1e-6, and of the tiny model itself.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const CONFIG: &str = "tests/fixtures/train_data/config.yaml";

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string("tests/fixtures/train/eval_expected.json").unwrap()).unwrap()
}

/// Runs `clip_depth eval ... --json OUT` and returns the metrics.
fn eval(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    let out = Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .args(["eval", "--config", CONFIG, "--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    doc["metrics"].clone()
}

fn close(got: &Value, want: &Value, tol: impl Fn(&str) -> f64, what: &str) {
    for name in ["a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log_10", "silog"] {
        let (g, w) = (got[name].as_f64().unwrap(), want[name].as_f64().unwrap());
        let t = tol(name);
        assert!((g - w).abs() <= t * w.abs().max(1.0), "{what} {name}: {g} vs {w} (tolerance {t})");
    }
}

#[test]
fn fixed_predictions_give_the_reference_metrics_under_every_protocol() {
    let want = expected();
    let preds = "tests/fixtures/train/predictions";
    let cases: [(&str, Vec<&str>); 6] = [
        ("none", vec![]),
        ("nyu_eigen", vec!["--crop", "eigen"]),
        ("median", vec!["--median-scaling"]),
        ("range", vec!["--set", "min_depth_eval=1.0", "--set", "max_depth_eval=5.0"]),
        ("kitti_eigen", vec!["--set", "dataset=kitti", "--set", "max_depth_eval=80", "--crop", "eigen"]),
        ("kitti_garg", vec!["--set", "dataset=kitti", "--set", "max_depth_eval=80", "--crop", "garg", "--median-scaling"]),
    ];
    for (name, extra) in cases {
        let mut args = vec!["--predictions", preds];
        args.extend(extra);
        close(&eval(&args), &want[name], |_| 1e-6, name);
    }
}

#[test]
fn the_tiny_model_scores_as_in_the_reference_with_and_without_flip_tta() {
    let want = expected();
    let model = ["--checkpoint", "tests/fixtures/tiny_clip/checkpoint.safetensors", "--clip-config", "tests/fixtures/tiny_clip/clip_config.json"];
    // The model's depth agrees with PyTorch's to about 1e-6: continuous
    // metrics to 1e-4, threshold counts to a few pixels of the 12288.
    let tol = |name: &str| if name.starts_with('a') { 5.0 / 12288.0 } else { 1e-4 };
    close(&eval(&model), &want["model"], tol, "model");
    let mut flip = model.to_vec();
    flip.push("--flip-tta");
    close(&eval(&flip), &want["model_flip"], tol, "model with flip TTA");
}

#[test]
fn outputs_per_image_rows_pictures_and_predictions_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = |s: &str| -> PathBuf { dir.path().join(s) };
    let out = Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .args(["eval", "--config", CONFIG, "--checkpoint", "tests/fixtures/tiny_clip/checkpoint.safetensors"])
        .args(["--clip-config", "tests/fixtures/tiny_clip/clip_config.json"])
        .args(["--per-image", d("rows.csv").to_str().unwrap(), "--visuals", d("vis").to_str().unwrap(), "--count", "2"])
        .args(["--save-predictions", d("pred").to_str().unwrap(), "--json", d("a.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("abs_rel") && table.contains("4 images evaluated"), "{table}");
    let rows = std::fs::read_to_string(d("rows.csv")).unwrap();
    assert_eq!(rows.lines().count(), 5, "{rows}");
    assert!(rows.starts_with("index,line,rgb,a1,"));
    let pictures: Vec<_> = std::fs::read_dir(d("vis")).unwrap().collect();
    assert_eq!(pictures.len(), 2);
    let img = image::open(d("vis").join("00000.png")).unwrap();
    assert!(img.width() > 4 * 64 && img.height() >= 120, "{}x{}", img.width(), img.height());
    // The saved predictions evaluate to the same metrics.
    let again = eval(&["--predictions", d("pred").to_str().unwrap()]);
    let first: Value = serde_json::from_str(&std::fs::read_to_string(d("a.json")).unwrap()).unwrap();
    close(&again, &first["metrics"], |_| 1e-12, "saved predictions");
}

#[test]
fn a_bad_config_value_or_missing_list_exits_2_with_one_line() {
    for extra in [vec!["--set", "eval_crop=middle"], vec!["--set", "filenames_file_eval=nowhere.txt"], vec!["--set", "max_depth_eval=-1"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_clip_depth"))
            .args(["eval", "--config", CONFIG, "--predictions", "tests/fixtures/train/predictions"])
            .args(&extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
    }
}

#[test]
fn a_depthclip_model_is_evaluated_on_whole_frames_as_infer_sees_them() {
    // The DepthCLIP fixture (ViT tower, no crop) with the rooms' evaluation keys.
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = std::fs::read_to_string("tests/fixtures/depthclip/vit/depthclip.yaml").unwrap();
    for line in std::fs::read_to_string(CONFIG).unwrap().lines() {
        if ["dataset:", "data_path", "gt_path", "filenames_file_eval:", "min_depth_eval:", "max_depth_eval:"].iter().any(|k| line.starts_with(k)) {
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    let config = dir.path().join("depthclip_eval.yaml");
    std::fs::write(&config, yaml).unwrap();
    let checkpoint = "tests/fixtures/depthclip/vit/hf/model.safetensors";
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_clip_depth")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let json = dir.path().join("m.json");
    run(&["eval", "--config", config.to_str().unwrap(), "--checkpoint", checkpoint, "--json", json.to_str().unwrap()]);
    let direct: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The same frames through `clip_depth infer`, scored as saved predictions.
    let preds = dir.path().join("pred");
    std::fs::create_dir_all(&preds).unwrap();
    let list = std::fs::read_to_string("tests/fixtures/train_data/val.txt").unwrap();
    for (i, line) in list.lines().enumerate() {
        let rgb = format!("tests/fixtures/train_data/{}", line.split_whitespace().next().unwrap().trim_start_matches('/'));
        let out = preds.join(format!("{i:05}.npy"));
        run(&["infer", "--config", config.to_str().unwrap(), "--checkpoint", checkpoint, "--input", &rgb, "--output", out.to_str().unwrap()]);
    }
    let via_infer = eval(&["--predictions", preds.to_str().unwrap()]);
    close(&direct["metrics"], &via_infer, |_| 1e-9, "DepthCLIP");
    assert!(direct["metrics"]["abs_rel"].as_f64().unwrap().is_finite());
}
