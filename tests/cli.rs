//! The `clip_depth` binary end to end: `infer` writes the reference depth,
//! every user mistake ends in exit code 2 with one readable line on stderr,
//! `inspect` reports architectures and mismatches, `bench` prints a table
//! or JSON.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use common::*;

const CONFIG: &str = "tests/fixtures/tiny_clip/config.yaml";
const CHECKPOINT: &str = "tests/fixtures/tiny_clip/checkpoint.pt";
const CLIP_CONFIG: &str = "tests/fixtures/tiny_clip/clip_config.json";
const IMAGE: &str = "tests/fixtures/images/scene_640x480.png";
const STAGES: [&str; 5] = ["preprocess", "encoder", "decoder", "resize", "total"];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary from the crate root (so the relative fixture paths
/// work), with backtraces requested: none may show anyway.
fn clip_depth<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_clip_depth"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("run clip_depth");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_no_panic(what: &str, run: &Run) {
    let all = format!("{}{}", run.stdout, run.stderr).to_lowercase();
    assert!(!all.contains("panicked"), "{what}: panicked:\n{}", run.stderr);
    assert!(!all.contains("backtrace"), "{what}: backtrace:\n{}", run.stderr);
    assert!(!all.contains("internal error"), "{what}: internal error:\n{}", run.stderr);
}

/// Exit code 2, one non-empty line on stderr, no panic, every `culprit` named.
fn assert_user_error(what: &str, run: &Run, culprits: &[&str]) {
    assert_eq!(run.code, Some(2), "{what}: exit code {:?}\nstdout: {}\nstderr: {}", run.code, run.stdout, run.stderr);
    assert_no_panic(what, run);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line on stderr, got:\n{}", run.stderr);
    for culprit in culprits {
        assert!(lines[0].contains(culprit), "{what}: {culprit:?} not named in: {}", lines[0]);
    }
}

/// `infer` on the fixture; each `(flag, value)` of `options` replaces the
/// fixture's value of that flag or is added.
fn infer(output: &Path, options: &[(&str, &str)]) -> Run {
    let output = output.display().to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("--config", CONFIG),
        ("--checkpoint", CHECKPOINT),
        ("--clip-config", CLIP_CONFIG),
        ("--input", IMAGE),
        ("--output", &output),
    ];
    for &(flag, value) in options {
        match pairs.iter_mut().find(|(f, _)| *f == flag) {
            Some(slot) => slot.1 = value,
            None => pairs.push((flag, value)),
        }
    }
    let mut args = vec!["infer"];
    for (flag, value) in pairs {
        args.extend([flag, value]);
    }
    clip_depth(&args)
}

/// dtype and shape from a .npy header, read without candle.
fn npy_header(path: &Path) -> (String, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x93NUMPY"), "{} is not a .npy file", path.display());
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = String::from_utf8_lossy(&bytes[start..start + len]).into_owned();
    let field = |key: &str| {
        let at = header.find(key).unwrap_or_else(|| panic!("no {key} in {header}")) + key.len();
        header[at..].trim_start().to_string()
    };
    let descr = field("'descr':");
    let descr = descr.split('\'').nth(1).unwrap_or_else(|| panic!("{header}")).to_string();
    let shape = field("'shape':");
    let inner = shape.strip_prefix('(').and_then(|s| s.split(')').next()).unwrap_or_else(|| panic!("{header}"));
    let dims = inner.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().unwrap()).collect();
    assert!(field("'fortran_order':").starts_with("False"), "{header}");
    (descr, dims)
}

fn read_npy(path: &Path) -> Tensor {
    Tensor::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------- infer

#[test]
fn infer_writes_the_reference_depth_and_a_colormap() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("depth.npy");
    let png = dir.path().join("depth.png");
    let run = infer(&npy, &[("--colormap", png.to_str().unwrap())]);
    assert_eq!(run.code, Some(0), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_no_panic("infer", &run);

    assert_eq!(npy_header(&npy), ("<f4".to_string(), vec![480, 640]));
    let depth = read_npy(&npy);
    assert_eq!(depth.dtype(), DType::F32);
    assert_eq!(depth.dims(), &[480, 640]);
    let ours = depth.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rel = rel_max_diff(&ours, &golden(tiny_clip().join("expected/depth_640x480.npy")));
    assert!(rel <= 1e-3, "infer output differs from the reference by {rel:e}");

    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!(img.color(), image::ColorType::Rgb8);
    assert_eq!((img.width(), img.height()), (640, 480));
    let colours: BTreeSet<[u8; 3]> = img.to_rgb8().pixels().map(|p| p.0).collect();
    assert!(colours.len() > 50, "colormap has only {} colours", colours.len());
}

#[test]
fn infer_honours_output_size() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("small.npy");
    let run = infer(&npy, &[("--output-size", "320x240")]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(npy_header(&npy), ("<f4".to_string(), vec![240, 320]));
    let depth = read_npy(&npy);
    assert_eq!((depth.dtype(), depth.dims()), (DType::F32, &[240usize, 320][..]));
}

// ---------------------------------------------------------------- user errors

#[test]
fn a_truncated_checkpoint_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_clip().join("checkpoint.pt")).unwrap();
    let bad = dir.path().join("truncated.pt");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--checkpoint", bad.to_str().unwrap())]);
    assert_user_error("truncated checkpoint", &run, &["truncated.pt"]);
    assert!(!dir.path().join("out.npy").exists(), "an output was written despite the error");
}

