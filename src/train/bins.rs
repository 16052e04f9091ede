//! DepthBLIP-2's few-shot adaptation: only the adaptive-bins MLP trains.
//! The image tower and Q-Former are frozen and the bins enter the depth
//! linearly, so each image's class probabilities on the map (and its
//! mirror image's) are computed once and cached; an epoch is then a few
//! small matrix products. The loss is the release's: alpha * mean |gt -
//! pred| + (1 - alpha) * RMSE over the valid pixels (gt in (lo, hi)), both
//! clamped to (lo, hi), with pred the flip-averaged map upsampled
//! (bilinear, align_corners = true) to the ground truth's size.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, Var};

use crate::model::depthblip2::{bins_range, BinsMlp, BINS_HIDDEN, LAYOUT_FLAG2};
use crate::model::nn::{ForwardMode, Dropout, InitSource, Linear, ParamBuilder, ParamStore, Role};
use crate::train::optim::{AdamW, AdamWConfig};

/// The MLP in training form, its parameters named as the release's
/// `nn.Sequential` (`0.weight`, `2.weight`, ..., `12.bias`).
pub struct TrainableBins {
    store: ParamStore,
    layers: Vec<Linear>,
    dropout: Dropout,
    /// The bin vector b the MLP reads, (1, K), and its range.
    input: Tensor,
    range: (f64, f64),
}

impl TrainableBins {
    /// Random initialisation (PyTorch's Linear default) from `seed`, or
    /// the tensors of `init` under the release's names.
    pub fn new(bins: &[f64], dropout: f64, init: Option<HashMap<String, Tensor>>, seed: u64, device: &Device) -> Result<Self> {
        let k = bins.len();
        let store = ParamStore::default();
        let source = match init {
            Some(t) => InitSource::tensors(t),
            None => InitSource::random(seed),
        };
        let pb = ParamBuilder::new(&store, &source, device);
        let widths: Vec<usize> = std::iter::once(k).chain(BINS_HIDDEN).chain(std::iter::once(k)).collect();
        let layers = LAYOUT_FLAG2
            .iter()
            .enumerate()
            .map(|(l, i)| Linear::new(&pb.pp(i), widths[l], widths[l + 1]))
            .collect::<Result<Vec<_>>>()?;
        let unused = source.unused();
        if !unused.is_empty() {
            candle_core::bail!("unexpected tensors in the initial bins MLP: {unused:?}");
        }
        let input = Tensor::from_vec(bins.iter().map(|&b| b as f32).collect::<Vec<_>>(), (1, k), device)?;
        Ok(Self { store, layers, dropout: Dropout::new(dropout), input, range: bins_range(bins) })
    }

    /// The release's `.pth` or a `.safetensors` (either layout) as the start.
    pub fn from_file(path: &Path, bins: &[f64], dropout: f64, device: &Device) -> crate::error::Result<Self> {
        let mlp = BinsMlp::from_file(path, bins.len())?;
        Ok(Self::new(bins, dropout, Some(mlp.flag2_tensors()), 0, device)?)
    }

    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    pub fn params(&self) -> Vec<(String, Var)> {
        self.store.with_role(Role::Trainable).into_iter().map(|e| (e.name, e.var)).collect()
    }

    /// The adapted bins (K), differentiable: min + mlp(b)^2 * (max - min).
    /// Dropout (after the third and fourth ReLU) in training mode.
    pub fn bins(&self, ctx: &ForwardMode) -> Result<Tensor> {
        let mut x = self.input.clone();
        let n = self.layers.len();
        for (l, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if l + 1 == n {
                x = candle_nn::ops::sigmoid(&x)?;
            } else {
                x = x.relu()?;
                if l == 2 || l == 3 {
                    x = self.dropout.forward(&x, ctx)?;
                }
            }
        }
        let (lo, hi) = self.range;
        ((x.sqr()? * (hi - lo))? + lo)?.flatten_all()
    }

    /// The tensors under the release's names, for saving.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.store.state_dict()
    }
}

