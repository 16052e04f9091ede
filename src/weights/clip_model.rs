//! A whole CLIP's weights (image and text towers) for zero-shot models, in
//! any of the layouts they are published in, under one set of names:
//!
//! - OpenAI's (`RN50.pt` TorchScript archives, or their state dicts) and
//!   OpenCLIP's (`open_clip_model.safetensors`, `open_clip_pytorch_model.bin`):
//!   `visual.*`, `transformer.resblocks.*`, `token_embedding`, `ln_final`,
//!   `text_projection` (OpenCLIP may prefix the text tower with `text.`);
//! - Hugging Face `CLIPModel` (`model.safetensors`): `vision_model.*`,
//!   `text_model.*`, `visual_projection`, `text_projection`.
//!
//! The canonical names are Hugging Face's for transformers (both text and
//! ViT towers) and OpenAI's `visual.*` for the ResNet (it has no HF form).
//! Converting OpenAI's transformers splits the packed `in_proj` into q, k
//! and v and transposes the two projections. Mismatches are reported under
//! the names the file stores.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use super::expected::ExpectedTensor;
use super::file::read_tensor_file;
use super::state_dict::{take_once_var_builder, MismatchReport};
use crate::error::{Error, Result};

/// The naming family of a CLIP weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipLayout {
    /// OpenAI's and OpenCLIP's names.
    OpenAi,
    HuggingFace,
}

/// Stored tensors no zero-shot model reads.
const IGNORED: [&str; 6] = ["logit_scale", "logit_bias", "input_resolution", "context_length", "vocab_size", "attn_mask"];

#[derive(Debug)]
pub struct ClipStateDict {
    path: PathBuf,
    layout: ClipLayout,
    tensors: HashMap<String, Tensor>,
    /// canonical name -> the stored name it came from.
    origin: HashMap<String, String>,
    ignored: Vec<String>,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights { path: path.to_owned(), message: message.into() }
}

