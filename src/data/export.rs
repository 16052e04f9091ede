//! Datasets written in the authors' file-list layout, ready for `clip_depth
//! train`: `rgb/NAME.png` (8-bit RGB), `depth/NAME.png` (16-bit, mm),
//! `train.txt` / `eval.txt` (`/rgb/NAME.png /depth/NAME.png focal`), a
//! `config.yaml` with the dataset's paths, size and depth range, and a
//! `summary.json` of how it was made. Shared by `dataset from-bag` and
//! `dataset synth`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config_text::config_text;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn werr(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Write { path: path.to_owned(), message: e.to_string() }
}

/// The output folder of a dataset.
#[derive(Debug, Clone)]
pub struct DatasetWriter {
    root: PathBuf,
}

/// One line of a file list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListLine {
    pub name: String,
    pub focal: f64,
}

impl DatasetWriter {
    /// Creates `root` (and `rgb/`, `depth/`); an existing folder must be
    /// empty, so that no earlier dataset's files mix with the new ones.
    pub fn create(root: &Path) -> Result<Self, ExportError> {
        if root.exists() {
            let mut entries = std::fs::read_dir(root).map_err(|e| werr(root, e))?;
            if entries.next().is_some() {
                return Err(ExportError::Invalid(format!("{} exists and is not empty: choose a new --out (or remove it)", root.display())));
            }
        }
        for sub in ["rgb", "depth"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|e| werr(&root.join(sub), e))?;
        }
        // Absolute, so the config works from any working directory.
        let root = std::fs::canonicalize(root).map_err(|e| werr(root, e))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn rgb_path(&self, name: &str) -> PathBuf {
        self.root.join("rgb").join(format!("{name}.png"))
    }

    pub fn depth_path(&self, name: &str) -> PathBuf {
        self.root.join("depth").join(format!("{name}.png"))
    }

    /// Writes one sample: packed RGB8 and depth in millimetres (0 = none).
    pub fn write_sample(&self, name: &str, rgb: &[u8], depth_mm: &[u16], width: usize, height: usize) -> Result<(), ExportError> {
        let p = self.rgb_path(name);
        image::save_buffer(&p, rgb, width as u32, height as u32, image::ExtendedColorType::Rgb8).map_err(|e| werr(&p, e))?;
        let p = self.depth_path(name);
        let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(width as u32, height as u32, depth_mm.to_vec())
            .ok_or_else(|| werr(&p, "depth size does not match the image"))?;
        img.save(&p).map_err(|e| werr(&p, e))
    }

    /// Removes a sample's files (one left out of both lists).
    pub fn remove_sample(&self, name: &str) {
        let _ = std::fs::remove_file(self.rgb_path(name));
        let _ = std::fs::remove_file(self.depth_path(name));
    }

    pub fn write_list(&self, file: &str, lines: &[ListLine]) -> Result<PathBuf, ExportError> {
        let mut text = String::new();
        for l in lines {
            let _ = writeln!(text, "/rgb/{0}.png /depth/{0}.png {1}", l.name, l.focal);
        }
        let p = self.root.join(file);
        std::fs::write(&p, text).map_err(|e| werr(&p, e))?;
        Ok(p)
    }

    pub fn write_json(&self, file: &str, value: &serde_json::Value) -> Result<(), ExportError> {
        let p = self.root.join(file);
        std::fs::write(&p, serde_json::to_string_pretty(value).unwrap_or_default() + "\n").map_err(|e| werr(&p, e))
    }
}

/// Indices into time-sorted samples: the last `eval_fraction` held out,
/// and the training samples within `gap` of the held-out block's start
/// left out of both, so that neighbouring frames of one recording do not
/// appear on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub eval: Vec<usize>,
    pub dropped: Vec<usize>,
}

/// Splits samples by their time stamps (ns; any order).
pub fn split_by_time(stamps: &[i64], eval_fraction: f64, gap_ns: i64) -> Split {
    let mut order: Vec<usize> = (0..stamps.len()).collect();
    order.sort_by_key(|&i| (stamps[i], i));
    let n = order.len();
    let mut n_eval = (n as f64 * eval_fraction.clamp(0.0, 1.0)).round() as usize;
    if eval_fraction > 0.0 && n >= 2 {
        n_eval = n_eval.clamp(1, n - 1);
    }
    let (train_part, eval) = order.split_at(n - n_eval);
    let start = eval.first().map(|&i| stamps[i]);
    let (mut train, mut dropped) = (Vec::new(), Vec::new());
    for &i in train_part {
        match start {
            Some(s) if s.saturating_sub(stamps[i]) < gap_ns => dropped.push(i),
            _ => train.push(i),
        }
    }
    Split { train, eval: eval.to_vec(), dropped }
}

/// A histogram of depth readings in millimetres, for a dataset's range.
#[derive(Debug, Clone)]
pub struct DepthHistogram {
    counts: Vec<u64>,
    pixels: u64,
}