/// One image's cached class probabilities and its ground truth.
#[derive(Debug, Clone)]
pub struct BinsSample {
    /// (K, h, w) probabilities of the image.
    pub probs: Tensor,
    /// (K, h, w) of its mirror image (flip averaging), when used.
    pub mirror: Option<Tensor>,
    /// (H, W) depth in metres; values outside (lo, hi) are not read.
    pub gt: Vec<f32>,
    pub gt_size: (usize, usize),
}

/// (out, in) weights of align_corners = true linear interpolation.
fn interp_matrix(out_len: usize, in_len: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; out_len * in_len];
    for o in 0..out_len {
        let s = if out_len > 1 { o as f64 * (in_len - 1) as f64 / (out_len - 1) as f64 } else { 0.0 };
        let i0 = (s.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        let t = (s - i0 as f64) as f32;
        m[o * in_len + i0] += 1.0 - t;
        m[o * in_len + i1] += t;
    }
    Tensor::from_vec(m, (out_len, in_len), device)
}

/// The release's loss over a batch, and the depth maps it saw.
pub struct BinsLoss {
    pub loss: Tensor,
    pub valid_pixels: usize,
}

/// alpha * L1 + (1 - alpha) * RMSE over the valid pixels of every sample,
/// depth = sum_k p_k * bins_k (flip averaged with the mirror's, the mirror
/// map flipped back), upsampled to each ground truth's size.
pub fn bins_loss(bins: &Tensor, batch: &[BinsSample], alpha: f64, (lo, hi): (f64, f64)) -> Result<BinsLoss> {
    let device = bins.device();
    let k = bins.dim(0)?;
    let bins_col = bins.reshape((k, 1, 1))?;
    let mut abs_sum: Option<Tensor> = None;
    let mut sq_sum: Option<Tensor> = None;
    let mut count = 0usize;
    for s in batch {
        let (_, h, w) = s.probs.dims3()?;
        let mut map = s.probs.broadcast_mul(&bins_col)?.sum(0)?; // (h, w)
        if let Some(m) = &s.mirror {
            let index = Tensor::from_vec((0..w as u32).rev().collect::<Vec<_>>(), w, device)?;
            let mirrored = m.broadcast_mul(&bins_col)?.sum(0)?.index_select(&index, 1)?;
            map = ((map + mirrored)? * 0.5)?;
        }
        let (gw, gh) = s.gt_size;
        let up = interp_matrix(gh, h, device)?.matmul(&map)?.matmul(&interp_matrix(gw, w, device)?.t()?)?; // (H, W)
        let mask: Vec<f32> = s.gt.iter().map(|&g| if (g as f64) > lo && (g as f64) < hi { 1.0 } else { 0.0 }).collect();
        let n = mask.iter().filter(|&&m| m > 0.0).count();
        if n == 0 {
            continue;
        }
        count += n;
        let gt: Vec<f32> = s.gt.iter().map(|&g| (g as f64).clamp(lo, hi) as f32).collect();
        let gt = Tensor::from_vec(gt, (gh, gw), device)?;
        let mask = Tensor::from_vec(mask, (gh, gw), device)?;
        let diff = ((gt - up.clamp(lo, hi)?)? * mask)?;
        let a = diff.abs()?.sum_all()?;
        let q = diff.sqr()?.sum_all()?;
        abs_sum = Some(match abs_sum {
            Some(t) => (t + a)?,
            None => a,
        });
        sq_sum = Some(match sq_sum {
            Some(t) => (t + q)?,
            None => q,
        });
    }
    let (Some(a), Some(q)) = (abs_sum, sq_sum) else {
        candle_core::bail!("no valid ground-truth pixel in the batch (depths must lie in ({lo}, {hi}))");
    };
    let l1 = (a / count as f64)?;
    let rmse = (q / count as f64)?.sqrt()?;
    Ok(BinsLoss { loss: ((l1 * alpha)? + (rmse * (1.0 - alpha))?)?, valid_pixels: count })
}

/// AdamW as the release configures it (torch's defaults, lr from the YAML).
pub fn optimiser(mlp: &TrainableBins, weight_decay: f64) -> Result<AdamW> {
    AdamW::new(mlp.params(), AdamWConfig { weight_decay, ..AdamWConfig::default() })
}

