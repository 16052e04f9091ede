//! The whole SPACE-CLIP model, named as the authors' checkpoints name it:
//! the backbone under `clip_vision_model.vision_model.`, the decoder at the root.

mod blocks;
mod config;
mod decoder;
mod expected;
pub mod family;
mod film;
mod infer;
mod random;
mod trainable;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use config::DecoderConfig;
pub use decoder::SpaceClipDecoder;
pub use expected::expected_tensors;
pub use family::backbone_config;
pub use infer::{infer_architecture, InferredArchitecture};
pub use random::random_state_dict;
pub use trainable::{Precision, TrainOptions, TrainableSpaceClip};

use crate::model::vision::{VisionBackbone, VisionOutput};
use crate::model::BackboneConfig;

/// Where the backbone's tensors live in a SPACE-CLIP state dict.
pub use crate::weights::BACKBONE_PREFIX;

#[derive(Debug, Clone)]
pub struct SpaceClip {
    backbone: VisionBackbone,
    decoder: SpaceClipDecoder,
    taps: Vec<usize>,
    backbone_cfg: BackboneConfig,
    decoder_cfg: DecoderConfig,
}

impl SpaceClip {
    pub fn new(vb: VarBuilder, backbone_cfg: &BackboneConfig, decoder_cfg: &DecoderConfig) -> Result<Self> {
        decoder_cfg
            .check_taps(backbone_cfg.num_hidden_layers)
            .map_err(candle_core::Error::Msg)?;
        Ok(Self {
            backbone: VisionBackbone::new(vb.pp(BACKBONE_PREFIX), backbone_cfg)?,
            decoder: SpaceClipDecoder::new(vb, decoder_cfg, backbone_cfg.hidden_size)?,
            taps: SpaceClipDecoder::taps(decoder_cfg),
            backbone_cfg: backbone_cfg.clone(),
            decoder_cfg: decoder_cfg.clone(),
        })
    }

    pub fn backbone_config(&self) -> &BackboneConfig {
        &self.backbone_cfg
    }

    pub fn decoder_config(&self) -> &DecoderConfig {
        &self.decoder_cfg
    }

    /// The frozen encoder: normalised pixels (B, 3, S, S) -> the decoder's
    /// taps and the pooler.
    pub fn encode(&self, pixels: &Tensor) -> Result<VisionOutput> {
        self.backbone.forward(pixels, &self.taps)
    }

    /// Raw hidden states at any taps (HF numbering), for inspection and tests.
    pub fn hidden_states(&self, pixels: &Tensor, taps: &[usize]) -> Result<VisionOutput> {
        self.backbone.forward(pixels, taps)
    }

    /// The decoder: encoder output -> depth (B, 1, S, S) in metres, unclamped.
    pub fn decode(&self, encoded: &VisionOutput) -> Result<Tensor> {
        let tokens = encoded
            .hidden_states
            .iter()
            .map(|h| self.backbone.patch_tokens(h))
            .collect::<Result<Vec<_>>>()?;
        self.decoder.forward(&tokens, &encoded.pooler)
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(pixels)?)
    }
}
