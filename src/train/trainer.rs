//! The training loop of the authors' `train.py`, step for step: batches of
//! the shuffled list (incomplete last batch dropped, failed samples
//! dropped from their batch), the combined loss, a NaN/Inf loss skipping
//! the step, backward, global gradient clipping at 1.0, AdamW, the
//! schedule, EMA; validation every `validate_epochs` (raw, EMA or both)
//! with the best checkpoint selected by AbsRel. Every source of randomness
//! is derived from (seed, purpose, counters), so a run is reproducible and
//! a resumed run continues exactly as an uninterrupted one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde_json::json;

use super::config::TrainConfig;
use super::ema::Ema;
use super::log::{draw_curves, MetricsLog};
use super::loss::{total_loss, valid_mask, LossTerms, LossWeights};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig};
use super::schedule::Schedule;
use super::state::{self, RunCounters};
use crate::train::cache::{CachedSample, FeatureCache, Fingerprint};
use crate::data::{read_list, Augment, DataSpec, ListEntry, Loader, Sample, SkipLog};
use crate::error::{Error, Result};
use crate::eval::visuals::{panel_row, save_png, stack};
use crate::eval::{Metrics, NonFinite, Protocol, RunningMetrics};
use crate::image::preprocess::Preprocessor;
use crate::model::nn::{ForwardMode, Features, Role, TrainableModel};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::weights::write_safetensors;

/// Purposes of the derived random streams.
const ORDER: u64 = 1;
const AUGMENT: u64 = 2;
const DROPOUT: u64 = 3;

/// Gradient-norm clipping threshold of the recipe.
pub const MAX_GRAD_NORM: f64 = 1.0;

/// How a run is driven (the command line's choices).
pub struct RunOptions {
    pub output_dir: PathBuf,
    /// Stop after this many optimiser steps in all (the schedule still
    /// spans the configured epochs).
    pub max_steps: Option<u64>,
    /// Continue the run saved in this directory.
    pub resume: Option<PathBuf>,
    pub augment: bool,
    pub shuffle: bool,
    pub cache_dir: Option<PathBuf>,
    pub device: Device,
    /// Set (by Ctrl-C) to stop after the current step, saving everything.
    pub stop: Arc<AtomicBool>,
    /// Path of the config, recorded in the outputs.
    pub config_path: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub steps: u64,
    pub finished: bool,
    pub interrupted: bool,
    pub best_abs_rel: f64,
    pub skipped: u64,
}

/// One training batch, ready for the trainable part.
struct Batch {
    features: Features,
    depth: Tensor,
    size: usize,
}

enum Item {
    Sample(Sample),
    Cached(CachedSample, bool),
}

struct Data {
    train: Vec<ListEntry>,
    val: Vec<ListEntry>,
    train_spec: DataSpec,
    val_spec: Option<DataSpec>,
}