/// One optimiser step on a batch; returns the loss before the step.
pub fn train_step(mlp: &TrainableBins, opt: &mut AdamW, batch: &[BinsSample], lr: f64, alpha: f64, range: (f64, f64), ctx: &ForwardMode) -> Result<f64> {
    let bins = mlp.bins(ctx)?;
    let out = bins_loss(&bins, batch, alpha, range)?;
    let grads = out.loss.backward()?;
    opt.step(&grads, lr)?;
    out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// The training keys of a DepthBLIP-2 YAML (`clip_depth train`); the
/// data keys are the authors' (`data_path`, `gt_path`, `filenames_file`,
/// and `*_eval` for the validation images). Paths are as given (relative
/// to the working directory, as the authors' scripts read them).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BinsTrainConfig {
    #[serde(default = "nyu")]
    pub dataset: String,
    pub data_path: std::path::PathBuf,
    #[serde(default)]
    pub gt_path: Option<std::path::PathBuf>,
    pub filenames_file: std::path::PathBuf,
    #[serde(default)]
    pub data_path_eval: Option<std::path::PathBuf>,
    #[serde(default)]
    pub gt_path_eval: Option<std::path::PathBuf>,
    /// Validation images (the paper: 8); without it the last epoch's bins are kept.
    #[serde(default)]
    pub filenames_file_eval: Option<std::path::PathBuf>,
    /// Stored depth value -> metres (default: 1000 for nyu, 256 for kitti, else 1).
    #[serde(default)]
    pub depth_divisor: Option<f64>,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_lr")]
    pub learning_rate: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// The loss: alpha * L1 + (1 - alpha) * RMSE.
    #[serde(default = "d_alpha")]
    pub loss_alpha: f64,
    #[serde(default = "d_dropout")]
    pub bins_dropout: f64,
    /// Ground truth outside (loss_min_depth, loss_max_depth) is not read.
    #[serde(default = "d_lo")]
    pub loss_min_depth: f64,
    #[serde(default = "d_hi")]
    pub loss_max_depth: f64,
    #[serde(default)]
    pub random_seed: Option<u64>,
}

fn nyu() -> String {
    "nyu".into()
}
fn d_epochs() -> usize {
    50
}
fn d_batch() -> usize {
    16
}
fn d_lr() -> f64 {
    1e-3
}
fn d_wd() -> f64 {
    0.01
}
fn d_alpha() -> f64 {
    0.5
}
fn d_dropout() -> f64 {
    0.5
}
fn d_lo() -> f64 {
    1e-3
}
fn d_hi() -> f64 {
    10.0
}

impl BinsTrainConfig {
    pub fn from_yaml_str(text: &str) -> std::result::Result<Self, String> {
        let cfg: Self = serde_norway::from_str(text).map_err(|e| format!("{} (DepthBLIP-2 bin training needs data_path and filenames_file)", e.to_string().replace('\n', " ")))?;
        if cfg.epochs == 0 || cfg.batch_size == 0 {
            return Err("epochs and batch_size must be > 0".into());
        }
        for (key, v) in [("learning_rate", cfg.learning_rate), ("loss_max_depth", cfg.loss_max_depth)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{key} must be > 0, got {v}"));
            }
        }
        if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
            return Err(format!("weight_decay must be >= 0, got {}", cfg.weight_decay));
        }
        if !(0.0..=1.0).contains(&cfg.loss_alpha) {
            return Err(format!("loss_alpha must be in [0, 1], got {}", cfg.loss_alpha));
        }
        if !(0.0..1.0).contains(&cfg.bins_dropout) {
            return Err(format!("bins_dropout must be in [0, 1), got {}", cfg.bins_dropout));
        }
        if !(cfg.loss_min_depth >= 0.0 && cfg.loss_min_depth < cfg.loss_max_depth) {
            return Err("need 0 <= loss_min_depth < loss_max_depth".into());
        }
        Ok(cfg)
    }

    pub fn divisor(&self) -> f64 {
        crate::data::depth::stored_depth_divisor(&self.dataset, self.depth_divisor)
    }
}

