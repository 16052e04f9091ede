//! The distance prompts as text features: every template x object sentence
//! of a class through the text tower, each L2-normalised, averaged, and the
//! mean normalised again (the release's `zeroshot_classifier`).

use candle_core::{DType, Tensor, D};

use super::config::DepthClipConfig;
use crate::error::{Error, Result};
use crate::model::text::{ClipTextModel, ClipTokenizer};

/// The prompts' token ids, one row per sentence, classes in order.
pub fn prompt_ids(cfg: &DepthClipConfig, tokenizer: &ClipTokenizer, context_length: usize) -> Result<Vec<Vec<u32>>> {
    let mut rows = Vec::new();
    for sentences in cfg.prompts() {
        for s in sentences {
            let ids = tokenizer.tokenize(&s, context_length).map_err(|m| Error::ModelConfig(format!("prompt {m}")))?;
            rows.push(ids);
        }
    }
    Ok(rows)
}

/// (K, E) f32: one unit vector per distance class.
pub fn class_features(cfg: &DepthClipConfig, text: &ClipTextModel, tokenizer: &ClipTokenizer) -> Result<Tensor> {
    let ids = prompt_ids(cfg, tokenizer, text.config().context_length)?;
    let k = cfg.depth_classes.len();
    let per_class = ids.len() / k;
    let e = text.encode(&ids)?.to_dtype(DType::F32)?;
    let e = unit_rows(&e)?;
    let dim = e.dim(1)?;
    let mean = e.reshape((k, per_class, dim))?.mean(1)?;
    Ok(unit_rows(&mean)?)
}

fn unit_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}