pub struct Trainer {
    cfg: TrainConfig,
    model: Arc<dyn TrainableModel>,
    opt: AdamW,
    trainable: Vec<Var>,
    schedule: Schedule,
    ema: Option<Ema>,
    weights: LossWeights,
    data: Data,
    cache: Option<Arc<FeatureCache>>,
    opts: RunOptions,
    counters: RunCounters,
    batches_per_epoch: u64,
    log: MetricsLog,
    skips: Arc<SkipLog>,
    protocol: Option<Protocol>,
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Trainer {
    pub fn new(cfg: TrainConfig, model: Box<dyn TrainableModel>, opts: RunOptions, seed: u64) -> Result<Self> {
        let model: Arc<dyn TrainableModel> = Arc::from(model);
        let size = model.input_size();
        if cfg.clip_input_size != size {
            return Err(Error::ModelConfig(format!("clip_input_size is {} but the backbone takes {size}x{size} images", cfg.clip_input_size)));
        }
        let (mean, std) = model.normalisation();
        let preprocessor = Preprocessor::new(size, mean, std);
        let train_spec = DataSpec {
            dataset: lower(&cfg.dataset),
            data_root: cfg.data_path.clone(),
            gt_root: Some(cfg.gt_path.clone()),
            input_height: cfg.input_height,
            input_width: cfg.input_width,
            kb_crop: cfg.do_kb_crop,
            nyu_crop: cfg.do_nyu_crop,
            rotate_degree: if cfg.do_random_rotate { cfg.degree } else { None },
            depth_divisor: cfg.depth_divisor(),
            preprocessor: preprocessor.clone(),
        };
        let val_spec = cfg.filenames_file_eval.as_ref().map(|_| DataSpec {
            data_root: cfg.data_path_eval.clone().unwrap_or_else(|| cfg.data_path.clone()),
            gt_root: Some(cfg.gt_path_eval.clone().unwrap_or_else(|| cfg.gt_path.clone())),
            nyu_crop: cfg.do_nyu_crop_eval,
            rotate_degree: None,
            ..train_spec.clone()
        });
        let train = read_list(&cfg.filenames_file)?;
        let val = match &cfg.filenames_file_eval {
            Some(p) => read_list(p)?,
            None => Vec::new(),
        };
        let batches_per_epoch = (train.len() / cfg.batch_size) as u64;
        if batches_per_epoch == 0 {
            return Err(Error::Config {
                path: cfg.filenames_file.clone(),
                message: format!("{} training samples, fewer than batch_size {}", train.len(), cfg.batch_size),
            });
        }
        let schedule = match lower(&cfg.scheduler).as_str() {
            "cosine_warmup" => Schedule::cosine_warmup(
                cfg.learning_rate,
                batches_per_epoch * cfg.epochs,
                cfg.warmup_steps,
                cfg.warmup_ratio,
                cfg.min_lr,
            ),
            "cosine" => Schedule::Cosine { base: cfg.learning_rate, t_max: cfg.epochs, eta_min: cfg.min_lr },
            _ => Schedule::Step { base: cfg.learning_rate, step_size: cfg.step_lr_step_size, gamma: cfg.step_lr_gamma },
        };
        let params: Vec<(String, Var)> =
            model.store().with_role(Role::Trainable).into_iter().map(|e| (e.name, e.var)).collect();
        let trainable = params.iter().map(|(_, v)| v.clone()).collect();
        let opt = AdamW::new(params, AdamWConfig { weight_decay: cfg.weight_decay, ..Default::default() })?;
        let ema = if cfg.use_ema { Some(Ema::new(model.store(), cfg.ema_decay)?) } else { None };
        let weights = LossWeights {
            w_ssim: cfg.w_ssim,
            w_grad: cfg.w_grad,
            aux: cfg.aux_loss_weights.as_list(),
            multiscale: cfg.use_multiscale_supervision,
        };
        std::fs::create_dir_all(&opts.output_dir).map_err(|source| Error::Io { path: opts.output_dir.clone(), source })?;
        let protocol = match (cfg.min_depth_eval, cfg.max_depth_eval) {
            (Some(lo), Some(hi)) => Some(Protocol {
                dataset: lower(&cfg.dataset),
                min_depth: lo,
                max_depth: hi,
                crop: cfg.eval_crop().map_err(Error::ModelConfig)?,
                median_scaling: cfg.median_scaling_eval,
                non_finite: NonFinite::default(),
            }),
            _ => None,
        };
        let counters = RunCounters { step: 0, epoch: 0, batch_in_epoch: 0, seed, best_abs_rel: f64::INFINITY, skipped: 0 };
        let skips = Arc::new(SkipLog::new(cfg.warn_on_skipped_samples, cfg.skip_warning_limit));
        // A resumed run keeps (and continues) the earlier record.
        let log = if opts.resume.is_some() { MetricsLog::empty(&opts.output_dir) } else { MetricsLog::open(&opts.output_dir, None)? };
        let mut trainer = Self {
            cfg,
            model,
            opt,
            trainable,
            schedule,
            ema,
            weights,
            data: Data { train, val, train_spec, val_spec },
            cache: None,
            opts,
            counters,
            batches_per_epoch,
            log,
            skips,
            protocol,
        };
        if let Some(dir) = trainer.opts.resume.clone() {
            trainer.resume(&dir)?;
        }
        Ok(trainer)
    }

    fn resume(&mut self, dir: &Path) -> Result<()> {
        let (weights, _) = crate::weights::read_safetensors(&dir.join("last.safetensors"))?;
        self.model.store().load(&weights).map_err(|e| Error::Weights { path: dir.join("last.safetensors"), message: Error::from(e).to_string() })?;
        let counters = state::load(&dir.join("train_state.safetensors"), &mut self.opt, self.ema.as_mut())?;
        self.counters = counters;
        if self.opts.output_dir != dir {
            // Carry the record over so the new directory tells the whole run.
            if let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) {
                let _ = std::fs::write(self.opts.output_dir.join("metrics.jsonl"), text);
            }
        }
        self.log = MetricsLog::open(&self.opts.output_dir, Some(self.counters.step))?;
        Ok(())
    }