/// What a run gives back.
#[derive(Debug, Clone)]
pub struct BinsOutcome {
    pub bins_before: Vec<f64>,
    pub bins_after: Vec<f64>,
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Validation loss per epoch (empty without validation images).
    pub val_loss: Vec<f64>,
    pub best_epoch: usize,
}

/// Class probabilities of each image (and of its mirror image when the
/// model flip-averages), computed once, with the ground truth inside the
/// model's crop.
pub fn cache_samples(
    model: &crate::model::DepthBlip2,
    device: &Device,
    dtype: DType,
    spec: &crate::data::sample::DataSpec,
    list: &Path,
) -> crate::error::Result<Vec<BinsSample>> {
    use crate::error::Error;
    let entries = crate::data::file_list::read_list(list)?;
    if entries.is_empty() {
        return Err(Error::Config { path: list.to_owned(), message: "lists no images".into() });
    }
    let geometry = model.geometry();
    let (w, h) = geometry.input_dims();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let s = spec
            .load_eval(entry, i)
            .map_err(|m| Error::Config { path: list.to_owned(), message: format!("line {}: {m}", entry.line_no) })?;
        let Some(depth) = s.depth else {
            return Err(Error::Config { path: list.to_owned(), message: format!("line {}: no ground-truth depth", entry.line_no) });
        };
        let view = crate::ImageView::packed(&s.rgb, s.width, s.height, crate::PixelFormat::Rgb8)?;
        let mut planes = Vec::with_capacity(3 * w * h);
        geometry.pixels_into(&view, &mut planes)?;
        let pixels = Tensor::from_vec(planes, (1, 3, h, w), &Device::Cpu)?.to_device(device)?.to_dtype(dtype)?;
        let probs = model.probabilities(&model.image_embeds(&pixels)?)?.to_device(&Device::Cpu)?.squeeze(0)?;
        let mirror = if model.config().flip_average {
            let flipped = crate::kernels::mirror::flip_width(&pixels)?;
            Some(model.probabilities(&model.image_embeds(&flipped)?)?.to_device(&Device::Cpu)?.squeeze(0)?)
        } else {
            None
        };
        let r = geometry.region((s.width, s.height), (s.width, s.height));
        let mut gt = Vec::with_capacity(r.width * r.height);
        for y in r.top..r.top + r.height {
            gt.extend_from_slice(&depth[y * s.width + r.left..y * s.width + r.left + r.width]);
        }
        out.push(BinsSample { probs, mirror, gt, gt_size: (r.width, r.height) });
    }
    Ok(out)
}

/// A bin training run (`clip_depth train` with a DepthBLIP-2 config).
#[derive(Debug, Clone)]
pub struct BinsRun {
    /// The model YAML with the training keys (the authors' data keys).
    pub config: std::path::PathBuf,
    /// `--set KEY=VALUE` overrides, for training and model keys alike.
    pub overrides: Vec<String>,
    pub output_dir: std::path::PathBuf,
    /// The BLIP-2 weights, and a LAVIS tower's file or an HF config.json.
    pub checkpoint: std::path::PathBuf,
    pub clip_weights: Option<std::path::PathBuf>,
    pub clip_config: Option<std::path::PathBuf>,
    pub device: crate::DeviceSpec,
    /// Replaces the YAML's epochs.
    pub epochs: Option<usize>,
    /// Replaces the YAML's random_seed.
    pub seed: Option<u64>,
}

/// What a bin training run wrote.
#[derive(Debug, Clone)]
pub struct BinsRunReport {
    /// `bins_mlp.safetensors`.
    pub weights: std::path::PathBuf,
    /// `config.yaml`: the model config (with the overrides) using the MLP.
    pub config: std::path::PathBuf,
    pub outcome: BinsOutcome,
}