impl Default for DepthHistogram {
    fn default() -> Self {
        Self { counts: vec![0; 65536], pixels: 0 }
    }
}

impl DepthHistogram {
    pub fn add(&mut self, depth_mm: &[u16]) {
        self.pixels += depth_mm.len() as u64;
        for &d in depth_mm {
            self.counts[d as usize] += 1;
        }
    }

    pub fn merge(&mut self, other: &DepthHistogram) {
        self.pixels += other.pixels;
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
    }

    /// Readings (non-zero pixels).
    pub fn valid(&self) -> u64 {
        self.counts[1..].iter().sum()
    }

    /// Fraction of pixels with a reading.
    pub fn coverage(&self) -> f64 {
        if self.pixels == 0 {
            0.0
        } else {
            self.valid() as f64 / self.pixels as f64
        }
    }

    /// The `q` quantile (0..=1) of the readings, in metres.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let valid = self.valid();
        if valid == 0 {
            return None;
        }
        let rank = ((valid - 1) as f64 * q.clamp(0.0, 1.0)).round() as u64;
        let mut seen = 0;
        for (mm, &c) in self.counts.iter().enumerate().skip(1) {
            seen += c;
            if seen > rank {
                return Some(mm as f64 / 1000.0);
            }
        }
        None
    }
}

/// A `max_depth` for the model: the 99.9th percentile of the readings with
/// 10 % headroom, rounded up to a whole metre (half a metre under 3 m).
pub fn choose_max_depth(hist: &DepthHistogram) -> f64 {
    let top = hist.quantile(0.999).unwrap_or(10.0) * 1.1;
    let step = if top < 3.0 { 0.5 } else { 1.0 };
    ((top / step).ceil() * step).max(1.0)
}

/// The crop the trainer takes from each image: about 85 % of each side
/// (NYU's 544x416 of 640x480) in multiples of 16.
pub fn choose_input_size(width: usize, height: usize) -> (usize, usize) {
    let pick = |d: usize| ((d as f64 * 0.85 / 16.0).floor() as usize * 16).clamp(16.min(d), d);
    (pick(width), pick(height))
}

/// What the training config says about the data.
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    pub name: String,
    pub root: PathBuf,
    pub input_width: usize,
    pub input_height: usize,
    pub max_depth: f64,
    /// The colour camera (fx, fy, cx, cy, width, height), for reference.
    pub camera: Option<[f64; 6]>,
    /// A YAML file whose model keys replace the ViT-B/16 defaults.
    pub model_from: Option<PathBuf>,
    /// `key=value` overrides applied last (as `train --set`).
    pub overrides: Vec<String>,
    /// Lines for the header comment.
    pub notes: Vec<String>,
}

/// The model keys copied by `--model-config`.
const MODEL_KEYS: &[&str] = &[
    "clip_model_name",
    "vision_backbone_type",
    "vision_image_mean",
    "vision_image_std",
    "clip_input_size",
    "main_path_indices",
    "structural_path_indices",
    "film_param_hidden_dim",
    "decoder_channels",
    "decoder_dropout",
    "use_film",
    "use_structural_pathway",
    "use_multiscale_supervision",
    "aux_loss_weights",
];

const DEFAULT_MODEL: &str = "\
# Model: SPACE-CLIP on OpenAI CLIP ViT-B/16 (the authors' settings).
clip_model_name: \"openai/clip-vit-base-patch16\"
freeze_clip_vision: true
clip_interpolate_pos_encoding: false
clip_input_size: 224
main_path_indices: [12, 9, 6, 3]
structural_path_indices: [2, 1, 0]
film_param_hidden_dim: 256
decoder_channels: [256, 128, 64, 32]
decoder_dropout: 0.1
use_film: true
use_structural_pathway: true
use_multiscale_supervision: true
aux_loss_weights: [0.10, 0.05, 0.00]
";

fn model_section(from: &Path) -> Result<String, ExportError> {
    let text = std::fs::read_to_string(from).map_err(|e| ExportError::Invalid(format!("cannot read {}: {e}", from.display())))?;
    let value: serde_norway::Value =
        serde_norway::from_str(&text).map_err(|e| ExportError::Invalid(format!("{} is not valid YAML: {e}", from.display())))?;
    let source = match value.get("model") {
        Some(inner) if inner.is_mapping() && inner.get("decoder_channels").is_some() => inner.clone(),
        _ => value,
    };
    let mut picked = serde_norway::Mapping::new();
    for key in MODEL_KEYS {
        if let Some(v) = source.get(*key) {
            picked.insert(serde_norway::Value::String(key.to_string()), v.clone());
        }
    }
    if picked.is_empty() {
        return Err(ExportError::Invalid(format!("{} has none of the model keys ({})", from.display(), MODEL_KEYS.join(", "))));
    }
    let mut out = format!("# Model keys from {}.\nfreeze_clip_vision: true\nclip_interpolate_pos_encoding: false\n", from.display());
    out += &serde_norway::to_string(&serde_norway::Value::Mapping(picked)).map_err(|e| ExportError::Invalid(e.to_string()))?;
    Ok(out)
}