    pub fn counters(&self) -> RunCounters {
        self.counters
    }

    pub fn model(&self) -> &Arc<dyn TrainableModel> {
        &self.model
    }

    /// The learning rate of the next optimiser step.
    pub fn current_lr(&self) -> f64 {
        self.schedule.lr(self.counters.step, self.counters.epoch)
    }

    fn stop_requested(&self) -> bool {
        self.opts.stop.load(Ordering::SeqCst)
    }

    fn say(&self, progress: Option<&Progress>, line: &str) {
        match progress {
            Some(p) => p.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// The fingerprint of what the feature cache depends on.
    fn cache_fingerprint(&self) -> Result<String> {
        let s = &self.data.train_spec;
        let lines: String = self.data.train.iter().map(|e| format!("{}\n", e.text)).collect();
        let settings = format!(
            "{}|{}|{}|{}x{}|{}|{}|{}|{}",
            s.dataset,
            s.data_root.display(),
            s.gt_root.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            s.input_width,
            s.input_height,
            s.kb_crop,
            s.nyu_crop,
            s.depth_divisor,
            s.preprocessor.size()
        );
        let mut f = Fingerprint::default();
        f.part(lines.as_bytes());
        f.part(settings.as_bytes());
        // Every value of every frozen tensor: a cache made with other
        // weights is refused, wherever they differ.
        for e in self.model.store().with_role(Role::Frozen) {
            f.update(e.name.as_bytes());
            for v in e.tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? {
                f.update(&v.to_le_bytes());
            }
            f.end_part();
        }
        Ok(f.finish())
    }

    /// Runs until the configured epochs are done, `max_steps` is reached or
    /// a stop is requested; saves `last`, `train_state` (and `ema`,
    /// `best`, `curves.png`) on the way out.
    pub fn run(&mut self) -> Result<Outcome> {
        if let Some(dir) = self.opts.cache_dir.clone() {
            if self.cfg.do_random_rotate && self.opts.augment {
                eprintln!("note: with --cache-features the rotation, random crop and colour jitter are off; the flip is kept");
            }
            let fp = self.cache_fingerprint()?;
            let skips = self.skips.clone();
            let built = FeatureCache::build(
                &dir,
                &fp,
                &self.data.train,
                &self.data.train_spec,
                self.model.as_ref(),
                &self.opts.device,
                &self.opts.stop,
                |e, reason| skips.skip(&format!("line {}", e.line_no), reason),
            )?;
            match built {
                Some(c) => self.cache = Some(Arc::new(c)),
                None => return self.finish(false, true),
            }
        }
        let total_steps = self.batches_per_epoch * self.cfg.epochs;
        let steps_done = self.counters.epoch * self.batches_per_epoch + self.counters.batch_in_epoch;
        let mut progress = Progress::new("train", total_steps, "batches").starting_at(steps_done);
        let mut window = (Instant::now(), 0usize);
        let mut smoothed = 0f64;
        while self.counters.epoch < self.cfg.epochs {
            let epoch = self.counters.epoch;
            let order: Vec<usize> = if self.opts.shuffle {
                Rng::derive(self.counters.seed, &[ORDER, epoch]).permutation(self.data.train.len())
            } else {
                (0..self.data.train.len()).collect()
            };
            let b = self.cfg.batch_size;
            let first = self.counters.batch_in_epoch as usize * b;
            let end = self.batches_per_epoch as usize * b;
            let mut loader = self.loader(order, first, end);
            while self.counters.batch_in_epoch < self.batches_per_epoch {
                let items = loader.next_chunk(b);
                self.counters.batch_in_epoch += 1;
                let mut kept = Vec::with_capacity(items.len());
                for (pos, r) in items {
                    match r {
                        Ok(item) => kept.push(item),
                        Err(reason) => {
                            self.counters.skipped += 1;
                            let line = self.data.train.get(pos).map(|e| e.line_no).unwrap_or(0);
                            if self.cfg.strict_data_loading {
                                return Err(Error::InvalidImage(format!("training list line {line}: {reason} (strict_data_loading)")));
                            }
                            self.skips.skip(&format!("{} line {line}", self.cfg.filenames_file.display()), &reason);
                        }
                    }
                }
                if !kept.is_empty() {
                    let n_images = kept.len();
                    let started = Instant::now();
                    let batch = self.assemble(kept)?;
                    if let Some(terms) = self.step(&batch, &mut progress)? {
                        // Images per second, smoothed over recent steps.
                        let now = n_images as f64 / started.elapsed().as_secs_f64().max(1e-9);
                        smoothed = if smoothed > 0.0 { 0.8 * smoothed + 0.2 * now } else { now };
                        window.1 += n_images;
                        let global = self.counters.step - 1;
                        if global % self.cfg.log_scalar_every_iters.max(1) == 0 {
                            let rate = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                            window = (Instant::now(), 0);
                            self.log.append(json!({
                                "kind": "train", "step": global, "epoch": epoch, "lr": terms.1,
                                "loss": terms.0.total_value()?, "silog": terms.0.silog, "ssim": terms.0.ssim,
                                "aux": terms.0.aux, "grad": terms.0.grad, "grad_norm": terms.2, "images_per_s": rate,
                            }))?;
                        }
                        progress.set(
                            epoch * self.batches_per_epoch + self.counters.batch_in_epoch,
                            format!(
                                "epoch {}/{} loss {:.4} lr {:.2e} {smoothed:.2} images/s",
                                epoch + 1,
                                self.cfg.epochs,
                                terms.0.total_value()?,
                                terms.1
                            ),
                        );
                    }
                }
                let epoch_done = self.counters.batch_in_epoch == self.batches_per_epoch;
                let max_hit = self.opts.max_steps.is_some_and(|m| self.counters.step >= m);
                if self.stop_requested() || (max_hit && !epoch_done) {
                    drop(loader);
                    progress.finish();
                    return self.finish(false, self.stop_requested());
                }
            }
            drop(loader);
            // Epoch end: the per-epoch schedules advance, validation runs.
            self.counters.epoch += 1;
            self.counters.batch_in_epoch = 0;
            if self.skips.count() > 0 {
                self.say(Some(&progress), &format!("epoch {}: {} samples skipped so far", epoch + 1, self.counters.skipped));
            }
            let validate_now = (epoch + 1) % self.cfg.validate_epochs == 0 || epoch + 1 == self.cfg.epochs;
            if validate_now {
                self.validate_and_select(&progress)?;
            }
            self.save_last()?;
            let max_hit = self.opts.max_steps.is_some_and(|m| self.counters.step >= m);
            if self.stop_requested() || max_hit {
                progress.finish();
                return self.finish(self.counters.epoch >= self.cfg.epochs, self.stop_requested());
            }
        }
        progress.finish();
        self.finish(true, false)
    }

    fn loader(&self, order: Vec<usize>, first: usize, end: usize) -> Loader<Item> {
        let workers = self.cfg.workers.clamp(1, std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1));
        let ahead = 2 * self.cfg.batch_size;
        let entries = Arc::new(self.data.train.clone());
        let spec = self.data.train_spec.clone();
        let cache = self.cache.clone();
        let (seed, epoch) = (self.counters.seed, self.counters.epoch);
        let augment = if !self.opts.augment {
            Augment::Off
        } else if cache.is_some() {
            Augment::FlipOnly
        } else {
            Augment::Random
        };
        let device = self.opts.device.clone();
        let load = Arc::new(move |k: usize| -> std::result::Result<Item, String> {
            let pos = first + k;
            let index = order[pos];
            let mut rng = Rng::derive(seed, &[AUGMENT, epoch, pos as u64]);
            match &cache {
                Some(cache) => {
                    let flip = augment == Augment::FlipOnly && rng.uniform() > 0.5;
                    let c = cache.get(index, &device).map_err(|e| e.to_string())??;
                    Ok(Item::Cached(c, flip))
                }
                None => Ok(Item::Sample(spec.load_train(&entries[index], index, augment, &mut rng)?)),
            }
        });
        Loader::new(end.saturating_sub(first), workers, ahead, load)
    }

    fn assemble(&self, items: Vec<Item>) -> Result<Batch> {
        let dev = &self.opts.device;
        let (h, w) = (self.cfg.input_height, self.cfg.input_width);
        let n = items.len();
        let mut depth = Vec::with_capacity(n * h * w);
        let features = match &items[0] {
            Item::Sample(_) => {
                let s = self.model.input_size();
                let mut pixels = Vec::with_capacity(n * 3 * s * s);
                for item in &items {
                    let Item::Sample(sample) = item else { unreachable!("one kind per batch") };
                    pixels.extend_from_slice(&sample.pixels);
                    depth.extend_from_slice(sample.depth.as_deref().unwrap_or_default());
                }
                let pixels = Tensor::from_vec(pixels, (n, 3, s, s), &Device::Cpu)?.to_device(dev)?;
                self.model.features(&pixels)?
            }
            Item::Cached(..) => {
                let mut parts: Vec<Vec<Tensor>> = Vec::new();
                for item in &items {
                    let Item::Cached(c, flip) = item else { unreachable!("one kind per batch") };
                    let (f, d) = c.view(*flip);
                    depth.extend_from_slice(&d);
                    if parts.is_empty() {
                        parts = vec![Vec::new(); f.0.len()];
                    }
                    for (k, t) in f.0.into_iter().enumerate() {
                        parts[k].push(t);
                    }
                }
                Features(parts.iter().map(|p| Tensor::cat(p, 0)).collect::<candle_core::Result<_>>()?)
            }
        };
        if depth.len() != n * h * w {
            return Err(Error::InvalidImage(format!("a batch's depth maps are not all {w}x{h}")));
        }
        let depth = Tensor::from_vec(depth, (n, 1, h, w), &Device::Cpu)?.to_device(dev)?;
        Ok(Batch { features, depth, size: n })
    }

    /// One optimiser step; `None` when the loss was not finite (skipped).
    fn step(&mut self, batch: &Batch, progress: &mut Progress) -> Result<Option<(LossTerms, f64, f64)>> {
        let (_, _, h, w) = batch.depth.dims4()?;
        let ctx = ForwardMode::train(Rng::derive(self.counters.seed, &[DROPOUT, self.counters.step]));
        let pred = self.model.forward(&batch.features, (h, w), &ctx)?;
        let mask = valid_mask(&batch.depth, self.cfg.min_depth, self.cfg.max_depth)?;
        let terms = total_loss(&pred, &batch.depth, &mask, &self.weights)?;
        let value = terms.total_value()?;
        if !value.is_finite() {
            progress.println(&format!("warning: loss is {value} at step {}; skipping the step", self.counters.step));
            return Ok(None);
        }
        let mut grads = terms.total.backward()?;
        let norm = clip_grad_norm(&self.trainable, &mut grads, MAX_GRAD_NORM)?;
        let lr = self.current_lr();
        self.opt.step(&grads, lr)?;
        self.counters.step += 1;
        if let Some(ema) = &mut self.ema {
            ema.update(self.model.store())?;
        }
        let _ = batch.size;
        Ok(Some((terms, lr, norm)))
    }

    /// The model's depth for one evaluation sample at its own size, with
    /// flip test-time augmentation when configured, and the loss terms.
    fn predict_eval(&self, sample: &Sample, flip_tta: bool) -> Result<(Vec<f32>, Option<LossTerms>)> {
        let s = self.model.input_size();
        let dev = &self.opts.device;
        let pixels = Tensor::from_vec(sample.pixels.clone(), (1, 3, s, s), &Device::Cpu)?.to_device(dev)?;
        let size = (sample.height, sample.width);
        let ctx = ForwardMode::eval();
        let mut pred = self.model.forward(&self.model.features(&pixels)?, size, &ctx)?;
        if flip_tta {
            let flipped = crate::kernels::mirror::flip_width(&pixels)?;
            let p2 = self.model.forward(&self.model.features(&flipped)?, size, &ctx)?;
            pred.depth = ((&pred.depth + crate::kernels::mirror::flip_width(&p2.depth)?)? * 0.5)?;
        }
        let terms = match (&sample.depth, &self.protocol) {
            (Some(d), Some(p)) => {
                let gt = Tensor::from_slice(d, (1, 1, sample.height, sample.width), &Device::Cpu)?.to_device(dev)?;
                let mask = valid_mask(&gt, p.min_depth, p.max_depth)?;
                if mask.sum_all()?.to_scalar::<f32>()? > 0.0 {
                    Some(total_loss(&pred, &gt, &mask, &self.weights)?)
                } else {
                    None
                }
            }
            _ => None,
        };
        Ok((pred.depth.flatten_all()?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec1::<f32>()?, terms))
    }

    /// Validation with the current weights: (metrics, mean loss, the
    /// pictures' samples), or `None` when a stop cut it short (its metrics
    /// cover only part of the set and must not choose a checkpoint).
    fn validate(&self, label: &str, outer: &Progress) -> Result<Option<(Option<Metrics>, f64, Vec<(Sample, Vec<f32>)>)>> {
        let (Some(spec), Some(protocol)) = (self.data.val_spec.clone(), self.protocol.clone()) else {
            return Ok(Some((None, f64::NAN, Vec::new())));
        };
        let entries = Arc::new(self.data.val.clone());
        let e2 = entries.clone();
        let load = Arc::new(move |i: usize| spec.load_eval(&e2[i], i));
        let mut loader = Loader::new(entries.len(), self.cfg.workers.clamp(1, 2), 4, load);
        let mut metrics = RunningMetrics::default();
        let (mut loss_sum, mut loss_n) = (0f64, 0usize);
        let picks: Vec<usize> = pick_evenly(entries.len(), self.cfg.num_log_images);
        let mut shown = Vec::new();
        let mut progress = Progress::new(&format!("validate ({label})"), entries.len() as u64, "images");
        while let Some((i, r)) = loader.next_item() {
            if self.stop_requested() {
                progress.finish();
                return Ok(None);
            }
            let sample = match r {
                Ok(s) => s,
                Err(reason) => {
                    self.skips.skip(&format!("validation line {}", entries[i].line_no), &reason);
                    continue;
                }
            };
            let Some(gt) = sample.depth.clone() else { continue };
            let (pred, terms) = self.predict_eval(&sample, self.cfg.eval_flip_tta)?;
            let Some(terms) = terms else { continue };
            let l = terms.total_value()?;
            if !l.is_nan() {
                loss_sum += l;
                loss_n += 1;
            }
            if let Some(m) = protocol.image_metrics(&gt, &pred, sample.height, sample.width) {
                if m.all_finite() {
                    metrics.add(&m);
                }
            }
            if picks.contains(&i) {
                shown.push((sample, pred));
            }
            progress.set(i as u64 + 1, "");
        }
        progress.finish();
        let _ = outer;
        if self.stop_requested() {
            return Ok(None);
        }
        Ok(Some((metrics.value(), if loss_n > 0 { loss_sum / loss_n as f64 } else { f64::NAN }, shown)))
    }

    /// Runs `f` with the EMA weights in the model, then puts the raw ones back.
    fn with_ema<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let Some(ema) = &self.ema else { return f(self) };
        let store = self.model.store();
        let raw: Vec<(String, Tensor)> = ema
            .shadow
            .iter()
            .map(|(n, _)| Ok((n.clone(), store.get(n).map(|e| e.tensor().copy()).transpose()?.ok_or_else(|| Error::ModelConfig(n.clone()))?)))
            .collect::<Result<_>>()?;
        store.load(&ema.shadow)?;
        let out = f(self);
        store.load(&raw)?;
        out
    }

