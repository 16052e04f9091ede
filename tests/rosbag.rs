//! rosbag2 recordings written by a third-party implementation (the Python
//! `rosbags` package, tests/reference/make_bags.py) made into datasets by
//! `clip_depth dataset from-bag`, and compared with what that script
//! computed independently: the recorded depth pixel for pixel (registered),
//! its own re-projection within 1 mm (unregistered), the colour pixels.
//! Then damaged bags: truncated and overwritten files, garbage, wrong
//! topics; each ends in counted warnings or one line and exit code 2,
//! never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clip_depth"))
}

fn bags() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bags")
}

fn clip_depth(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run clip_depth")
}

fn text(o: &Output) -> String {
    format!("exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn rgb(path: &Path) -> (Vec<u8>, u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    (img.as_raw().clone(), img.width(), img.height())
}

fn depth(path: &Path) -> (Vec<u16>, u32, u32) {
    match image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        image::DynamicImage::ImageLuma16(d) => (d.as_raw().clone(), d.width(), d.height()),
        other => panic!("{}: not 16-bit grey but {:?}", path.display(), other.color()),
    }
}

/// Runs from-bag on a fixture case with its topics; returns the output dir.
fn from_bag(case: &str, bag: &Path, extra: &[&str], out: &Path) -> Output {
    let expected = json(&bags().join(case).join("expected.json"));
    let mut args: Vec<String> = vec![
        "dataset".into(),
        "from-bag".into(),
        "--bag".into(),
        bag.display().to_string(),
        "--rgb-topic".into(),
        expected["topics"]["rgb"].as_str().unwrap().into(),
        "--depth-topic".into(),
        expected["topics"]["depth"].as_str().unwrap().into(),
        "--out".into(),
        out.display().to_string(),
        "--split-gap".into(),
        "0".into(),
    ];
    args.extend(expected["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(bin()).args(&args).output().expect("run clip_depth")
}

/// Exit code 2 with one error line last, no panic.
fn assert_user_error(what: &str, o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what}: {}", text(o));
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: {}", text(o));
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("clip_depth: error: "), "{what}: last line {last:?}");
    for n in needles {
        assert!(last.contains(n), "{what}: {last:?} does not mention {n:?}");
    }
}

const CASES: &[&str] = &[
    "mcap_registered_raw",
    "sqlite_compressed_registered",
    "mcap_unregistered_tf",
    "sqlite_unregistered_compressed32",
    "mcap_unregistered_no_tf",
    "sqlite_message_zstd_32f",
];

