//! Model configuration: the decoder from the authors' training YAML, the
//! backbone from a Hugging Face `config.json` or a known preset.

mod backbone;
mod decoder;

pub use backbone::{Activation, BackboneConfig, BackboneKind};
pub use decoder::DecoderConfig;
