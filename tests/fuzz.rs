//! No file can crash the tools: every loader a user can point them at is
//! fed seeded mutations of the fixtures (bit flips, overwritten runs,
//! planted integers, cuts, copied and dropped chunks; for zip archives also
//! inside the entries, re-packed so that the zip layer accepts them and the
//! pickle, storages and TorchScript code are reached). Each must load or
//! be refused with a one-line error: no panic, no abort, no hang, and no
//! allocation beyond a memory limit.
//!
//! The cases run in a child process (this test binary again) under an
//! address-space limit, so that an allocation a hostile file asks for fails
//! there instead of taking the machine; the parent checks how the child
//! ended and names the case it was in.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clip_depth_ros::data::rosbag::{compressed_depth, depth, messages, Bag, BagMessage};
use clip_depth_ros::data::rosbag::warnings::Warnings;
use clip_depth_ros::{DepthEstimator, DeviceSpec, ModelDType, ModelFiles};

/// The child's cases, from this environment variable.
const CHILD: &str = "CLIP_DEPTH_FUZZ_CHILD";
/// Mutations per seed file and mode.
const MUTATIONS: usize = 120;
/// The child's address-space limit: far above what the tiny fixtures need,
/// far below what a hostile length field asks for.
const MEMORY_LIMIT: u64 = 6 << 30;
/// The whole run's limit (a hang shows as the case it stopped in).
const TIME_LIMIT: Duration = Duration::from_secs(240);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A small, seeded generator (xorshift64*): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `bytes`.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return vec![rng.next() as u8];
    }
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = out.len().max(1);
        match rng.below(7) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(len);
                    out[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = rng.below(len);
                let n = (1 + rng.below(32)).min(out.len() - at);
                for b in &mut out[at..at + n] {
                    *b = rng.next() as u8;
                }
            }
            2 => {
                // A length or count field set to an edge value.
                const VALUES: [u64; 8] = [0, 1, 0x7f, 0xff, 0x7fff_ffff, 0xffff_ffff, 1 << 40, u64::MAX];
                let v = VALUES[rng.below(VALUES.len())].to_le_bytes();
                let width = [1, 2, 4, 8][rng.below(4)];
                let at = rng.below(len);
                let n = width.min(out.len() - at);
                out[at..at + n].copy_from_slice(&v[..n]);
            }
            3 => out.truncate(rng.below(len)),
            4 => {
                let at = rng.below(len);
                let n = (1 + rng.below(256)).min(out.len() - at);
                let chunk = out[at..at + n].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, chunk);
            }
            5 => {
                let at = rng.below(len);
                let n = (1 + rng.below(256)).min(out.len() - at);
                out.drain(at..at + n);
            }
            _ => {
                let at = rng.below(len);
                out.insert(at, rng.next() as u8);
            }
        }
        if out.is_empty() {
            out.push(0);
        }
    }
    out
}

/// A zip archive with one entry (chosen by `pick`) mutated, re-packed
/// stored, so that the zip layer (its CRCs) lets the damage through.
fn mutate_inside_zip(bytes: &[u8], rng: &mut Rng, pick: usize) -> Option<Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).ok()?;
        let mut data = Vec::new();
        f.read_to_end(&mut data).ok()?;
        let name = f.name().ok()?.into_owned();
        entries.push((name, data));
    }
    // Mostly the pickle and the code, where structure is decided.
    let preferred: Vec<usize> =
        entries.iter().enumerate().filter(|(_, (n, _))| n.ends_with(".pkl") || n.ends_with(".py")).map(|(i, _)| i).collect();
    let target = if !preferred.is_empty() && pick % 4 != 0 { preferred[pick % preferred.len()] } else { pick % entries.len().max(1) };
    if let Some((_, data)) = entries.get_mut(target) {
        *data = mutate(data, rng);
    }
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        out.start_file(name, options).ok()?;
        out.write_all(&data).ok()?;
    }
    Some(out.finish().ok()?.into_inner())
}

