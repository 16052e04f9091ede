//! Depth models in candle, one folder per family, over shared backbones and
//! blocks. SPACE-CLIP: a frozen CLIP (or SigLIP) vision transformer read at
//! several layers, and the dual-pathway decoder with FiLM conditioning.
//! DepthCLIP: a frozen CLIP (ResNet or ViT image tower and the text tower)
//! comparing image features with prompts about distance, no training.
//! DepthBLIP-2: BLIP-2's Q-Former fusing the image with the same prompts,
//! with depth bins optionally adapted from a few images.
//!
//! Adding a family is one folder (its architecture, config, loading and a
//! `family.rs` implementing [`family::Family`] and [`family::DepthNet`]) and
//! one registration ([`family::ModelFamily`]). What families share:
//! [`input`] (frames in, depth out), [`prompt_bins`] (prompts, bins and the
//! bin heads' readings), the backbones ([`vision`], [`blip2`], [`text`]).

pub mod blip2;
pub mod depthblip2;
pub mod depthclip;
pub mod family;
pub mod input;
pub mod layers;
pub mod nn;
pub mod prompt_bins;
pub mod shapes;
pub mod spaceclip;
pub mod text;
pub mod vision;

pub use spaceclip::{DecoderConfig, Precision, SpaceClip, SpaceClipDecoder, TrainOptions, TrainableSpaceClip, BACKBONE_PREFIX};
pub use depthblip2::{DepthBlip2, DepthBlip2Config};
pub use depthclip::{DepthClip, DepthClipConfig};
pub use family::{DepthNet, EvalInput, Family, ModelFamily, ModelFiles, ModelOverrides, Training};
pub use vision::{
    Activation, BackboneConfig, BackboneKind, ClipVisionTransformer, ModifiedResNet, ResnetConfig,
    SiglipVisionTransformer, VisionBackbone, VisionOutput,
};