/// DepthBLIP-2's bins from a few images: the frozen BLIP-2's class
/// probabilities computed once per image, then the MLP trained for the
/// YAML's epochs; the best (lowest validation loss) MLP written to
/// `bins_mlp.safetensors` with `bins.json`, and `config.yaml` (the model
/// YAML with the overrides and `adaptive_bins` pointing at the MLP) beside
/// them. `log` gets one line per step worth saying.
pub fn run(run: &BinsRun, log: &dyn Fn(&str)) -> crate::error::Result<BinsRunReport> {
    use crate::error::Error;
    use crate::model::{DepthBlip2, DepthBlip2Config, ModelFamily, ModelFiles};
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path: path.clone(), source }
    };
    let config_error = |message: String| Error::Config { path: run.config.clone(), message };
    let text = crate::config_text::config_text(&run.config, &run.overrides)?;
    let mut cfg = BinsTrainConfig::from_yaml_str(&text).map_err(config_error)?;
    if let Some(epochs) = run.epochs {
        cfg.epochs = epochs;
    }
    // The model config with the overrides applied, beside the outputs: the
    // model runs on it, and the final config.yaml is it with the trained
    // bins. Paths in it that were relative to the given config are made
    // absolute.
    std::fs::create_dir_all(&run.output_dir).map_err(io(&run.output_dir))?;
    let mut model_yaml: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| config_error(e.to_string().replace('\n', " ")))?;
    let base = run.config.parent().map(|d| d.to_path_buf()).unwrap_or_default();
    for key in ["tokenizer", "adaptive_bins"] {
        if let Some(serde_norway::Value::String(p)) = model_yaml.get_mut(key) {
            if Path::new(p.as_str()).is_relative() {
                *p = std::path::absolute(base.join(&*p)).unwrap_or_else(|_| base.join(&*p)).display().to_string();
            }
        }
    }
    let effective = run.output_dir.join("config.yaml");
    let yaml_text = |v: &serde_norway::Value| serde_norway::to_string(v).map_err(|e| config_error(e.to_string()));
    std::fs::write(&effective, yaml_text(&model_yaml)?).map_err(io(&effective))?;
    let model_cfg = DepthBlip2Config::from_yaml_file(&effective)?;
    let seed = run.seed.or(cfg.random_seed).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let files = ModelFiles { config: effective.clone(), checkpoint: run.checkpoint.clone(), clip_weights: run.clip_weights.clone(), clip_config: run.clip_config.clone() };
    let device = run.device.open()?;
    let net = ModelFamily::DepthBlip2.load(&files, &Default::default(), &device, DType::F32)?;
    let model = net.downcast_ref::<DepthBlip2>().ok_or_else(|| Error::ModelConfig("bin training needs a DepthBLIP-2 model".into()))?;
    let spec = |data: &Path, gt: Option<&Path>| crate::data::sample::DataSpec {
        dataset: cfg.dataset.to_ascii_lowercase(),
        data_root: data.to_path_buf(),
        gt_root: gt.map(|g| g.to_path_buf()),
        input_height: 0,
        input_width: 0,
        kb_crop: false,
        nyu_crop: false,
        rotate_degree: None,
        depth_divisor: cfg.divisor(),
        preprocessor: model.geometry().preprocessor().clone(),
    };
    let t = std::time::Instant::now();
    let train = cache_samples(model, &device, DType::F32, &spec(&cfg.data_path, cfg.gt_path.as_deref()), &cfg.filenames_file)?;
    let val = match &cfg.filenames_file_eval {
        Some(list) => {
            let data = cfg.data_path_eval.clone().unwrap_or_else(|| cfg.data_path.clone());
            let gt = cfg.gt_path_eval.clone().or_else(|| cfg.gt_path.clone());
            cache_samples(model, &device, DType::F32, &spec(&data, gt.as_deref()), list)?
        }
        None => Vec::new(),
    };
    log(&format!(
        "class probabilities of {} training and {} validation images computed in {:.1} s ({})",
        train.len(),
        val.len(),
        t.elapsed().as_secs_f64(),
        net.name()
    ));
    let bins = model_cfg.scaled_bins();
    let cpu = Device::Cpu;
    let mlp = match &model_cfg.adaptive_bins {
        Some(path) => {
            log(&format!("starting from {}", path.display()));
            TrainableBins::from_file(path, &bins, cfg.bins_dropout, &cpu)?
        }
        None => TrainableBins::new(&bins, cfg.bins_dropout, None, seed, &cpu)?,
    };
    let t = std::time::Instant::now();
    let outcome = fit(&mlp, &cfg, &train, &val, seed, |epoch, loss, val| match val {
        Some(v) => log(&format!("epoch {:>3}: train loss {loss:.4}, validation loss {v:.4}", epoch + 1)),
        None => log(&format!("epoch {:>3}: train loss {loss:.4}", epoch + 1)),
    })?;
    let weights = run.output_dir.join("bins_mlp.safetensors");
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    crate::weights::write_safetensors(&weights, &mlp.state_dict(), &meta)?;
    let summary = serde_json::json!({
        "bin_list": bins,
        "bins": outcome.bins_after,
        "initial_bins": outcome.bins_before,
        "best_epoch": outcome.best_epoch + 1,
        "train_loss": outcome.train_loss,
        "validation_loss": outcome.val_loss,
        "seed": seed,
    });
    let summary_path = run.output_dir.join("bins.json");
    let summary_text = serde_json::to_string_pretty(&summary).map_err(|e| config_error(e.to_string()))? + "\n";
    std::fs::write(&summary_path, summary_text).map_err(io(&summary_path))?;
    if let serde_norway::Value::Mapping(map) = &mut model_yaml {
        map.insert("adaptive_bins".into(), "bins_mlp.safetensors".into());
    }
    std::fs::write(&effective, yaml_text(&model_yaml)?).map_err(io(&effective))?;
    let show = |b: &[f64]| b.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ");
    log(&format!(
        "bins [{}] -> [{}] (epoch {} of {}, {:.1} s)",
        show(&outcome.bins_before),
        show(&outcome.bins_after),
        outcome.best_epoch + 1,
        cfg.epochs,
        t.elapsed().as_secs_f64()
    ));
    Ok(BinsRunReport { weights, config: effective, outcome })
}