/// What a case loads: the file written for it, at `path`.
#[derive(Clone, Copy, Debug)]
enum Loader {
    /// A whole model: config + the mutated weights (the tiny SPACE-CLIP,
    /// DepthCLIP and DepthBLIP-2 fixtures), as the CLI and node load them.
    Weights { family: &'static str },
    /// A mutated model config (YAML) with good weights.
    ModelYaml { family: &'static str },
    /// A mutated backbone / CLIP / BLIP-2 config.json with good weights.
    ConfigJson { family: &'static str },
    /// A rosbag2 bag folder whose storage file is mutated, read whole and
    /// every message decoded.
    Bag,
    /// A compressedDepth payload.
    CompressedDepth,
}

/// The model files of `family` with `path` in the mutated role.
fn model_files(family: &str, role: &str, path: &Path) -> ModelFiles {
    let f = fixtures();
    let mut files = match family {
        "space_clip" => ModelFiles {
            config: f.join("tiny_clip/config.yaml"),
            checkpoint: f.join("tiny_clip/checkpoint.pt"),
            clip_weights: None,
            clip_config: Some(f.join("tiny_clip/clip_config.json")),
        },
        "depthclip_rn" => ModelFiles {
            config: f.join("depthclip/rn/depthclip.yaml"),
            checkpoint: f.join("depthclip/rn/RN-tiny.pt"),
            clip_weights: None,
            clip_config: Some(f.join("depthclip/rn/open_clip_config.json")),
        },
        "depthclip_vit" => ModelFiles {
            config: f.join("depthclip/vit/depthclip.yaml"),
            checkpoint: f.join("depthclip/vit/hf/model.safetensors"),
            clip_weights: None,
            clip_config: Some(f.join("depthclip/vit/hf/config.json")),
        },
        "depthblip2" => ModelFiles {
            config: f.join("depthblip2/eva/depthblip2.yaml"),
            checkpoint: f.join("depthblip2/eva/lavis/blip2_pretrained.pth"),
            clip_weights: Some(f.join("depthblip2/eva/lavis/eva_vit_g.pth")),
            clip_config: None,
        },
        other => unreachable!("no family {other}"),
    };
    match role {
        "checkpoint" => files.checkpoint = path.to_owned(),
        "clip_weights" => files.clip_weights = Some(path.to_owned()),
        "config" => files.config = path.to_owned(),
        "clip_config" => files.clip_config = Some(path.to_owned()),
        other => unreachable!("no role {other}"),
    }
    files
}

/// The seed files of each loader, the role the mutated copy takes, and
/// whether it is a zip archive.
fn seeds() -> Vec<(Loader, &'static str, PathBuf, bool)> {
    let f = fixtures();
    let weights = |family| Loader::Weights { family };
    vec![
        (weights("space_clip"), "checkpoint", f.join("tiny_clip/checkpoint.pt"), true),
        (weights("space_clip"), "checkpoint", f.join("tiny_clip/checkpoint.safetensors"), false),
        (weights("depthclip_rn"), "checkpoint", f.join("depthclip/rn/RN-tiny.pt"), true),
        (weights("depthclip_rn"), "checkpoint", f.join("depthclip/rn/open_clip_pytorch_model.bin"), true),
        (weights("depthclip_vit"), "checkpoint", f.join("depthclip/vit/hf/model.safetensors"), false),
        (weights("depthblip2"), "checkpoint", f.join("depthblip2/eva/lavis/blip2_pretrained.pth"), true),
        (weights("depthblip2"), "clip_weights", f.join("depthblip2/eva/lavis/eva_vit_g.pth"), true),
        (Loader::ModelYaml { family: "space_clip" }, "config", f.join("tiny_clip/config.yaml"), false),
        (Loader::ModelYaml { family: "depthclip_vit" }, "config", f.join("depthclip/vit/depthclip.yaml"), false),
        (Loader::ModelYaml { family: "depthblip2" }, "config", f.join("depthblip2/eva/depthblip2.yaml"), false),
        (Loader::ConfigJson { family: "space_clip" }, "clip_config", f.join("tiny_clip/clip_config.json"), false),
        (Loader::ConfigJson { family: "depthclip_rn" }, "clip_config", f.join("depthclip/rn/open_clip_config.json"), false),
        (Loader::ConfigJson { family: "depthclip_vit" }, "clip_config", f.join("depthclip/vit/hf/config.json"), false),
        (Loader::Bag, "bag.mcap", f.join("bags/mcap_registered_raw/bag/bag.mcap"), false),
        (Loader::Bag, "bag.mcap", f.join("bags/mcap_unregistered_tf/bag/bag.mcap"), false),
        (Loader::Bag, "bag.db3", f.join("bags/sqlite_compressed_registered/bag/bag.db3"), false),
        (Loader::Bag, "bag.db3", f.join("bags/sqlite_message_zstd_32f/bag/bag.db3"), false),
        (Loader::CompressedDepth, "payload", PathBuf::new(), false),
    ]
}

/// A compressedDepth payload to mutate (PNG-coded 16UC1, as image_transport writes it).
fn compressed_depth_seed() -> (String, Vec<u8>) {
    let pixels: Vec<u16> = (0..32 * 24).map(|i| (i * 37 % 5000) as u16).collect();
    let image = depth::DepthImage { width: 32, height: 24, pixels: depth::DepthPixels::Millimetres(pixels) };
    compressed_depth::encode(&image).expect("encode the seed")
}

/// Runs one case; Err is the refusal's text.
fn run_case(loader: Loader, role: &str, path: &Path, payload: &[u8]) -> Result<(), String> {
    match loader {
        Loader::Weights { family } | Loader::ModelYaml { family } | Loader::ConfigJson { family } => {
            DepthEstimator::load(&model_files(family, role, path), DeviceSpec::Cpu, ModelDType::default()).map(|_| ()).map_err(|e| e.to_string())
        }
        Loader::Bag => read_bag(path.parent().expect("a bag folder")),
        Loader::CompressedDepth => compressed_depth::decode(role, payload).map(|_| ()).map_err(|e| e.to_string()),
    }
}

/// Reads a bag whole, decoding every message by its type.
fn read_bag(dir: &Path) -> Result<(), String> {
    let bag = Bag::open(dir).map_err(|e| e.to_string())?;
    let types: std::collections::HashMap<String, String> =
        bag.topics().iter().map(|t| (t.name.clone(), t.type_name.clone())).collect();
    let warnings = Warnings::new(|_| {});
    let mut visit = |m: BagMessage<'_>| {
        let kind = types.get(m.topic).map(String::as_str).unwrap_or_default();
        let _ = match kind {
            "sensor_msgs/msg/Image" => messages::Image::decode(m.data).and_then(|i| depth::from_image(&i).map(|_| ())),
            "sensor_msgs/msg/CompressedImage" => messages::CompressedImage::decode(m.data).and_then(|i| depth::from_compressed(&i).map(|_| ())),
            "sensor_msgs/msg/CameraInfo" => messages::CameraInfo::decode(m.data).map(|_| ()),
            "tf2_msgs/msg/TFMessage" => messages::TfMessage::decode(m.data).map(|_| ()),
            _ => messages::read_header(m.data).map(|_| ()),
        };
        std::ops::ControlFlow::Continue(())
    };
    bag.read(&|_| true, &mut visit, &warnings).map(|_| ()).map_err(|e| e.to_string())
}

/// The child: every case, one line each (`case ...` before, the outcome
/// after); a panic is reported and counted, and the child goes on.
fn child() {
    let tmp = tempfile::tempdir().unwrap();
    let (format, seed_payload) = compressed_depth_seed();
    assert!(compressed_depth::decode(&format, &seed_payload).is_ok());
    let mut panics = 0;
    let mut refused = 0;
    let mut cases = 0;
    for (index, (loader, role, seed, zipped)) in seeds().into_iter().enumerate() {
        let original = if matches!(loader, Loader::CompressedDepth) { seed_payload.clone() } else { std::fs::read(&seed).unwrap() };
        // The unmutated seed loads (the harness itself is sound).
        let modes = if zipped { 2 } else { 1 };
        for mode in 0..modes {
            for i in 0..MUTATIONS {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((index as u64) << 32 | (mode as u64) << 16 | i as u64).wrapping_add(1));
                let bytes = if mode == 1 { mutate_inside_zip(&original, &mut rng, i).unwrap_or_default() } else { mutate(&original, &mut rng) };
                // A folder per case: a bag keeps its metadata.yaml beside the storage file.
                let dir = tmp.path().join(format!("case-{index}-{mode}-{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                if matches!(loader, Loader::Bag) {
                    std::fs::copy(seed.with_file_name("metadata.yaml"), dir.join("metadata.yaml")).unwrap();
                }
                let name = if matches!(loader, Loader::Bag) { role.to_string() } else { seed.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "payload".into()) };
                let path = dir.join(name);
                std::fs::write(&path, &bytes).unwrap();
                let label = format!("{loader:?} {} mode {mode} #{i}", seed.display());
                // A compressedDepth payload's role is its format string.
                let role = if matches!(loader, Loader::CompressedDepth) { format.as_str() } else { role };
                println!("case {label}");
                std::io::stdout().flush().unwrap();
                cases += 1;
                match std::panic::catch_unwind(|| run_case(loader, role, &path, &bytes)) {
                    Ok(Ok(())) => println!("ok"),
                    Ok(Err(msg)) => {
                        refused += 1;
                        if msg.contains('\n') || msg.trim().is_empty() {
                            println!("MULTILINE {label}: {msg:?}");
                        } else {
                            println!("refused: {msg}");
                        }
                    }
                    Err(p) => {
                        panics += 1;
                        println!("PANIC {label}: {}", clip_depth_ros::error::panic_message(&*p).replace('\n', " "));
                    }
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    println!("done: {cases} cases, {refused} refused, {panics} panics");
}

#[test]
fn fuzz_child() {
    // Only as the parent's child process.
    if std::env::var_os(CHILD).is_some() {
        std::panic::set_hook(Box::new(|_| {})); // counted by the child, not printed
        child();
    }
}

#[test]
fn no_file_crashes_a_loader() {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "fuzz_child", "--nocapture", "--test-threads", "1"]).env(CHILD, "1");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: MEMORY_LIMIT, rlim_max: MEMORY_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    let last_case = out.lines().filter(|l| l.starts_with("case ")).last().unwrap_or("before the first case").to_string();
    let summary = out.lines().find(|l| l.starts_with("done: ")).unwrap_or("").to_string();
    eprintln!("{summary} ({:.0} s)", started.elapsed().as_secs_f64());
    let Some(status) = status else {
        panic!("the cases did not finish within {TIME_LIMIT:?}: hung in {last_case}");
    };
    assert!(status.success(), "the child ended with {status} in {last_case}:\n{}", stderr.lines().rev().take(5).collect::<Vec<_>>().join("\n"));
    let bad: Vec<&str> = out.lines().filter(|l| l.starts_with("PANIC") || l.starts_with("MULTILINE")).collect();
    assert!(bad.is_empty(), "{} case(s) went wrong:\n{}", bad.len(), bad.join("\n"));
    assert!(summary.starts_with("done: ") && !summary.contains(" 0 refused"), "{summary}");
}
