//! `clip_depth bench --train`: images per second of one training step of
//! the authors' recipe (frozen encoder, decoder forward and losses,
//! backward, clipping + AdamW + EMA), with the encoder run or its features
//! read from a feature cache on disk, part by part.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};

use clip_depth_ros::model::nn::{ForwardMode, Features, InitSource, Role, TrainableModel};
use clip_depth_ros::model::{BackboneConfig, DecoderConfig, Precision, TrainOptions, TrainableSpaceClip, BACKBONE_PREFIX};
use clip_depth_ros::rng::Rng;
use clip_depth_ros::train::ema::Ema;
use clip_depth_ros::train::loss::{total_loss, valid_mask, LossWeights};
use clip_depth_ros::train::optim::{clip_grad_norm, AdamW, AdamWConfig};
use clip_depth_ros::model::spaceclip::random_state_dict;
use clip_depth_ros::weights::{read_safetensors, write_safetensors};

/// Milliseconds per named part, recorded after the warm-up.
#[derive(Default)]
struct Timer {
    parts: HashMap<&'static str, Vec<f64>>,
    start: Option<Instant>,
    recording: bool,
}

impl Timer {
    fn restart(&mut self) {
        self.start = Some(Instant::now());
    }

    /// Ends a part (waiting for the device) and starts the next.
    fn lap(&mut self, name: &'static str, device: &Device) -> Result<()> {
        if !device.is_cpu() {
            device.synchronize()?;
        }
        if let (true, Some(t)) = (self.recording, self.start) {
            self.parts.entry(name).or_default().push(t.elapsed().as_secs_f64() * 1e3);
        }
        self.restart();
        Ok(())
    }
}

/// Median of a sample.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub struct TrainBench {
    pub backbone: BackboneConfig,
    pub decoder: DecoderConfig,
    pub batch: usize,
    pub size: (usize, usize),
    pub iters: usize,
    pub warmup: usize,
    pub json: bool,
    pub device: Device,
}

pub fn run(b: TrainBench) -> Result<ExitCode> {
    let dev = b.device.clone();
    // The authors' NYU settings: aux heads, dropout 0.1, w_ssim 0.5.
    let backbone: HashMap<String, Tensor> = random_state_dict(&b.backbone, &b.decoder, 0)?
        .tensors()
        .iter()
        .filter(|(n, _)| n.starts_with(BACKBONE_PREFIX))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    let opts = TrainOptions { aux_heads: true, dropout: 0.1 };
    let model = TrainableSpaceClip::new(backbone, &b.backbone, &b.decoder, opts, &InitSource::random(0), &dev, Precision::default())?;
    let params: Vec<(String, Var)> = model.store().with_role(Role::Trainable).into_iter().map(|e| (e.name, e.var)).collect();
    let vars: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(params, AdamWConfig::default())?;
    let mut ema = Ema::new(model.store(), 0.996)?;
    let weights = LossWeights { w_ssim: 0.5, w_grad: 0.0, aux: vec![0.1, 0.05, 0.0], multiscale: true };

    let (w, h) = b.size;
    let s = b.backbone.image_size;
    let mut rng = Rng::seed(1);
    let pixels: Vec<f32> = (0..b.batch * 3 * s * s).map(|_| rng.uniform_range(-1.8, 2.1) as f32).collect();
    let pixels = Tensor::from_vec(pixels, (b.batch, 3, s, s), &Device::Cpu)?.to_device(&dev)?;
    // A smooth ground truth with some invalid pixels.
    let depth: Vec<f32> = (0..b.batch * h * w)
        .map(|i| {
            let (y, x) = ((i / w) % h, i % w);
            if (x * 7 + y * 13) % 97 == 0 { 0.0 } else { 0.8 + 6.0 * (y as f32 / h as f32) + 0.5 * ((x as f32) * 0.02).sin() }
        })
        .collect();
    let depth = Tensor::from_vec(depth, (b.batch, 1, h, w), &Device::Cpu)?.to_device(&dev)?;
    let mask = valid_mask(&depth, 1e-3, 10.0)?;
    let cache_dir = tempfile_dir()?;
    let cache_file = cache_dir.join("batch.safetensors");

    let mut timer = Timer::default();
    for it in 0..b.warmup + b.iters {
        timer.recording = it >= b.warmup;
        timer.restart();
        let features = model.features(&pixels)?;
        timer.lap("encoder", &dev)?;
        // What the cache costs instead: one batch of features read back.
        let named: Vec<(String, Tensor)> = features.0.iter().enumerate().map(|(k, t)| (format!("f.{k}"), t.clone())).collect();
        write_safetensors(&cache_file, &named, &HashMap::new())?;
        timer.restart();
        let (read, _) = read_safetensors(&cache_file)?;
        let cached = Features(read.into_iter().map(|(_, t)| t.to_device(&dev)).collect::<candle_core::Result<_>>()?);
        timer.lap("cache read", &dev)?;
        drop(cached);
        let ctx = ForwardMode::train(Rng::derive(0, &[3, it as u64]));
        let pred = model.forward(&features, (h, w), &ctx)?;
        timer.lap("forward", &dev)?;
        let terms = total_loss(&pred, &depth, &mask, &weights)?;
        timer.lap("loss", &dev)?;
        let mut grads = terms.total.backward()?;
        timer.lap("backward", &dev)?;
        clip_grad_norm(&vars, &mut grads, 1.0)?;
        opt.step(&grads, 1e-4)?;
        ema.update(model.store())?;
        timer.lap("optimiser + EMA", &dev)?;
    }
    let parts = timer.parts;
    let _ = std::fs::remove_dir_all(&cache_dir);
    let m = |k: &str| median(parts.get(k).cloned().unwrap_or_else(|| vec![f64::NAN]));
    let (enc, cache, fwd, bwd, optim) = (m("encoder"), m("cache read"), m("forward") + m("loss"), m("backward"), m("optimiser + EMA"));
    let step = enc + fwd + bwd + optim;
    let step_cached = cache + fwd + bwd + optim;
    let ips = b.batch as f64 * 1e3 / step;
    let ips_cached = b.batch as f64 * 1e3 / step_cached;
    if b.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "batch": b.batch, "size": [w, h], "iters": b.iters, "device": format!("{:?}", b.device),
                "trainable_parameters": model.store().num_elements(Role::Trainable),
                "ms": {"encoder": enc, "cache_read": cache, "forward": m("forward"), "loss": m("loss"), "backward": bwd, "optimiser_ema": optim,
                       "step": step, "step_cached": step_cached},
                "images_per_s": ips, "images_per_s_cached": ips_cached,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "clip_depth bench --train: batch {}, ground truth {w}x{h}, backbone hidden {} x {} layers, {:.2} M trainable parameters; medians of {} steps after {} warm-up",
        b.batch,
        b.backbone.hidden_size,
        b.backbone.num_hidden_layers,
        model.store().num_elements(Role::Trainable) as f64 / 1e6,
        b.iters,
        b.warmup
    );
    for (name, ms) in [("encoder", enc), ("cache read", cache), ("forward", m("forward")), ("loss", m("loss")), ("backward", bwd), ("optimiser + EMA", optim)] {
        println!("{name:<16} {ms:>10.1} ms");
    }
    println!("{:<16} {step:>10.1} ms  {ips:>6.2} images/s", "step");
    println!("{:<16} {step_cached:>10.1} ms  {ips_cached:>6.2} images/s", "step (cached)");
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("clip_depth_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