impl ClipStateDict {
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = read_tensor_file(path)?;
        Self::from_tensors(path, file.tensors)
    }

    pub fn from_tensors(path: &Path, stored: Vec<(String, Tensor)>) -> Result<Self> {
        let stored: Vec<(String, Tensor)> =
            stored.into_iter().map(|(n, t)| (n.strip_prefix("module.").map(String::from).unwrap_or(n), t)).collect();
        let names: HashSet<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
        let hf = names.iter().any(|n| n.starts_with("text_model.") || n.starts_with("vision_model."));
        let openai = names.iter().any(|n| {
            n.starts_with("visual.") || n.starts_with("transformer.resblocks.") || n.starts_with("text.transformer.") || *n == "token_embedding.weight"
        });
        let layout = match (openai, hf) {
            (true, false) => ClipLayout::OpenAi,
            (false, true) => ClipLayout::HuggingFace,
            (true, true) => return Err(bad(path, "mixes OpenAI (visual.*, transformer.*) and Hugging Face (vision_model.*, text_model.*) names")),
            (false, false) => {
                let hint = if names.iter().any(|n| n.starts_with("clip_vision_model.") || n.starts_with("main_path_projections")) {
                    ": it looks like a SPACE-CLIP checkpoint (give model_type: space_clip)"
                } else {
                    ""
                };
                return Err(bad(path, format!("is not a CLIP model's weights (no visual.*, transformer.*, vision_model.* or text_model.* tensors){hint}")));
            }
        };
        let vit = names.contains("visual.proj");
        let mut dict = Self { path: path.to_owned(), layout, tensors: HashMap::new(), origin: HashMap::new(), ignored: Vec::new() };
        for (name, tensor) in stored {
            let leaf = name.rsplit('.').next().unwrap_or(&name);
            if IGNORED.contains(&name.as_str()) || IGNORED.contains(&leaf) || leaf == "position_ids" || leaf == "num_batches_tracked" {
                dict.ignored.push(name);
                continue;
            }
            let converted = match layout {
                ClipLayout::HuggingFace => vec![(name.clone(), tensor)],
                ClipLayout::OpenAi => from_openai(&name, tensor, vit).map_err(|m| bad(path, m))?,
            };
            for (canonical, t) in converted {
                if let Some(first) = dict.origin.get(&canonical) {
                    return Err(bad(path, format!("{first:?} and {name:?} are the same tensor {canonical:?}")));
                }
                dict.origin.insert(canonical.clone(), name.clone());
                dict.tensors.insert(canonical, t);
            }
        }
        dict.ignored.sort();
        Ok(dict)
    }

    /// Tensors already under canonical names (generated, not read).
    pub fn from_canonical(label: &str, tensors: Vec<(String, Tensor)>) -> Self {
        let origin = tensors.iter().map(|(n, _)| (n.clone(), n.clone())).collect();
        Self {
            path: PathBuf::from(label),
            layout: ClipLayout::HuggingFace,
            tensors: tensors.into_iter().collect(),
            origin,
            ignored: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn layout(&self) -> ClipLayout {
        self.layout
    }

    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    pub fn names(&self) -> HashSet<String> {
        self.tensors.keys().cloned().collect()
    }

    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.tensors.iter().map(|(n, t)| (n.clone(), t.dims().to_vec())).collect()
    }

    pub fn has_text_tower(&self) -> bool {
        self.tensors.keys().any(|n| n.starts_with("text_model."))
    }

    /// The name a canonical tensor has (or would have) in this file.
    pub fn stored_name(&self, canonical: &str) -> String {
        match self.origin.get(canonical) {
            Some(stored) => stored.clone(),
            None if self.layout == ClipLayout::OpenAi => to_openai(canonical),
            None => canonical.to_string(),
        }
    }

    /// `Ok` only when the file holds exactly the tensors the model reads,
    /// with their shapes; else one message naming what is wrong, in the
    /// file's own names.
    pub fn check(&self, expected: &[ExpectedTensor]) -> Result<()> {
        if !self.has_text_tower() {
            return Err(bad(&self.path, "has no text tower (text_model.* / transformer.*): zero-shot depth needs the whole CLIP, not only its image encoder"));
        }
        let mut report = MismatchReport::default();
        let wanted: HashSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
        for e in expected {
            match self.tensors.get(&e.name) {
                None => report.missing.push(ExpectedTensor { name: self.stored_name(&e.name), shape: e.shape.clone() }),
                Some(t) if t.shape() != &e.shape => {
                    let stored = self.stored_name(&e.name);
                    let name = if stored == e.name { stored } else { format!("{stored} (as {})", e.name) };
                    report.wrong_shape.push((name, e.shape.clone(), t.shape().clone()));
                }
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<(String, Shape)> = self
            .tensors
            .iter()
            .filter(|(n, _)| !wanted.contains(n.as_str()))
            .map(|(n, t)| (self.stored_name(n), t.shape().clone()))
            .collect();
        unexpected.sort_by(|a, b| a.0.cmp(&b.0));
        unexpected.dedup_by(|a, b| a.0 == b.0);
        report.unexpected = unexpected;
        if report.is_empty() {
            Ok(())
        } else {
            Err(Error::WeightMismatch(format!("{}: {report}", self.path.display())))
        }
    }

    /// Hands each tensor out once, cast to the dtype and device asked for.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        take_once_var_builder(self.tensors, dtype, device)
    }
}

/// One OpenAI/OpenCLIP tensor under canonical names (q, k, v split).
fn from_openai(name: &str, t: Tensor, vit: bool) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let name = name.strip_prefix("text.").unwrap_or(name);
    let one = |n: String, t: Tensor| Ok(vec![(n, t)]);
    if let Some(rest) = name.strip_prefix("transformer.resblocks.") {
        return block(rest, t, "text_model.encoder.layers.");
    }
    if let Some(rest) = name.strip_prefix("visual.transformer.resblocks.") {
        return block(rest, t, "vision_model.encoder.layers.");
    }
    let transpose = |t: Tensor| t.t().and_then(|t| t.contiguous()).map_err(|e| e.to_string());
    match name {
        "token_embedding.weight" => return one("text_model.embeddings.token_embedding.weight".into(), t),
        "positional_embedding" => return one("text_model.embeddings.position_embedding.weight".into(), t),
        "text_projection" => return one("text_projection.weight".into(), transpose(t)?),
        _ => {}
    }
    if let Some(rest) = name.strip_prefix("ln_final.") {
        return one(format!("text_model.final_layer_norm.{rest}"), t);
    }
    if !vit {
        // The ResNet keeps OpenAI's names.
        return one(name.to_string(), t);
    }
    match name {
        "visual.class_embedding" => return one("vision_model.embeddings.class_embedding".into(), t),
        "visual.positional_embedding" => return one("vision_model.embeddings.position_embedding.weight".into(), t),
        "visual.conv1.weight" => return one("vision_model.embeddings.patch_embedding.weight".into(), t),
        "visual.proj" => return one("visual_projection.weight".into(), transpose(t)?),
        _ => {}
    }
    if let Some(rest) = name.strip_prefix("visual.ln_pre.") {
        return one(format!("vision_model.pre_layrnorm.{rest}"), t);
    }
    if let Some(rest) = name.strip_prefix("visual.ln_post.") {
        return one(format!("vision_model.post_layernorm.{rest}"), t);
    }
    one(name.to_string(), t)
}

