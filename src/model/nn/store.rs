//! Every named tensor of a trainable model, with its role: trainable
//! parameters (what the optimiser updates), frozen weights (saved, never
//! updated) and buffers (BatchNorm running statistics, updated in the
//! forward pass). Names are the checkpoint's, so saving is a walk over the
//! store and the model decides which parameters train.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Updated by the optimiser.
    Trainable,
    /// Part of the model and of its checkpoint, never updated.
    Frozen,
    /// State changed by the forward pass (BatchNorm running statistics).
    Buffer,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub role: Role,
    pub var: Var,
}

impl Entry {
    /// The current value, detached from any graph.
    pub fn tensor(&self) -> Tensor {
        self.var.as_detached_tensor()
    }
}

/// The store, shared by the layers that register into it.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl ParamStore {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, name: String, role: Role, var: Var) -> Result<()> {
        let mut entries = self.lock();
        if entries.iter().any(|e| e.name == name) {
            candle_core::bail!("tensor {name:?} registered twice");
        }
        entries.push(Entry { name, role, var });
        Ok(())
    }

    /// Every entry in registration order (the checkpoint's order).
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    pub fn with_role(&self, role: Role) -> Vec<Entry> {
        self.lock().iter().filter(|e| e.role == role).cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Entry> {
        self.lock().iter().find(|e| e.name == name).cloned()
    }

    /// (name, value) of every entry: the state dict to save.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.lock().iter().map(|e| (e.name.clone(), e.tensor())).collect()
    }

    /// Overwrites the named entries with `values` (shapes must match);
    /// names not in the store are an error.
    pub fn load(&self, values: &[(String, Tensor)]) -> Result<()> {
        let entries = self.lock();
        let index: HashMap<&str, &Entry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
        for (name, value) in values {
            let entry = index.get(name.as_str()).ok_or_else(|| candle_core::Error::Msg(format!("no tensor {name:?} in the model")))?;
            entry.var.set(&value.to_dtype(entry.var.dtype())?.to_device(entry.var.device())?)?;
        }
        Ok(())
    }

    pub fn num_elements(&self, role: Role) -> usize {
        self.lock().iter().filter(|e| e.role == role).map(|e| e.var.elem_count()).sum()
    }
}

/// How a new parameter is filled when no checkpoint provides it.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// PyTorch's default for Conv and Linear weights and biases:
    /// `kaiming_uniform_(a = sqrt(5))`, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    FanInUniform { fan_in: usize },
    Const(f64),
}

/// Where initial values come from: a seeded generator, or tensors of a
/// checkpoint (by name, shapes checked, each used once).
#[derive(Debug)]
pub enum InitSource {
    Random(Mutex<Rng>),
    Tensors(Mutex<HashMap<String, Tensor>>),
}

impl InitSource {
    pub fn random(seed: u64) -> Self {
        Self::Random(Mutex::new(Rng::seed(seed)))
    }

    pub fn tensors(tensors: HashMap<String, Tensor>) -> Self {
        Self::Tensors(Mutex::new(tensors))
    }

    /// Names of the checkpoint tensors no layer took (for a strict load).
    pub fn unused(&self) -> Vec<String> {
        match self {
            Self::Random(_) => Vec::new(),
            Self::Tensors(t) => {
                let mut names: Vec<String> = t.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
                names.sort();
                names
            }
        }
    }
}

/// Registers tensors under a name prefix, like candle's `VarBuilder`.
#[derive(Clone)]
pub struct ParamBuilder<'a> {
    store: &'a ParamStore,
    source: &'a InitSource,
    prefix: String,
    device: Device,
    /// Floating-point type of parameters and float buffers.
    dtype: DType,
}

impl<'a> ParamBuilder<'a> {
    pub fn new(store: &'a ParamStore, source: &'a InitSource, device: &Device) -> Self {
        Self { store, source, prefix: String::new(), device: device.clone(), dtype: DType::F32 }
    }

    /// Parameters in `dtype` (f32 by default; f64 for reference runs).
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The builder for a sub-module.
    pub fn pp(&self, name: impl ToString) -> Self {
        let name = name.to_string();
        let prefix = if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) };
        Self { prefix, ..self.clone() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    fn make(&self, name: &str, shape: Shape, dtype: DType, init: Init) -> Result<(String, Var)> {
        let full = self.full(name);
        let tensor = match self.source {
            InitSource::Tensors(tensors) => {
                let found = tensors.lock().unwrap_or_else(|p| p.into_inner()).remove(&full);
                let t = match found {
                    Some(t) => t,
                    // Files written for inference may omit BatchNorm counters.
                    None if name == "num_batches_tracked" => Tensor::zeros((), DType::I64, &self.device)?,
                    None => candle_core::bail!("the initial checkpoint has no tensor {full:?}"),
                };
                if t.shape() != &shape {
                    candle_core::bail!("tensor {full:?} is {:?} in the initial checkpoint, the model needs {:?}", t.shape(), shape);
                }
                t.to_dtype(dtype)?.to_device(&self.device)?
            }
            InitSource::Random(rng) => {
                let n = shape.elem_count();
                let values: Vec<f64> = match init {
                    Init::Const(v) => vec![v; n],
                    Init::FanInUniform { fan_in } => {
                        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                        (0..n).map(|_| rng.uniform_range(-bound, bound)).collect()
                    }
                };
                Tensor::from_vec(values, shape, &self.device)?.to_dtype(dtype)?
            }
        };
        Ok((full, Var::from_tensor(&tensor)?))
    }

    /// A trainable parameter in the builder's dtype.
    pub fn param(&self, name: &str, shape: impl Into<Shape>, init: Init) -> Result<Var> {
        let (full, var) = self.make(name, shape.into(), self.dtype, init)?;
        self.store.insert(full, Role::Trainable, var.clone())?;
        Ok(var)
    }

    /// A buffer (not trained, changed by the forward pass); `None` for
    /// the builder's float dtype.
    pub fn buffer(&self, name: &str, shape: impl Into<Shape>, dtype: Option<DType>, init: Init) -> Result<Var> {
        let (full, var) = self.make(name, shape.into(), dtype.unwrap_or(self.dtype), init)?;
        self.store.insert(full, Role::Buffer, var.clone())?;
        Ok(var)
    }
}