#[test]
fn a_missing_checkpoint_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--checkpoint", "tests/fixtures/tiny_clip/no_such_checkpoint.pt")]);
    assert_user_error("missing checkpoint", &run, &["no_such_checkpoint.pt"]);
}

#[test]
fn a_checkpoint_missing_a_tensor_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_without(dir.path(), "depth_prediction_head.3.weight");
    let run = infer(&dir.path().join("out.npy"), &[("--checkpoint", bad.to_str().unwrap())]);
    assert_user_error("missing tensor", &run, &["depth_prediction_head.3.weight", "missing"]);
}

#[test]
fn a_bad_yaml_config_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.yaml");
    std::fs::write(&bad, "decoder_channels: [32, 16\nmain_path_indices: {{ : ]\n\t- x\n").unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--config", bad.to_str().unwrap())]);
    assert_user_error("bad yaml", &run, &["broken.yaml"]);
}

#[test]
fn a_config_with_bad_values_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(tiny_clip().join("config.yaml")).unwrap();
    assert!(text.contains("max_depth: 10.0"));
    let bad = dir.path().join("values.yaml");
    std::fs::write(&bad, text.replace("max_depth: 10.0", "max_depth: -3.0")).unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--config", bad.to_str().unwrap())]);
    assert_user_error("bad values", &run, &["values.yaml", "max_depth"]);

    let bad = dir.path().join("taps.yaml");
    std::fs::write(&bad, text.replace("main_path_indices: [12, 9, 6, 3]", "main_path_indices: [12, 9, 6, 30]")).unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--config", bad.to_str().unwrap())]);
    assert_user_error("tap beyond the backbone", &run, &["taps.yaml", "main_path_indices"]);
}

#[test]
fn a_bad_image_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("noise.png");
    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&bad, noise).unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--input", bad.to_str().unwrap())]);
    assert_user_error("bad image", &run, &["noise.png"]);

    // A real PNG cut short.
    let png = std::fs::read(image_path("scene_640x480.png")).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 3]).unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--input", cut.to_str().unwrap())]);
    assert_user_error("truncated image", &run, &["cut.png"]);
}

#[test]
fn a_missing_image_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--input", "tests/fixtures/images/no_such_image.png")]);
    assert_user_error("missing image", &run, &["no_such_image.png"]);
}

#[test]
fn a_bad_output_size_exits_2_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for size in ["0x240", "320x0", "320", "axb", "-5x3", "100000x100000"] {
        let run = infer(&dir.path().join("out.npy"), &[("--output-size", size)]);
        assert_eq!(run.code, Some(2), "--output-size {size}: exit {:?}, stderr: {}", run.code, run.stderr);
        assert_no_panic(&format!("--output-size {size}"), &run);
        assert!(!run.stderr.trim().is_empty(), "--output-size {size}: nothing on stderr");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_on_a_cpu_build_is_one_line_about_cuda() {
    let dir = tempfile::tempdir().unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--device", "cuda:0")]);
    assert_user_error("cuda on cpu build", &run, &["CUDA", "cuda:0"]);
}

#[test]
fn an_unwritable_output_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no_such_dir").join("out.npy");
    let run = infer(&out, &[]);
    assert_user_error("unwritable output", &run, &["out.npy"]);
}

// ---------------------------------------------------------------- inspect

