//! BLIP-2 weights under LAVIS's names, from either release format:
//!
//! * LAVIS: the Q-Former checkpoint (`blip2_pretrained.pth`,
//!   `blip2_pretrained_vitL.pth`: `{"model": ...}` without the frozen
//!   tower) and the tower's own file (`eva_vit_g.pth`, `clip_vit_L.pth`,
//!   read under `visual_encoder.`); a checkpoint that holds the tower needs
//!   no second file.
//! * Hugging Face `Blip2ForImageTextRetrieval` (`model.safetensors`), its
//!   names mapped to LAVIS's (`q_bias`/`v_bias`, or transformers 5's
//!   packed `qkv.bias` split with its zero k part checked).
//!
//! Tensors DepthBLIP-2 never reads (the MLM head, projections, ITM head,
//! `temp`, OpenAI's `ln_post`/`proj`) are set aside by name; everything
//! else must match the model exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::expected::ExpectedTensor;
use super::file::read_tensor_file;
use super::state_dict::StateDict;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blip2Format {
    Lavis,
    HuggingFace,
}

#[derive(Debug)]
pub struct Blip2StateDict {
    path: PathBuf,
    format: Blip2Format,
    tensors: HashMap<String, Tensor>,
    /// LAVIS name -> (file, stored name), for messages.
    origin: HashMap<String, (PathBuf, String)>,
    ignored: Vec<String>,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights { path: path.to_owned(), message: message.into() }
}

/// LAVIS's tower file names (OpenAI's or EVA's state dict).
fn is_tower_name(name: &str) -> bool {
    ["cls_token", "pos_embed", "patch_embed.", "blocks.", "conv1.", "class_embedding", "positional_embedding", "ln_pre.", "transformer.", "ln_post.", "proj", "norm.", "fc_norm.", "head."]
        .iter()
        .any(|p| name == *p || name.starts_with(p))
}

/// Stored names DepthBLIP-2 does not read.
fn is_unused(name: &str) -> bool {
    name.starts_with("Qformer.cls.")
        || name.ends_with("position_ids")
        || [
            "vision_proj.",
            "text_proj.",
            "itm_head.",
            "vision_projection.",
            "text_projection.",
            // OpenAI's and EVA-CLIP's heads, which LAVIS's towers do not have.
            "visual_encoder.ln_post.",
            "visual_encoder.norm.",
            "visual_encoder.fc_norm.",
            "visual_encoder.head.",
            // InstructBLIP's projection into its language model, and the
            // language model's own tensors (its trimmed files keep buffers).
            "llm_proj.",
            "llm_model.",
            "t5_proj.",
            "t5_model.",
        ]
            .iter()
            .any(|p| name.starts_with(p))
        || name == "temp"
        || name == "visual_encoder.proj"
}