/// Trains the MLP on `train` (shuffled batches, dropout, AdamW), keeping
/// the state with the lowest validation loss (the last without `val`).
pub fn fit(mlp: &TrainableBins, cfg: &BinsTrainConfig, train: &[BinsSample], val: &[BinsSample], seed: u64, mut log: impl FnMut(usize, f64, Option<f64>)) -> Result<BinsOutcome> {
    let range = (cfg.loss_min_depth, cfg.loss_max_depth);
    let bins_before = values(&mlp.bins(&ForwardMode::eval())?)?;
    let mut opt = optimiser(mlp, cfg.weight_decay)?;
    let mut rng = crate::rng::Rng::seed(seed);
    let (mut train_loss, mut val_loss) = (Vec::new(), Vec::new());
    // (validation loss, the MLP's tensors, epoch)
    type Best = (f64, Vec<(String, Tensor)>, usize);
    let mut best: Option<Best> = None;
    for epoch in 0..cfg.epochs {
        let order = rng.permutation(train.len());
        let ctx = ForwardMode::train(crate::rng::Rng::derive(seed, &[epoch as u64, 1]));
        let mut sum = 0.0;
        let mut batches = 0;
        for chunk in order.chunks(cfg.batch_size) {
            let batch: Vec<BinsSample> = chunk.iter().map(|&i| train[i].clone()).collect();
            sum += train_step(mlp, &mut opt, &batch, cfg.learning_rate, cfg.loss_alpha, range, &ctx)?;
            batches += 1;
        }
        train_loss.push(sum / batches.max(1) as f64);
        let v = if val.is_empty() {
            None
        } else {
            let loss = bins_loss(&mlp.bins(&ForwardMode::eval())?, val, cfg.loss_alpha, range)?.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            val_loss.push(loss);
            Some(loss)
        };
        log(epoch, train_loss[epoch], v);
        let score = v.unwrap_or(0.0);
        if best.as_ref().is_none_or(|(b, _, _)| score < *b || val.is_empty()) {
            let state = mlp.state_dict().into_iter().map(|(n, t)| Ok((n, t.copy()?))).collect::<Result<Vec<_>>>()?;
            best = Some((score, state, epoch));
        }
    }
    let (_, state, best_epoch) = best.ok_or_else(|| candle_core::Error::Msg("no epoch ran".into()))?;
    mlp.store().load(&state)?;
    let bins_after = values(&mlp.bins(&ForwardMode::eval())?)?;
    Ok(BinsOutcome { bins_before, bins_after, train_loss, val_loss, best_epoch })
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
}