fn write_without(dir: &Path, missing: &str) -> PathBuf {
    let mut map = candle_core::safetensors::load(tiny_clip().join("checkpoint.safetensors"), &Device::Cpu).unwrap();
    assert!(map.remove(missing).is_some(), "fixture has no {missing}");
    let path = dir.join("incomplete.safetensors");
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

#[test]
fn inspect_prints_the_inferred_architecture() {
    let run = clip_depth(&["inspect", CHECKPOINT]);
    assert_eq!(run.code, Some(0), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_no_panic("inspect", &run);
    let backbone = run.stdout.lines().find(|l| l.starts_with("backbone")).unwrap_or_else(|| panic!("no backbone line:\n{}", run.stdout));
    for part in ["Clip", "hidden 64", "12 layers", "MLP 256", "patch 16", "image 224"] {
        assert!(backbone.contains(part), "{part:?} not in: {backbone}");
    }
    let decoder = run.stdout.lines().find(|l| l.starts_with("decoder")).unwrap_or_else(|| panic!("no decoder line:\n{}", run.stdout));
    for part in ["channels [32, 16, 16, 8]", "FiLM true (hidden 32)", "structural pathway true", "aux heads true"] {
        assert!(decoder.contains(part), "{part:?} not in: {decoder}");
    }
    assert!(run.stdout.contains("depth_prediction_head.3.weight"), "decoder tensors not listed");
    assert!(run.stdout.lines().any(|l| l.starts_with("check: all")), "{}", run.stdout);

    // Against the real configs too.
    let run = clip_depth(&["inspect", CHECKPOINT, "--config", CONFIG, "--clip-config", CLIP_CONFIG]);
    assert_eq!(run.code, Some(0), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.lines().any(|l| l.starts_with("check: all")), "{}", run.stdout);
}

#[test]
fn inspect_lists_a_missing_tensor_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_without(dir.path(), "depth_prediction_head.3.weight");
    for extra in [&[][..], &["--config", CONFIG, "--clip-config", CLIP_CONFIG][..]] {
        let mut args = vec!["inspect".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let run = clip_depth(&args);
        assert_eq!(run.code, Some(1), "{extra:?}: stdout: {}\nstderr: {}", run.stdout, run.stderr);
        assert_no_panic("inspect incomplete", &run);
        assert!(run.stdout.contains("MISMATCH"), "{}", run.stdout);
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains("missing") && l.contains("depth_prediction_head.3.weight"))
            .unwrap_or_else(|| panic!("missing tensor not listed:\n{}", run.stdout));
        assert!(line.contains("[1, 4, 3, 3]"), "shape not shown: {line}");
        assert!(!run.stdout.lines().any(|l| l.trim_start().starts_with("unexpected")), "{}", run.stdout);
    }
}

#[test]
fn inspect_of_a_missing_file_is_one_line_naming_it() {
    let run = clip_depth(&["inspect", "tests/fixtures/tiny_clip/nothing_here.pt"]);
    assert_user_error("inspect missing file", &run, &["nothing_here.pt"]);
}

// ---------------------------------------------------------------- bench

const BENCH: [&str; 14] = [
    "bench", "--clip-config", CLIP_CONFIG, "--config", CONFIG, "--batch", "1", "2", "--iters", "2", "--warmup", "1",
    "--size", "64x48",
];

#[test]
fn bench_prints_a_row_per_stage_and_batch() {
    let run = clip_depth(&BENCH);
    assert_eq!(run.code, Some(0), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_no_panic("bench", &run);
    let mut rows = BTreeSet::new();
    let mut total_median = std::collections::HashMap::new();
    for line in run.stdout.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(batch) = cols.first().and_then(|c| c.parse::<usize>().ok()) else { continue };
        let Some(stage) = cols.get(1) else { continue };
        if STAGES.contains(stage) {
            assert_eq!(cols.len(), 5, "row {line:?}: expected batch, stage, min, median, p95");
            let ms: Vec<f64> = cols[2..].iter().map(|c| c.parse().unwrap_or_else(|_| panic!("{line:?}"))).collect();
            assert!(ms.iter().all(|v| v.is_finite() && *v >= 0.0), "{line:?}");
            if *stage == "total" {
                total_median.insert(batch, ms[1]);
            }
        } else {
            assert_eq!(*stage, "frames/s", "unknown row {line:?}");
            let fps: f64 = cols[2].parse().unwrap();
            // frames/s is the batch over the median total (both printed rounded).
            let total = total_median[&batch];
            let want = batch as f64 * 1e3 / total;
            assert!((fps - want).abs() <= 0.01 + want * 0.01, "{line:?}: {fps} vs batch {batch} / {total} ms");
        }
        assert!(rows.insert((batch, stage.to_string())), "row {line:?} printed twice");
    }
    let want: BTreeSet<(usize, String)> = [1usize, 2]
        .iter()
        .flat_map(|&b| STAGES.iter().chain(&["frames/s"]).map(move |s| (b, s.to_string())))
        .collect();
    assert_eq!(rows, want, "table:\n{}", run.stdout);
    assert!(run.stdout.contains("hidden 64"), "{}", run.stdout);
}

#[test]
fn bench_json_has_results_for_each_batch() {
    let mut args = BENCH.to_vec();
    args.push("--json");
    let run = clip_depth(&args);
    assert_eq!(run.code, Some(0), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_no_panic("bench --json", &run);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(doc["weights"], "random");
    assert_eq!(doc["backbone"]["hidden"], 64);
    assert_eq!(doc["backbone"]["layers"], 12);
    assert_eq!(doc["size"], serde_json::json!([64, 48]));
    assert_eq!(doc["iters"], 2);
    let results = doc["results"].as_array().expect("results array");
    let batches: Vec<u64> = results.iter().map(|r| r["batch"].as_u64().expect("batch")).collect();
    assert_eq!(batches, vec![1, 2]);
    for r in results {
        let stages = r["stages_ms"].as_object().expect("stages_ms");
        let names: BTreeSet<&str> = stages.keys().map(String::as_str).collect();
        assert_eq!(names, STAGES.iter().copied().collect::<BTreeSet<_>>());
        for (name, s) in stages {
            let v = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{name}.{k} in {r}"));
            assert!(v("min") >= 0.0 && v("p95").is_finite(), "{name}: {s}");
        }
        let batch = r["batch"].as_f64().unwrap();
        let total = stages["total"]["median"].as_f64().unwrap();
        let fps = r["frames_per_s"].as_f64().expect("frames_per_s");
        assert!((fps - batch * 1e3 / total).abs() <= 1e-9 * fps, "frames/s {fps} is not batch / median total {total} ms");
    }
}

#[test]
fn bench_times_a_real_checkpoint() {
    let run = clip_depth(&[
        "bench", "--config", CONFIG, "--checkpoint", CHECKPOINT, "--clip-config", CLIP_CONFIG, "--batch", "1", "--iters", "1",
        "--warmup", "0", "--size", "64x48", "--json",
    ]);
    assert_eq!(run.code, Some(0), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(doc["weights"], "checkpoint");
    assert_eq!(doc["results"].as_array().map(Vec::len), Some(1));
}

#[test]
fn bench_with_zero_iterations_is_a_user_error() {
    let mut args = BENCH.to_vec();
    args[9] = "0";
    assert_eq!(args[8], "--iters");
    let run = clip_depth(&args);
    assert_user_error("bench --iters 0", &run, &["--iters"]);
}

#[test]
fn bf16_on_the_cpu_is_one_line_even_with_rust_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let run = infer(&dir.path().join("out.npy"), &[("--dtype", "bf16")]);
    assert_user_error("bf16 on cpu", &run, &["bf16", "CPU"]);
}

#[test]
fn several_inputs_run_as_one_batch_each_at_its_own_size() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    let small = tiny_clip().parent().unwrap().join("images/scene_224.png");
    let args: Vec<String> = vec![
        "infer".into(), "--config".into(), CONFIG.into(), "--checkpoint".into(), CHECKPOINT.into(),
        "--clip-config".into(), CLIP_CONFIG.into(),
        "--input".into(), small.display().to_string(), IMAGE.into(),
        "--output".into(), a.display().to_string(), b.display().to_string(),
    ];
    let run = clip_depth(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("2 frame(s) in one batch"), "{}", run.stdout);
    let da = read_npy(&a).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let db = read_npy(&b).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(rel_max_diff(&da, &golden(tiny_clip().join("expected/depth_224.npy"))) <= 1e-4);
    assert!(rel_max_diff(&db, &golden(tiny_clip().join("expected/depth_640x480.npy"))) <= 1e-3);

    let mismatched = clip_depth(&args[..args.len() - 1]);
    assert_user_error("inputs without outputs", &mismatched, &["2 inputs", "1 --output"]);
}

#[test]
fn a_random_checkpoint_loads_strictly_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("random.safetensors");
    let made = clip_depth(&[
        "random-checkpoint", "--config", CONFIG, "--clip-config", CLIP_CONFIG, "--output", &ckpt.display().to_string(),
    ]);
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let checked = clip_depth(&["inspect", &ckpt.display().to_string(), "--config", CONFIG, "--clip-config", CLIP_CONFIG]);
    assert_eq!(checked.code, Some(0), "{}", checked.stdout);
    assert!(checked.stdout.contains("check: all"), "{}", checked.stdout);
    let out = dir.path().join("d.npy");
    let run = infer(&out, &[("--checkpoint", &ckpt.display().to_string())]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let random = read_npy(&out).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let trained_like = golden(tiny_clip().join("expected/depth_640x480.npy"));
    assert!(rel_max_diff(&random, &trained_like) > 1e-2, "other weights gave the fixture's depth");
}