const BLOCK_NAMES: [(&str, &str); 5] = [
    ("attn.out_proj.", "self_attn.out_proj."),
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
];

fn block(rest: &str, t: Tensor, root: &str) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let (i, sub) = rest.split_once('.').ok_or_else(|| format!("unexpected tensor name {rest:?}"))?;
    let base = format!("{root}{i}.");
    if let Some(kind) = sub.strip_prefix("attn.in_proj_") {
        let rows = t.dim(0).map_err(|e| e.to_string())?;
        if rows % 3 != 0 {
            return Err(format!("{root}{i} attn.in_proj_{kind} has {rows} rows, not three equal q, k, v blocks"));
        }
        let n = rows / 3;
        return ["q_proj", "k_proj", "v_proj"]
            .iter()
            .enumerate()
            .map(|(j, p)| Ok((format!("{base}self_attn.{p}.{kind}"), t.narrow(0, j * n, n).and_then(|x| x.contiguous()).map_err(|e| e.to_string())?)))
            .collect();
    }
    for (from, to) in BLOCK_NAMES {
        if let Some(leaf) = sub.strip_prefix(from) {
            return Ok(vec![(format!("{base}{to}{leaf}"), t)]);
        }
    }
    Ok(vec![(format!("{base}{sub}"), t)])
}

/// The OpenAI name of a canonical tensor (for messages about missing ones).
fn to_openai(canonical: &str) -> String {
    for (root, to) in [("text_model.encoder.layers.", "transformer.resblocks."), ("vision_model.encoder.layers.", "visual.transformer.resblocks.")] {
        if let Some(rest) = canonical.strip_prefix(root) {
            let (i, sub) = rest.split_once('.').unwrap_or((rest, ""));
            for p in ["q_proj", "k_proj", "v_proj"] {
                if let Some(kind) = sub.strip_prefix(&format!("self_attn.{p}.")) {
                    return format!("{to}{i}.attn.in_proj_{kind}");
                }
            }
            for (a, b) in BLOCK_NAMES {
                if let Some(leaf) = sub.strip_prefix(b) {
                    return format!("{to}{i}.{a}{leaf}");
                }
            }
        }
    }
    let table = [
        ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
        ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
        ("text_projection.weight", "text_projection"),
        ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
        ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
        ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
        ("visual_projection.weight", "visual.proj"),
    ];
    if let Some((_, o)) = table.iter().find(|(c, _)| *c == canonical) {
        return o.to_string();
    }
    for (a, b) in [("text_model.final_layer_norm.", "ln_final."), ("vision_model.pre_layrnorm.", "visual.ln_pre."), ("vision_model.post_layernorm.", "visual.ln_post.")] {
        if let Some(leaf) = canonical.strip_prefix(a) {
            return format!("{b}{leaf}");
        }
    }
    canonical.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros(shape: &[usize]) -> Tensor {
        Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn openai_transformer_names_become_hugging_face_names() {
        let stored = vec![
            ("transformer.resblocks.0.attn.in_proj_weight".to_string(), zeros(&[24, 8])),
            ("text.transformer.resblocks.1.mlp.c_fc.bias".to_string(), zeros(&[32])),
            ("visual.proj".to_string(), zeros(&[16, 4])),
            ("text_projection".to_string(), zeros(&[8, 4])),
            ("logit_scale".to_string(), zeros(&[])),
        ];
        let d = ClipStateDict::from_tensors(Path::new("x"), stored).unwrap();
        assert_eq!(d.layout(), ClipLayout::OpenAi);
        assert_eq!(d.tensors()["text_model.encoder.layers.0.self_attn.k_proj.weight"].dims(), &[8, 8]);
        assert!(d.tensors().contains_key("text_model.encoder.layers.1.mlp.fc1.bias"));
        assert_eq!(d.tensors()["visual_projection.weight"].dims(), &[4, 16]);
        assert_eq!(d.stored_name("text_model.encoder.layers.0.self_attn.v_proj.weight"), "transformer.resblocks.0.attn.in_proj_weight");
        assert_eq!(d.stored_name("text_model.encoder.layers.3.layer_norm2.bias"), "transformer.resblocks.3.ln_2.bias");
        assert_eq!(d.ignored(), ["logit_scale"]);
    }

    #[test]
    fn foreign_files_are_named() {
        let err = ClipStateDict::from_tensors(Path::new("ckpt"), vec![("main_path_projections.0.weight".into(), zeros(&[2]))]).unwrap_err();
        assert!(err.to_string().contains("SPACE-CLIP"), "{err}");
    }
}