/// A Hugging Face name -> LAVIS's; `None` for names with no counterpart.
fn hf_to_lavis(name: &str) -> Option<String> {
    let fixed = [
        ("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
        ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
        ("query_tokens", "query_tokens"),
    ];
    if let Some((_, l)) = fixed.iter().find(|(h, _)| *h == name) {
        return Some(l.to_string());
    }
    let prefixes = [
        ("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj."),
        ("vision_model.post_layernorm.", "ln_vision."),
        ("qformer.layernorm.", "Qformer.bert.embeddings.LayerNorm."),
        ("embeddings.word_embeddings.", "Qformer.bert.embeddings.word_embeddings."),
        ("embeddings.position_embeddings.", "Qformer.bert.embeddings.position_embeddings."),
    ];
    if let Some((h, l)) = prefixes.iter().find(|(h, _)| name.starts_with(h)) {
        return Some(format!("{l}{}", &name[h.len()..]));
    }
    if let Some(rest) = name.strip_prefix("vision_model.encoder.layers.") {
        let (i, tail) = rest.split_once('.')?;
        let tail = match tail {
            t if t.starts_with("layer_norm1.") => t.replacen("layer_norm1.", "norm1.", 1),
            t if t.starts_with("layer_norm2.") => t.replacen("layer_norm2.", "norm2.", 1),
            t if t.starts_with("self_attn.projection.") => t.replacen("self_attn.projection.", "attn.proj.", 1),
            t if t.starts_with("self_attn.") => t.replacen("self_attn.", "attn.", 1),
            t if t.starts_with("mlp.") => t.to_string(),
            _ => return None,
        };
        return Some(format!("visual_encoder.blocks.{i}.{tail}"));
    }
    if let Some(rest) = name.strip_prefix("qformer.encoder.layer.") {
        let (i, tail) = rest.split_once('.')?;
        let tail = tail.replacen("attention.attention.", "attention.self.", 1);
        return Some(format!("Qformer.bert.encoder.layer.{i}.{tail}"));
    }
    None
}

impl Blip2StateDict {
    /// The checkpoint and, for LAVIS, the tower's file.
    pub fn from_files(checkpoint: &Path, vision: Option<&Path>) -> Result<Self> {
        let main = read_tensor_file(checkpoint)?;
        let format = if main.tensors.iter().any(|(n, _)| n.starts_with("qformer.") || n.starts_with("vision_model.")) {
            Blip2Format::HuggingFace
        } else if main.tensors.iter().any(|(n, _)| n.starts_with("Qformer.") || n == "query_tokens") {
            Blip2Format::Lavis
        } else {
            return Err(bad(checkpoint, "neither a LAVIS BLIP-2 checkpoint (Qformer.*, query_tokens) nor a Hugging Face Blip2ForImageTextRetrieval (qformer.*, vision_model.*)"));
        };
        let mut dict = Self { path: checkpoint.to_owned(), format, tensors: HashMap::new(), origin: HashMap::new(), ignored: Vec::new() };
        for (stored, t) in main.tensors {
            match format {
                Blip2Format::Lavis => dict.insert(checkpoint, &stored, stored.clone(), t)?,
                Blip2Format::HuggingFace => dict.insert_hf(checkpoint, &stored, t)?,
            }
        }
        if let Some(vision) = vision {
            if format == Blip2Format::HuggingFace {
                return Err(bad(vision, "separate vision weights are LAVIS's layout: a Hugging Face BLIP-2 file holds its tower"));
            }
            let file = read_tensor_file(vision)?;
            for (stored, t) in file.tensors {
                let name = stored.strip_prefix("visual_encoder.").unwrap_or(&stored).to_string();
                if !is_tower_name(&name) {
                    return Err(bad(vision, format!("{stored:?} is not an image tower tensor (EVA's blocks.* or CLIP's transformer.*)")));
                }
                dict.insert(vision, &stored, format!("visual_encoder.{name}"), t)?;
            }
        }
        dict.ignored.sort();
        Ok(dict)
    }

    fn insert(&mut self, path: &Path, stored: &str, name: String, t: Tensor) -> Result<()> {
        if is_unused(&name) {
            self.ignored.push(stored.to_string());
            return Ok(());
        }
        if let Some((first_path, first)) = self.origin.get(&name) {
            let message = if first_path == path {
                format!("{first:?} and {stored:?} are the same tensor {name:?}")
            } else {
                format!("{name:?} is in both {} and {}: give the tower's file only when the checkpoint lacks it", first_path.display(), path.display())
            };
            return Err(bad(path, message));
        }
        self.origin.insert(name.clone(), (path.to_owned(), stored.to_string()));
        self.tensors.insert(name, t);
        Ok(())
    }

    fn insert_hf(&mut self, path: &Path, stored: &str, t: Tensor) -> Result<()> {
        if is_unused(stored) {
            self.ignored.push(stored.to_string());
            return Ok(());
        }
        if let Some(base) = stored.strip_prefix("vision_model.encoder.layers.").and_then(|r| r.strip_suffix(".self_attn.qkv.bias")) {
            // transformers 5: (q, 0, v) packed.
            let d = t.dim(0)? / 3;
            let k = t.narrow(0, d, d)?.to_dtype(DType::F32)?.abs()?.max(0)?.to_scalar::<f32>()?;
            if k != 0.0 {
                return Err(bad(path, format!("{stored}: the k part of the bias is not zero (EVA has no k bias)")));
            }
            let prefix = format!("visual_encoder.blocks.{base}.attn.");
            self.insert(path, stored, format!("{prefix}q_bias"), t.narrow(0, 0, d)?)?;
            return self.insert(path, stored, format!("{prefix}v_bias"), t.narrow(0, 2 * d, d)?);
        }
        match hf_to_lavis(stored) {
            Some(name) => self.insert(path, stored, name, t),
            None => Err(bad(path, format!("{stored:?} is not a Blip2ForImageTextRetrieval tensor DepthBLIP-2 knows (is this BLIP-2 with a language model? use the retrieval checkpoint)"))),
        }
    }

    pub fn format(&self) -> Blip2Format {
        self.format
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.tensors.iter().map(|(n, t)| (n.clone(), t.dims().to_vec())).collect()
    }

    pub fn names(&self) -> std::collections::HashSet<String> {
        self.tensors.keys().cloned().collect()
    }

    /// Sets aside the tower layers from `layers` on (LAVIS runs 23 of the
    /// CLIP file's 24).
    pub fn drop_tower_layers_from(&mut self, layers: usize) {
        let beyond = |n: &str| {
            ["visual_encoder.transformer.resblocks.", "visual_encoder.blocks."].iter().any(|p| {
                n.strip_prefix(p).and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i >= layers)
            })
        };
        let names: Vec<String> = self.tensors.keys().filter(|n| beyond(n)).cloned().collect();
        for n in names {
            self.tensors.remove(&n);
            if let Some((_, stored)) = self.origin.remove(&n) {
                self.ignored.push(stored);
            }
        }
    }

    /// `Ok` only for an exact match; the message names tensors as stored.
    pub fn check(&self, expected: &[ExpectedTensor]) -> Result<()> {
        let report = StateDict::from_parts(self.tensors.clone(), Vec::new()).mismatches(expected);
        if report.is_empty() {
            return Ok(());
        }
        let stored = |n: &str| match self.origin.get(n) {
            Some((_, s)) if s != n => format!("{s} (as {n})"),
            _ => n.to_string(),
        };
        let mut report = report;
        for (n, _) in report.unexpected.iter_mut() {
            *n = stored(n);
        }
        for (n, _, _) in report.wrong_shape.iter_mut() {
            *n = stored(n);
        }
        Err(Error::WeightMismatch(format!("{}: {report}", self.path.display())))
    }

    /// Hands each tensor out once, cast to `dtype` (fp16 files to f32) on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        StateDict::from_parts(self.tensors, self.ignored).into_var_builder(dtype, device)
    }
}