#[test]
fn each_bag_becomes_the_dataset_the_reference_computed() {
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let dir = bags().join(case);
        let expected = json(&dir.join("expected.json"));
        let out = tmp.path().join(case);
        let o = from_bag(case, &dir.join("bag"), &[], &out);
        if expected["exit"] == 2 {
            assert_user_error(case, &o, &[expected["error_contains"].as_str().unwrap()]);
            continue;
        }
        assert!(o.status.success(), "{case}: {}", text(&o));
        let summary = json(&out.join("summary.json"));
        let samples = summary["samples"].as_array().unwrap();
        let pairs = expected["pairs"].as_array().unwrap();
        assert_eq!(samples.len(), pairs.len(), "{case}: {}", text(&o));
        // Skips by reason, exactly as the writer arranged them.
        let skipped: BTreeMap<String, u64> = serde_json::from_value(summary["skipped"].clone()).unwrap();
        let want: BTreeMap<String, u64> = serde_json::from_value(expected["skipped"].clone()).unwrap();
        assert_eq!(skipped, want, "{case}");
        let lists: String = ["train.txt", "eval.txt"].iter().map(|f| std::fs::read_to_string(out.join(f)).unwrap()).collect();
        for (pair, sample) in pairs.iter().zip(samples) {
            assert_eq!(sample["stamp_ns"], pair["stamp_ns"], "{case}: samples in time order");
            assert_eq!(sample["registration"], expected["registration"], "{case}");
            let name = sample["name"].as_str().unwrap();
            let line =
                lists.lines().find(|l| l.starts_with(&format!("/rgb/{name}.png "))).unwrap_or_else(|| panic!("{case}: {name} in no list"));
            let focal: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_eq!(focal, pair["focal"].as_f64().unwrap(), "{case} {name}");

            let (got, w, h) = rgb(&out.join(format!("rgb/{name}.png")));
            let (want, ww, wh) = rgb(&dir.join(pair["rgb"].as_str().unwrap()));
            assert_eq!((w, h), (ww, wh), "{case} {name}");
            if pair["jpeg"] == true {
                // Two JPEG decoders (Pillow's libjpeg, the image crate's) agree to rounding.
                let max = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                let mean = got.iter().zip(&want).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / got.len() as f64;
                assert!(max <= 8 && mean <= 1.0, "{case} {name}: JPEG colour differs by {max} (mean {mean:.2})");
            } else {
                assert_eq!(got, want, "{case} {name}: colour");
            }

            let (got, w, h) = depth(&out.join(format!("depth/{name}.png")));
            let (want, ww, wh) = depth(&dir.join(pair["depth"].as_str().unwrap()));
            assert_eq!((w, h), (ww, wh), "{case} {name}");
            assert!(want.iter().filter(|&&v| v > 0).count() * 10 > want.len(), "{case}: the reference depth is nearly empty");
            if expected["registration"] == "AsRecorded" {
                assert_eq!(got, want, "{case} {name}: depth differs from the recording");
            } else {
                let both = got.iter().zip(&want).filter(|(a, b)| **a > 0 && **b > 0).count();
                let one = got.iter().zip(&want).filter(|(a, b)| (**a > 0) != (**b > 0)).count();
                let worst = got.iter().zip(&want).filter(|(a, b)| **a > 0 && **b > 0).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                assert!(worst <= 1, "{case} {name}: re-projected depth differs by {worst} mm");
                assert!(one * 1000 <= both, "{case} {name}: {one} pixels valid in only one of the two ({both} in both)");
                assert!(both * 4 > got.len(), "{case} {name}: only {both} of {} pixels", got.len());
            }
        }
    }
}

#[test]
fn single_files_read_like_their_folders() {
    let tmp = tempfile::tempdir().unwrap();
    for (case, file) in [("mcap_registered_raw", "bag.mcap"), ("sqlite_compressed_registered", "bag.db3")] {
        let whole = bags().join(case).join("bag").join(file);
        let out = tmp.path().join(case);
        let o = from_bag(case, &whole, &[], &out);
        assert!(o.status.success(), "{case}: {}", text(&o));
        let n = json(&out.join("summary.json"))["exported"].as_u64().unwrap();
        assert_eq!(n as usize, json(&bags().join(case).join("expected.json"))["pairs"].as_array().unwrap().len(), "{case}");
    }
}

#[test]
fn every_and_a_tighter_offset_thin_the_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let case = "mcap_registered_raw";
    let bag = bags().join(case).join("bag");
    // Frame 2's depth is 4 ms off: unpaired at 3 ms.
    let o = from_bag(case, &bag, &["--max-offset-ms", "3"], &tmp.path().join("a"));
    assert!(o.status.success(), "{}", text(&o));
    let s = json(&tmp.path().join("a/summary.json"));
    assert_eq!(s["skipped"]["no depth frame within 3 ms"], 2);
    let o = from_bag(case, &bag, &["--every", "2"], &tmp.path().join("b"));
    assert!(o.status.success(), "{}", text(&o));
    let s = json(&tmp.path().join("b/summary.json"));
    assert_eq!(s["pairs"], 7);
    assert_eq!(s["thinned_by_every"], 3);
}

