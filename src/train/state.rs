//! Everything a run needs to continue where it stopped, beside the weights
//! in `last.safetensors`: the optimiser's moments and step, the EMA, the
//! position in the schedule and the data order, and the best score so
//! far. Saved as `train_state.safetensors`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::ema::Ema;
use super::optim::AdamW;
use crate::error::{Error, Result};
use crate::weights::{read_safetensors, write_safetensors};

pub const FORMAT: &str = "clip_depth train_state 1";

/// Counters of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunCounters {
    /// Optimiser steps taken.
    pub step: u64,
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// Batches of that epoch consumed (trained on or skipped).
    pub batch_in_epoch: u64,
    pub seed: u64,
    pub best_abs_rel: f64,
    /// Samples skipped so far.
    pub skipped: u64,
}

pub fn save(path: &Path, p: &RunCounters, opt: &AdamW, ema: Option<&Ema>, config_name: &str) -> Result<()> {
    let cpu = Device::Cpu;
    let mut tensors = vec![
        (
            "counters".to_string(),
            Tensor::new(&[p.step as i64, p.epoch as i64, p.batch_in_epoch as i64, p.seed as i64, opt.step as i64, p.skipped as i64], &cpu)?,
        ),
        ("best_abs_rel".to_string(), Tensor::new(&[p.best_abs_rel], &cpu)?),
    ];
    for slot in &opt.slots {
        tensors.push((format!("adamw.exp_avg.{}", slot.name), slot.exp_avg.clone()));
        tensors.push((format!("adamw.exp_avg_sq.{}", slot.name), slot.exp_avg_sq.clone()));
    }
    if let Some(ema) = ema {
        for (name, t) in &ema.shadow {
            tensors.push((format!("ema.{name}"), t.clone()));
        }
    }
    let metadata = HashMap::from([("format".to_string(), FORMAT.to_string()), ("config".to_string(), config_name.to_string())]);
    write_safetensors(path, &tensors, &metadata)
}

/// Restores the optimiser and EMA in place and returns the counters.
pub fn load(path: &Path, opt: &mut AdamW, ema: Option<&mut Ema>) -> Result<RunCounters> {
    let (tensors, metadata) = read_safetensors(path)?;
    let bad = |message: String| Error::Weights { path: path.to_owned(), message };
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad("not a training state written by clip_depth train".into()));
    }
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let take = |name: &str| map.get(name).cloned().ok_or_else(|| bad(format!("missing {name:?}")));
    let c = take("counters")?.to_vec1::<i64>()?;
    if c.len() != 6 {
        return Err(bad("malformed counters".into()));
    }
    let best = take("best_abs_rel")?.to_vec1::<f64>()?;
    let device = opt.slots.first().map(|s| s.exp_avg.device().clone()).unwrap_or(Device::Cpu);
    for slot in &mut opt.slots {
        let m = take(&format!("adamw.exp_avg.{}", slot.name))?;
        let v = take(&format!("adamw.exp_avg_sq.{}", slot.name))?;
        if m.shape() != slot.exp_avg.shape() || v.shape() != slot.exp_avg_sq.shape() {
            return Err(bad(format!("optimiser state of {} has the wrong shape", slot.name)));
        }
        slot.exp_avg = m.to_device(&device)?;
        slot.exp_avg_sq = v.to_device(&device)?;
    }
    opt.step = c[4] as u64;
    if let Some(ema) = ema {
        for (name, t) in &mut ema.shadow {
            let saved = take(&format!("ema.{name}"))
                .map_err(|_| bad(format!("no EMA of {name:?}: the run was saved without use_ema")))?;
            *t = saved.to_dtype(t.dtype())?.to_device(t.device())?;
        }
    }
    Ok(RunCounters {
        step: c[0] as u64,
        epoch: c[1] as u64,
        batch_in_epoch: c[2] as u64,
        seed: c[3] as u64,
        skipped: c[5] as u64,
        best_abs_rel: best.first().copied().unwrap_or(f64::INFINITY),
    })
}
