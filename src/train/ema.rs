//! Exponential moving average of a model's parameters and buffers, as the
//! authors' `ExponentialMovingAverage`: `shadow = decay shadow + (1 - decay)
//! value` for floating tensors, a copy for integer ones (BatchNorm
//! counters). Frozen weights are constants, so their average is
//! themselves: they are not tracked.

use candle_core::{Result, Tensor};

use crate::model::nn::{ParamStore, Role};

#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f64,
    /// (name, shadow) for every trainable parameter and buffer.
    pub shadow: Vec<(String, Tensor)>,
}

impl Ema {
    pub fn new(store: &ParamStore, decay: f64) -> Result<Self> {
        let shadow = store
            .entries()
            .into_iter()
            .filter(|e| e.role != Role::Frozen)
            .map(|e| Ok((e.name.clone(), e.tensor().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self { decay, shadow })
    }

    pub fn update(&mut self, store: &ParamStore) -> Result<()> {
        for (name, shadow) in &mut self.shadow {
            let entry = store.get(name).ok_or_else(|| candle_core::Error::Msg(format!("EMA: no tensor {name:?}")))?;
            let value = entry.tensor();
            *shadow = if value.dtype().is_float() {
                ((&*shadow * self.decay)? + (value * (1.0 - self.decay))?)?
            } else {
                value.copy()?
            };
        }
        Ok(())
    }

    /// The averaged tensors plus the frozen ones: a complete state dict.
    pub fn state_dict(&self, store: &ParamStore) -> Vec<(String, Tensor)> {
        store
            .entries()
            .into_iter()
            .map(|e| match self.shadow.iter().find(|(n, _)| *n == e.name) {
                Some((_, s)) => (e.name.clone(), s.clone()),
                None => (e.name.clone(), e.tensor()),
            })
            .collect()
    }
}
