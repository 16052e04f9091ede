//! One SPACE-CLIP state dict under canonical names, merged from a checkpoint
//! and an optional separate CLIP file, and its strict check against what
//! the model needs.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use super::expected::ExpectedTensor;
use super::file::{read_tensor_file, TensorFile};
use super::names::{canonical_name, NameClass};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub struct StateDict {
    tensors: HashMap<String, Tensor>,
    /// Stored names that inference never reads (BN counters, text tower, ...).
    ignored: Vec<String>,
}

impl StateDict {
    /// Reads the checkpoint and, when given, a separate CLIP weight file.
    pub fn from_files(checkpoint: &Path, clip_weights: Option<&Path>) -> Result<Self> {
        let mut files = vec![read_tensor_file(checkpoint)?];
        if let Some(clip) = clip_weights {
            files.push(read_tensor_file(clip)?);
        }
        Self::from_tensor_files(files)
    }

    /// Merges files; a tensor found twice (two spellings in one file, or in
    /// both files) is refused rather than silently picked.
    pub fn from_tensor_files(files: Vec<TensorFile>) -> Result<Self> {
        let mut dict = StateDict::default();
        let mut origin: HashMap<String, (std::path::PathBuf, String)> = HashMap::new();
        for file in files {
            for (stored, tensor) in file.tensors {
                match canonical_name(&stored) {
                    NameClass::Ignored => dict.ignored.push(stored),
                    NameClass::Model(name) => {
                        if let Some((path, first)) = origin.get(&name) {
                            let message = if *path == file.path {
                                format!("{first:?} and {stored:?} are the same tensor {name:?}")
                            } else {
                                format!(
                                    "{name:?} is in both {} and {}: the checkpoint already has the backbone, \
                                     so no separate CLIP weights are needed",
                                    path.display(),
                                    file.path.display()
                                )
                            };
                            return Err(Error::Weights { path: file.path.clone(), message });
                        }
                        origin.insert(name.clone(), (file.path.clone(), stored));
                        dict.tensors.insert(name, tensor);
                    }
                }
            }
        }
        dict.ignored.sort();
        Ok(dict)
    }

    /// Tensors already under the model's names, with the stored names
    /// that inference does not read (other families' loaders).
    pub fn from_parts(tensors: HashMap<String, Tensor>, mut ignored: Vec<String>) -> Self {
        ignored.sort();
        Self { tensors, ignored }
    }

    pub fn names(&self) -> HashSet<String> {
        self.tensors.keys().cloned().collect()
    }

    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Compares with what the model needs; `Ok` only for an exact match.
    pub fn mismatches(&self, expected: &[ExpectedTensor]) -> MismatchReport {
        let mut report = MismatchReport::default();
        let mut wanted = HashSet::with_capacity(expected.len());
        for e in expected {
            wanted.insert(e.name.as_str());
            match self.tensors.get(&e.name) {
                None => report.missing.push(e.clone()),
                Some(t) if t.shape() != &e.shape => {
                    report.wrong_shape.push((e.name.clone(), e.shape.clone(), t.shape().clone()))
                }
                Some(_) => {}
            }
        }
        report.unexpected = self
            .tensors
            .iter()
            .filter(|(name, _)| !wanted.contains(name.as_str()))
            .map(|(name, t)| (name.clone(), t.shape().clone()))
            .collect();
        report.unexpected.sort_by(|a, b| a.0.cmp(&b.0));
        report
    }

    pub fn check(&self, expected: &[ExpectedTensor]) -> Result<()> {
        let report = self.mismatches(expected);
        if report.is_empty() {
            Ok(())
        } else {
            Err(Error::WeightMismatch(report.to_string()))
        }
    }

    /// Hands the tensors to the model builder, cast to `dtype` on `device`
    /// as each is read.
    /// A VarBuilder that hands each tensor out once and forgets it: the
    /// model converts or repacks most weights at load, so holding the
    /// originals until the whole model is built would double peak memory.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        take_once_var_builder(self.tensors, dtype, device)
    }
}

/// A VarBuilder over `tensors` that hands each out once (see
/// [`StateDict::into_var_builder`]); whole-CLIP files use it too.
pub(crate) fn take_once_var_builder(tensors: HashMap<String, Tensor>, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(TakeOnce { tensors: Mutex::new(tensors) }), dtype, device.clone())
}

struct TakeOnce {
    tensors: Mutex<HashMap<String, Tensor>>,
}

impl candle_nn::var_builder::SimpleBackend for TakeOnce {
    fn get(&self, shape: Shape, name: &str, _: candle_nn::Init, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, device)?;
        if tensor.shape() != &shape {
            candle_core::bail!("{name}: shape {:?}, the model expects {shape:?}", tensor.shape());
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let taken = match self.tensors.lock() {
            Ok(mut tensors) => tensors.remove(name),
            Err(_) => candle_core::bail!("state dict lock poisoned"),
        };
        match taken {
            Some(t) => t.to_device(device)?.to_dtype(dtype),
            None => candle_core::bail!("cannot find tensor {name} (or it was read twice)"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.lock().map(|t| t.contains_key(name)).unwrap_or(false)
    }
}

/// Everything that keeps a state dict from matching the model.
#[derive(Debug, Default, Clone)]
pub struct MismatchReport {
    pub missing: Vec<ExpectedTensor>,
    pub unexpected: Vec<(String, Shape)>,
    /// (name, expected, found)
    pub wrong_shape: Vec<(String, Shape, Shape)>,
}

impl MismatchReport {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

/// How many names a one-line message lists before "and N more".
const LISTED: usize = 3;

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut s = items.iter().take(LISTED).map(show).collect::<Vec<_>>().join(", ");
    if items.len() > LISTED {
        s.push_str(&format!(" and {} more", items.len() - LISTED));
    }
    s
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing ({})",
                self.missing.len(),
                list(&self.missing, |e| e.name.clone())
            ));
        }
        if !self.wrong_shape.is_empty() {
            parts.push(format!(
                "{} with the wrong shape ({})",
                self.wrong_shape.len(),
                list(&self.wrong_shape, |(n, want, got)| format!("{n}: expected {want:?}, found {got:?}"))
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected ({})",
                self.unexpected.len(),
                list(&self.unexpected, |(n, _)| n.clone())
            ));
        }
        write!(f, "{}", parts.join("; "))
    }
}