/// Writes `config.yaml`: the data section, the authors' training recipe
/// (AdamW 1e-4, cosine with 5 % warm-up, EMA, their losses and
/// augmentation), and the model keys.
pub fn write_config(spec: &ConfigSpec) -> Result<PathBuf, ExportError> {
    let root = spec.root.display().to_string();
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = String::new();
    for n in &spec.notes {
        let _ = writeln!(y, "# {n}");
    }
    let _ = writeln!(y, "# Train: clip_depth train --config {} --output-dir runs/NAME", spec.root.join("config.yaml").display());
    let _ = writeln!(y, "# (keys can be changed with --set key=value, e.g. --set batch_size=16)");
    let _ = writeln!(y, "name: {}", q(&spec.name));
    y += "epochs: 20\nlearning_rate: 0.0001\nweight_decay: 0.01\nbatch_size: 8\nworkers: 4\nrandom_seed: 42\n";
    y += "scheduler: \"cosine_warmup\"\nmin_lr: 0.000001\nwarmup_ratio: 0.05\nvalidate_epochs: 1\nnum_log_images: 4\nlog_scalar_every_iters: 10\n\n";
    y += "# Data: 16-bit depth PNGs in millimetres.\ndataset: \"robot\"\ndepth_scale: 1000\n";
    for (key, file) in [("data_path", ""), ("gt_path", ""), ("filenames_file", "train.txt")] {
        let _ = writeln!(y, "{key}: {}", q(&if file.is_empty() { root.clone() } else { spec.root.join(file).display().to_string() }));
    }
    for (key, file) in [("data_path_eval", ""), ("gt_path_eval", ""), ("filenames_file_eval", "eval.txt")] {
        let _ = writeln!(y, "{key}: {}", q(&if file.is_empty() { root.clone() } else { spec.root.join(file).display().to_string() }));
    }
    let _ = writeln!(y, "input_height: {}\ninput_width: {}", spec.input_height, spec.input_width);
    y += "do_random_rotate: true\ndegree: 1.0\ndo_nyu_crop: false\ndo_nyu_crop_eval: false\ndo_kb_crop: false\n";
    let _ = writeln!(y, "min_depth: 0.001\nmax_depth: {}\nmin_depth_eval: 0.001\nmax_depth_eval: {}", spec.max_depth, spec.max_depth);
    y += "eval_crop: \"none\"\nmedian_scaling_eval: false\neval_flip_tta: false\n";
    if let Some([fx, fy, cx, cy, w, h]) = spec.camera {
        let _ = writeln!(y, "# The colour camera (informational; the model takes 224x224 squares).");
        let _ = writeln!(y, "camera: {{fx: {fx}, fy: {fy}, cx: {cx}, cy: {cy}, width: {w}, height: {h}}}");
    }
    y += "\n# Training recipe (the authors').\nuse_ema: true\nema_decay: 0.996\neval_both_for_best: true\n";
    y += "w_ssim: 0.5\nw_grad: 0.0\n\n";
    y += &match &spec.model_from {
        Some(p) => model_section(p)?,
        None => DEFAULT_MODEL.to_string(),
    };
    let path = spec.root.join("config.yaml");
    std::fs::write(&path, &y).map_err(|e| werr(&path, e))?;
    if !spec.overrides.is_empty() {
        let text = config_text(&path, &spec.overrides).map_err(|e| ExportError::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| werr(&path, e))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_holds_out_the_end_with_a_gap() {
        // 10 frames at 100 ms, shuffled; 20 % held out; 150 ms gap.
        let stamps: Vec<i64> = [3, 0, 9, 1, 8, 2, 7, 4, 6, 5].iter().map(|i| i * 100_000_000).collect();
        let s = split_by_time(&stamps, 0.2, 150_000_000);
        let t = |v: &[usize]| v.iter().map(|&i| stamps[i] / 100_000_000).collect::<Vec<_>>();
        assert_eq!(t(&s.eval), vec![8, 9]);
        assert_eq!(t(&s.dropped), vec![7]);
        assert_eq!(t(&s.train), vec![0, 1, 2, 3, 4, 5, 6]);
        let s = split_by_time(&stamps[..1], 0.2, 0);
        assert_eq!((s.train.len(), s.eval.len()), (1, 0));
    }

    #[test]
    fn range_and_sizes() {
        let mut h = DepthHistogram::default();
        h.add(&[0, 1000, 2000, 3000, 0]);
        assert_eq!(h.coverage(), 0.6);
        assert_eq!(h.quantile(0.5), Some(2.0));
        assert_eq!(choose_max_depth(&h), 4.0);
        assert_eq!(choose_input_size(640, 480), (544, 400));
        assert_eq!(choose_input_size(64, 48), (48, 32));
        assert_eq!(choose_input_size(8, 8), (8, 8));
    }
}
