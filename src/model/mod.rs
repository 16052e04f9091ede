//! Depth models in candle, one folder per family, over shared backbones and
//! blocks. SPACE-CLIP: a frozen CLIP (or SigLIP) vision transformer read at
//! several layers, and the dual-pathway decoder with FiLM conditioning.
//! DepthCLIP: a frozen CLIP (ResNet or ViT image tower and the text tower)
//! comparing image features with prompts about distance, no training.

pub mod depthclip;
pub mod layers;
pub mod nn;
pub mod spaceclip;
pub mod text;
pub mod vision;

pub use spaceclip::{DecoderConfig, Precision, SpaceClip, SpaceClipDecoder, TrainOptions, TrainableSpaceClip, BACKBONE_PREFIX};
pub use depthclip::{DepthClip, DepthClipConfig};
pub use vision::{
    Activation, BackboneConfig, BackboneKind, ClipVisionTransformer, ModifiedResNet, ResnetConfig,
    SiglipVisionTransformer, VisionBackbone, VisionOutput,
};