    fn log_val(&mut self, source: &str, metrics: &Option<Metrics>, loss: f64) -> Result<()> {
        let mut record = json!({ "kind": "val", "step": self.counters.step, "epoch": self.counters.epoch, "source": source, "val_loss": loss });
        if let Some(m) = metrics {
            for (k, v) in crate::eval::NAMES.iter().zip(m.values()) {
                record[*k] = json!(v);
            }
        }
        self.log.append(record)
    }

    fn validate_and_select(&mut self, progress: &Progress) -> Result<()> {
        if self.protocol.is_none() || self.data.val_spec.is_none() {
            return Ok(());
        }
        let abs_rel = |m: &Option<Metrics>| m.map(|m| m.abs_rel).unwrap_or(f64::INFINITY);
        let interrupted = |progress: &Progress| -> Result<()> {
            progress.println("validation interrupted: its partial metrics are not recorded and choose no checkpoint (best.safetensors unchanged)");
            Ok(())
        };
        let (metrics, loss, shown, source) = if self.ema.is_some() && self.cfg.eval_both_for_best {
            let Some((rm, rl, rs)) = self.validate("raw", progress)? else { return interrupted(progress) };
            let Some((em, el, es)) = self.with_ema(|t| t.validate("ema", progress))? else { return interrupted(progress) };
            self.log_val("raw", &rm, rl)?;
            self.log_val("ema", &em, el)?;
            if abs_rel(&em) < abs_rel(&rm) { (em, el, es, "ema") } else { (rm, rl, rs, "raw") }
        } else if self.ema.is_some() && self.cfg.eval_with_ema() {
            let Some((m, l, s)) = self.with_ema(|t| t.validate("ema", progress))? else { return interrupted(progress) };
            (m, l, s, "ema")
        } else {
            let Some((m, l, s)) = self.validate("raw", progress)? else { return interrupted(progress) };
            (m, l, s, "raw")
        };
        let mut record = json!({ "kind": "val", "step": self.counters.step, "epoch": self.counters.epoch, "source": "selected", "selected": source, "val_loss": loss });
        if let Some(m) = &metrics {
            for (k, v) in crate::eval::NAMES.iter().zip(m.values()) {
                record[*k] = json!(v);
            }
        }
        self.log.append(record)?;
        let score = abs_rel(&metrics);
        progress.println(&format!(
            "validation after epoch {}: loss {loss:.4}, AbsRel {score:.4}, d1 {:.4} ({source})",
            self.counters.epoch,
            metrics.map(|m| m.a1).unwrap_or(f64::NAN)
        ));
        self.save_visuals(&shown)?;
        if score < self.counters.best_abs_rel {
            self.counters.best_abs_rel = score;
            let dict = match (&self.ema, source) {
                (Some(ema), "ema") => ema.state_dict(self.model.store()),
                _ => self.model.store().state_dict(),
            };
            self.write_weights("best.safetensors", &dict, source)?;
            progress.println(&format!("new best AbsRel {score:.4}: best.safetensors ({source} weights)"));
        }
        draw_curves(self.log.records(), &self.opts.output_dir.join("curves.png"))?;
        Ok(())
    }

