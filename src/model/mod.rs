//! Depth models in candle, one folder per family, over shared backbones and
//! blocks. SPACE-CLIP: a frozen CLIP (or SigLIP) vision transformer read at
//! several layers, and the dual-pathway decoder with FiLM conditioning.

pub mod layers;
pub mod nn;
pub mod spaceclip;
pub mod vision;

pub use spaceclip::{DecoderConfig, Precision, SpaceClip, SpaceClipDecoder, TrainOptions, TrainableSpaceClip, BACKBONE_PREFIX};
pub use vision::{
    Activation, BackboneConfig, BackboneKind, ClipVisionTransformer, SiglipVisionTransformer, VisionBackbone,
    VisionOutput,
};