fn copy_bag(case: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(bags().join(case).join("bag")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_owned()
}

/// Damaged copies of a bag file: cut at several lengths, and with a run of
/// bytes overwritten at several places.
fn damaged(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for k in 1..8 {
        let cut = bytes.len() * k / 8;
        out.push((format!("cut at {cut}"), bytes[..cut].to_vec()));
    }
    for k in 1..6 {
        let at = bytes.len() * k / 6;
        let mut b = bytes.to_vec();
        for (i, v) in b[at..(at + 700).min(bytes.len())].iter_mut().enumerate() {
            *v = (i as u8).wrapping_mul(151) ^ 0x5a;
        }
        out.push((format!("overwritten at {at}"), b));
    }
    out
}

#[test]
fn damaged_bags_cost_warnings_or_one_line_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut partial = 0;
    for (case, file) in
        [("mcap_registered_raw", "bag.mcap"), ("sqlite_compressed_registered", "bag.db3"), ("mcap_unregistered_tf", "bag.mcap")]
    {
        let good = std::fs::read(bags().join(case).join("bag").join(file)).unwrap();
        for (i, (how, bytes)) in damaged(&good).into_iter().enumerate() {
            let dir = copy_bag(case, &tmp.path().join(format!("{case}_{i}")));
            std::fs::write(dir.join(file), &bytes).unwrap();
            let out = tmp.path().join(format!("{case}_{i}_out"));
            let o = from_bag(case, &dir, &[], &out);
            let what = format!("{case} {how}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked") && !err.contains("internal error"), "{what}: {}", text(&o));
            match o.status.code() {
                Some(0) => {
                    let s = json(&out.join("summary.json"));
                    let warned: u64 = s["warnings"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
                    let lost = s["exported"].as_u64().unwrap() < 3;
                    assert!(warned > 0 || !lost, "{what}: frames lost without a warning: {}", text(&o));
                    partial += 1;
                }
                Some(2) => assert_user_error(&what, &o, &[]),
                other => panic!("{what}: exit {other:?}: {}", text(&o)),
            }
        }
    }
    assert!(partial >= 6, "damage early in a file ends it, late damage keeps what came before: {partial}");
}

#[test]
fn unusable_input_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.mcap");
    std::fs::write(&garbage, b"not a bag at all, just some text").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let case = "mcap_registered_raw";
    let bag = bags().join(case).join("bag");
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        ("garbage file", vec!["--bag".into(), garbage.display().to_string()], vec!["garbage.mcap"]),
        ("empty folder", vec!["--bag".into(), empty.display().to_string()], vec!["no metadata.yaml"]),
        ("missing bag", vec!["--bag".into(), tmp.path().join("nope").display().to_string()], vec!["nope"]),
        (
            "wrong topic",
            vec!["--bag".into(), bag.display().to_string(), "--rgb-topic".into(), "/nope/image_raw".into()],
            vec!["/nope/image_raw", "/camera/color/image_raw"],
        ),
        (
            "depth topic of the wrong type",
            vec!["--bag".into(), bag.display().to_string(), "--depth-topic".into(), "/camera/color/camera_info".into()],
            vec!["CameraInfo"],
        ),
        ("bad --min-valid", vec!["--bag".into(), bag.display().to_string(), "--min-valid".into(), "2".into()], vec!["--min-valid"]),
    ];
    for (i, (what, args, needles)) in cases.into_iter().enumerate() {
        let mut all: Vec<String> = vec!["dataset".into(), "from-bag".into()];
        let has = |flag: &str| args.iter().any(|a| a == flag);
        if !has("--rgb-topic") {
            all.extend(["--rgb-topic".into(), "/camera/color/image_raw".into()]);
        }
        if !has("--depth-topic") {
            all.extend(["--depth-topic".into(), "/camera/depth/image_raw".into()]);
        }
        all.extend(args.clone());
        all.extend(["--out".into(), tmp.path().join(format!("out{i}")).display().to_string()]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_user_error(what, &clip_depth(&refs), &needles);
    }
    // An output folder that already holds files is refused, not mixed into.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "x").unwrap();
    let o = from_bag(case, &bag, &[], &busy);
    assert_user_error("non-empty --out", &o, &["not empty"]);
    assert!(busy.join("keep.txt").exists());
}

#[test]
fn a_bag_dataset_is_accepted_by_train() {
    let tmp = tempfile::tempdir().unwrap();
    let case = "mcap_unregistered_tf";
    let out = tmp.path().join("ds");
    let o = from_bag(
        case,
        &bags().join(case).join("bag"),
        &["--model-config", "tests/fixtures/tiny_clip/config.yaml", "--set", "batch_size=2"],
        &out,
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = tmp.path().join("run");
    let o = clip_depth(&[
        "train",
        "--config",
        out.join("config.yaml").to_str().unwrap(),
        "--output-dir",
        run.to_str().unwrap(),
        "--clip-weights",
        "tests/fixtures/tiny_clip/clip/model.safetensors",
        "--max-steps",
        "2",
        "--seed",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(run.join("last.safetensors").is_file());
}
