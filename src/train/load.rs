//! Builds a trainable model from its configs and weight files: the frozen
//! backbone from a full checkpoint or a Hugging Face CLIP file (checked
//! strictly, as for inference), the trainable part from the same
//! checkpoint (`--init`) or freshly initialised from a seed. The model
//! family comes from the config's `model_type`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::ModelFiles;
use crate::model::nn::{InitSource, TrainableModel};
use crate::model::{DecoderConfig, Precision, TrainOptions, TrainableSpaceClip};
use crate::model::spaceclip::expected_tensors;
use crate::weights::{is_backbone, read_tensor_file, training_name};

/// Where a training run's weights come from.
#[derive(Debug, Clone, Default)]
pub struct WeightSources {
    /// The training YAML (for error messages and the preset lookup).
    pub config: PathBuf,
    /// A checkpoint to start from (the whole model, or the decoder when
    /// the backbone comes from `clip_weights`).
    pub init: Option<PathBuf>,
    pub clip_weights: Option<PathBuf>,
    pub clip_config: Option<PathBuf>,
}

fn read_named(path: &Path, into: &mut HashMap<String, Tensor>, origin: &mut HashMap<String, PathBuf>) -> Result<()> {
    for (stored, tensor) in read_tensor_file(path)?.tensors {
        let Some(name) = training_name(&stored) else { continue };
        if let Some(first) = origin.get(&name) {
            let message = if first == path {
                format!("{name:?} is stored twice")
            } else {
                format!("{name:?} is in both {} and {}", first.display(), path.display())
            };
            return Err(Error::Weights { path: path.to_owned(), message });
        }
        origin.insert(name.clone(), path.to_owned());
        into.insert(name, tensor);
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = names.len().saturating_sub(3);
    if more > 0 { format!("{} (and {more} more)", shown.join(", ")) } else { shown.join(", ") }
}

/// Loads a SPACE-CLIP model for training (the only trainable family so
/// far; `model_type` other than `space_clip` is refused by name).
pub fn load_trainable(
    sources: &WeightSources,
    decoder: &DecoderConfig,
    opts: TrainOptions,
    seed: u64,
    device: &Device,
    precision: Precision,
) -> Result<Box<dyn TrainableModel>> {
    let files = ModelFiles {
        config: sources.config.clone(),
        checkpoint: sources.init.clone().unwrap_or_default(),
        clip_weights: sources.clip_weights.clone(),
        clip_config: sources.clip_config.clone(),
    };
    let backbone_cfg = crate::model::spaceclip::backbone_config(&files, decoder)?;
    let mut tensors = HashMap::new();
    let mut origin = HashMap::new();
    for path in sources.init.iter().chain(&sources.clip_weights) {
        read_named(path, &mut tensors, &mut origin)?;
    }
    let (backbone, rest): (HashMap<_, _>, HashMap<_, _>) = tensors.into_iter().partition(|(n, _)| is_backbone(n));
    // The backbone must match the architecture exactly, as for inference.
    let expected: Vec<_> =
        expected_tensors(&backbone_cfg, decoder, &HashSet::new())?.into_iter().filter(|e| is_backbone(&e.name)).collect();
    let missing: Vec<String> = expected.iter().filter(|e| !backbone.contains_key(&e.name)).map(|e| e.name.clone()).collect();
    if missing.len() == expected.len() {
        return Err(Error::WeightMismatch(
            "no backbone weights: give --clip-weights (a Hugging Face CLIP model.safetensors) or --init with a full checkpoint".into(),
        ));
    }
    if !missing.is_empty() {
        return Err(Error::WeightMismatch(format!("{} backbone tensors missing: {}", missing.len(), list(&missing))));
    }
    let known: HashSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let mut unexpected: Vec<String> = backbone.keys().filter(|n| !known.contains(n.as_str())).cloned().collect();
    unexpected.sort();
    if !unexpected.is_empty() {
        return Err(Error::WeightMismatch(format!("unexpected backbone tensors: {}", list(&unexpected))));
    }
    for e in &expected {
        let t = &backbone[&e.name];
        if t.shape() != &e.shape {
            return Err(Error::WeightMismatch(format!("{} is {:?}, the model needs {:?}", e.name, t.shape(), e.shape)));
        }
    }
    let source = if sources.init.is_some() { InitSource::tensors(rest) } else { InitSource::random(seed) };
    let model = TrainableSpaceClip::new(backbone, &backbone_cfg, decoder, opts, &source, device, precision)
        .map_err(|e| Error::WeightMismatch(Error::from(e).to_string()))?;
    let unused = source.unused();
    if !unused.is_empty() {
        return Err(Error::WeightMismatch(format!(
            "the initial checkpoint has tensors this model does not: {}",
            list(&unused)
        )));
    }
    Ok(Box::new(model))
}
