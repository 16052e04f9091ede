//! DepthBLIP-2's adaptive depth bins: a small MLP over the bin vector b
//! (the release's `nn.Sequential`: Linear 7-64-128-256-128-64-7 with
//! ReLUs, dropout, a sigmoid), bins = min(b) + mlp(b)^2 * (max(b) - min(b)).
//! Read from the release's `.pth` (its two layouts, told by the Linear
//! layers' indices) or a `.safetensors` with the same names, as
//! `clip_depth train` writes it.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::weights::read_tensor_file;

/// Widths between the input and output (both K).
pub const HIDDEN: [usize; 5] = [64, 128, 256, 128, 64];

/// Sequential indices of the six Linear layers: the release's `flag == 2`
/// (main.py's) and `flag == 1` layouts.
pub const LAYOUT_FLAG2: [usize; 6] = [0, 2, 4, 7, 10, 12];
pub const LAYOUT_FLAG1: [usize; 6] = [0, 2, 5, 8, 11, 14];

/// The MLP's weights, (out, in) and (out), in f32 on the host.
#[derive(Debug, Clone)]
pub struct BinsMlp {
    layers: Vec<(Tensor, Tensor)>,
    /// The Sequential indices the file used (kept when saving back).
    pub indices: [usize; 6],
}

impl BinsMlp {
    pub fn from_file(path: &Path, classes: usize) -> Result<Self> {
        let file = read_tensor_file(path)?;
        let bad = |m: String| Error::Weights { path: path.to_owned(), message: m };
        let tensors: std::collections::HashMap<String, Tensor> =
            file.tensors.into_iter().map(|(n, t)| (n.strip_prefix("mlp.").unwrap_or(&n).to_string(), t)).collect();
        let indices = if tensors.contains_key("4.weight") { LAYOUT_FLAG2 } else { LAYOUT_FLAG1 };
        let widths: Vec<usize> = std::iter::once(classes).chain(HIDDEN).chain(std::iter::once(classes)).collect();
        let mut layers = Vec::new();
        let mut used = 0;
        for (l, &i) in indices.iter().enumerate() {
            let (n_in, n_out) = (widths[l], widths[l + 1]);
            let get = |suffix: &str, shape: &[usize]| -> Result<Tensor> {
                let name = format!("{i}.{suffix}");
                let t = tensors.get(&name).ok_or_else(|| bad(format!("the bins MLP has no {name} (Linear {n_in} -> {n_out})")))?;
                if t.dims() != shape {
                    return Err(bad(format!("{name}: shape {:?}, expected {shape:?} for {classes} depth classes", t.dims())));
                }
                Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
            };
            layers.push((get("weight", &[n_out, n_in])?, get("bias", &[n_out])?));
            used += 2;
        }
        if tensors.len() != used {
            let mut extra: Vec<&String> = tensors.keys().filter(|n| !indices.iter().any(|i| n.starts_with(&format!("{i}.")))).collect();
            extra.sort();
            return Err(bad(format!("unexpected tensors in the bins MLP: {extra:?}")));
        }
        Ok(Self { layers, indices })
    }

    /// Wraps layers (weights (out, in), biases) in order.
    pub fn from_layers(layers: Vec<(Tensor, Tensor)>) -> Self {
        Self { layers, indices: LAYOUT_FLAG2 }
    }

    /// The layers under the flag-2 layout's names (`0.weight`, ...).
    pub fn flag2_tensors(&self) -> std::collections::HashMap<String, Tensor> {
        let mut out = std::collections::HashMap::new();
        for ((w, b), i) in self.layers.iter().zip(LAYOUT_FLAG2) {
            out.insert(format!("{i}.weight"), w.clone());
            out.insert(format!("{i}.bias"), b.clone());
        }
        out
    }

    /// mlp(b) in evaluation mode (dropout off), f32 like PyTorch.
    pub fn forward(&self, bins: &[f64]) -> Result<Vec<f32>> {
        let k = bins.len();
        let mut x = Tensor::from_vec(bins.iter().map(|&b| b as f32).collect::<Vec<_>>(), (1, k), &Device::Cpu)?;
        let n = self.layers.len();
        for (l, (w, b)) in self.layers.iter().enumerate() {
            x = x.matmul(&w.t()?)?.broadcast_add(b)?;
            x = if l + 1 < n { x.relu()? } else { candle_nn::ops::sigmoid(&x)? };
        }
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The adapted bins: min + mlp(b)^2 * (max - min).
    pub fn bins(&self, bins: &[f64]) -> Result<Vec<f64>> {
        let (lo, hi) = range(bins);
        let m = self.forward(bins)?;
        Ok(m.iter().map(|&v| (lo as f32 + v * v * (hi - lo) as f32) as f64).collect())
    }
}

pub fn range(bins: &[f64]) -> (f64, f64) {
    (bins.iter().copied().fold(f64::INFINITY, f64::min), bins.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}
