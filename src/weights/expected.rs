//! The tensors a configuration needs, learnt by building the model once
//! against a recorder instead of real weights, so the model code stays the
//! one source of truth for names and shapes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    pub name: String,
    pub shape: Shape,
}

/// Hands out zero tensors that take no memory (a broadcast scalar) and
/// notes every name and shape asked for. `present` answers
/// `contains_tensor`, which decides optional parts such as the aux heads.
struct Recorder {
    present: HashSet<String>,
    seen: Arc<Mutex<Vec<ExpectedTensor>>>,
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(ExpectedTensor { name: name.to_string(), shape: s.clone() });
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape needed to record {name}")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.present.contains(name)
    }
}

/// Every tensor `build` reads when given a recorder for its weights: the
/// expected tensors of any model, learnt from the model's own code.
pub fn record_tensors(
    present: &HashSet<String>,
    build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<()>,
) -> Result<Vec<ExpectedTensor>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder { present: present.clone(), seen: seen.clone() };
    let vb = VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu);
    build(vb).map_err(|e| Error::ModelConfig(Error::from(e).to_string()))?;
    let mut seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    // A tensor read twice (none today) is still one tensor.
    let mut names = HashSet::new();
    seen.retain(|t| names.insert(t.name.clone()));
    Ok(seen)
}
