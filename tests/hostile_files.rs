//! Files written to break the loaders, each aimed at one defect: a torch
//! archive whose tensor claims far more memory than its storage holds, and
//! checkpoints with one tensor of the wrong rank where the architecture is
//! read off the shapes. Each is refused by the library with a line naming
//! the problem, and by the CLI with exit code 2 and one line (never a
//! panic, never an abort).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Tensor;
use clip_depth_ros::weights::{read_tensor_file, write_safetensors};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `clip_depth ARGS`: (exit code, stderr).
fn clip_depth(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clip_depth")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_line_exit_2(what: &str, (code, err): (Option<i32>, String), needle: &str) {
    assert_eq!(code, Some(2), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    assert!(err.contains(needle) && !err.contains("internal error"), "{what}: {err}");
}

/// Pickle protocol 2 for `{"w": _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())}`
/// with a 4-float storage named "0".
fn tensor_pickle(size: [i32; 3], stride: [i32; 3]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    let unicode = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, v: i32| {
        p.push(b'J');
        p.extend(v.to_le_bytes());
    };
    unicode(&mut p, "w");
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    unicode(&mut p, "storage");
    p.extend(b"ctorch\nFloatStorage\n");
    unicode(&mut p, "0");
    unicode(&mut p, "cpu");
    int(&mut p, 4);
    p.extend(b"tQ");
    int(&mut p, 0);
    p.push(b'(');
    for v in size {
        int(&mut p, v);
    }
    p.extend(b"t(");
    for v in stride {
        int(&mut p, v);
    }
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

/// A `torch.save` archive holding that pickle and the 16-byte storage.
fn torch_archive(dir: &Path, pickle: &[u8]) -> PathBuf {
    let path = dir.join("hostile.pt");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/data/0", stored).unwrap();
    zip.write_all(&[0u8; 16]).unwrap();
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
    path
}

#[test]
fn a_sane_hand_made_archive_reads() {
    // The harness itself: a (2, 2) view of the storage, transposed.
    let tmp = tempfile::tempdir().unwrap();
    let path = torch_archive(tmp.path(), &tensor_pickle([1, 2, 2], [4, 1, 2]));
    let file = read_tensor_file(&path).unwrap();
    assert_eq!(file.tensors[0].1.dims(), &[1, 2, 2]);
}

/// Stride 0 lets a 16-byte storage claim 100000 x 100000 x 10 floats (400
/// GB): refused before anything is allocated.
#[test]
fn a_view_claiming_far_more_than_its_storage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = torch_archive(tmp.path(), &tensor_pickle([100_000, 100_000, 10], [0, 0, 0]));
    let err = read_tensor_file(&path).unwrap_err().to_string();
    assert!(err.contains("repeats its storage"), "{err}");
    assert_one_line_exit_2("inspect", clip_depth(&["inspect", path.to_str().unwrap()]), "repeats its storage");
    // A view reaching past its storage, and a shape whose size overflows.
    let past = torch_archive(tmp.path(), &tensor_pickle([1, 2, 3], [6, 3, 1]));
    assert!(read_tensor_file(&past).unwrap_err().to_string().contains("reaches past its storage"));
    let huge = torch_archive(tmp.path(), &tensor_pickle([i32::MAX, i32::MAX, i32::MAX], [1, 1, 1]));
    assert!(read_tensor_file(&huge).is_err());
}

/// Every tensor of `file`, with `name` reshaped to one dimension.
fn with_flattened(file: &Path, name: &str) -> Vec<(String, Tensor)> {
    let mut tensors = read_tensor_file(file).unwrap().tensors;
    let t = &mut tensors.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1;
    *t = t.flatten_all().unwrap();
    tensors
}

/// An OpenAI CLIP (architecture read off the shapes, as OpenAI's
/// `build_model` does) whose attention-pool position table has one
/// dimension instead of two.
#[test]
fn a_wrong_rank_in_an_openai_clip_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let rn = fixtures().join("depthclip/rn");
    let name = "visual.attnpool.positional_embedding";
    let bad = tmp.path().join("RN-bad.safetensors");
    write_safetensors(&bad, &with_flattened(&rn.join("RN-tiny.pt"), name), &Default::default()).unwrap();
    let config = rn.join("depthclip.yaml");
    let image = fixtures().join("images/scene_224.png");
    let out = tmp.path().join("depth.npy");
    let args = ["infer", "--config", config.to_str().unwrap(), "--checkpoint", bad.to_str().unwrap(), "--input", image.to_str().unwrap(), "--output", out.to_str().unwrap()];
    assert_one_line_exit_2("OpenAI CLIP", clip_depth(&args), name);
}

/// A LAVIS BLIP-2 (no config: the architecture is read off the shapes)
/// whose EVA patch embedding has one dimension instead of four.
#[test]
fn a_wrong_rank_in_a_lavis_blip2_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let lavis = fixtures().join("depthblip2/eva/lavis");
    // The tower's file names its tensors without LAVIS's visual_encoder. prefix.
    let name = "patch_embed.proj.weight";
    let bad = tmp.path().join("eva_vit_g.safetensors");
    write_safetensors(&bad, &with_flattened(&lavis.join("eva_vit_g.pth"), name), &Default::default()).unwrap();
    std::fs::copy(lavis.join("vocab.txt"), tmp.path().join("vocab.txt")).unwrap();
    let config = fixtures().join("depthblip2/eva/depthblip2.yaml");
    let image = fixtures().join("images/scene_640x480.png");
    let out = tmp.path().join("depth.npy");
    let checkpoint = lavis.join("blip2_pretrained.pth");
    let args = [
        "infer", "--config", config.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(), "--clip-weights", bad.to_str().unwrap(),
        "--input", image.to_str().unwrap(), "--output", out.to_str().unwrap(),
    ];
    assert_one_line_exit_2("LAVIS BLIP-2", clip_depth(&args), name);
}