    fn save_visuals(&self, shown: &[(Sample, Vec<f32>)]) -> Result<()> {
        let rows: Vec<_> =
            shown.iter().map(|(s, p)| panel_row(&s.rgb, s.depth.as_deref(), p, s.width, s.height)).collect();
        if let Some((px, w, h)) = stack(&rows) {
            save_png(&self.opts.output_dir.join("val_visuals.png"), &px, w, h)?;
        }
        Ok(())
    }

    fn write_weights(&self, file: &str, dict: &[(String, Tensor)], source: &str) -> Result<()> {
        let metadata = HashMap::from([
            ("format".to_string(), "pt".to_string()),
            ("weights".to_string(), source.to_string()),
            ("step".to_string(), self.counters.step.to_string()),
            ("epoch".to_string(), self.counters.epoch.to_string()),
            ("config".to_string(), self.opts.config_path.display().to_string()),
        ]);
        write_safetensors(&self.opts.output_dir.join(file), dict, &metadata)
    }

    /// `last.safetensors`, `ema.safetensors` and `train_state.safetensors`.
    pub fn save_last(&self) -> Result<()> {
        self.write_weights("last.safetensors", &self.model.store().state_dict(), "raw")?;
        if let Some(ema) = &self.ema {
            self.write_weights("ema.safetensors", &ema.state_dict(self.model.store()), "ema")?;
        }
        state::save(&self.opts.output_dir.join("train_state.safetensors"), &self.counters, &self.opt, self.ema.as_ref(), &self.cfg.name)
    }

    fn finish(&mut self, finished: bool, interrupted: bool) -> Result<Outcome> {
        self.save_last()?;
        if !self.log.records().is_empty() {
            draw_curves(self.log.records(), &self.opts.output_dir.join("curves.png"))?;
        }
        Ok(Outcome {
            steps: self.counters.step,
            finished,
            interrupted,
            best_abs_rel: self.counters.best_abs_rel,
            skipped: self.counters.skipped,
        })
    }
}

/// `np.linspace(0, n - 1, k).astype(int)`: k evenly spread indices.
fn pick_evenly(n: usize, k: usize) -> Vec<usize> {
    if n == 0 || k == 0 {
        return Vec::new();
    }
    if k == 1 {
        return vec![0];
    }
    (0..k).map(|i| ((i as f64) * (n - 1) as f64 / (k - 1) as f64) as usize).collect()
}
