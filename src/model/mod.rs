//! SPACE-CLIP in candle: a frozen CLIP (or SigLIP) vision transformer read at
//! several layers, and the dual-pathway decoder with FiLM conditioning.

mod attention_cpu;
mod avx512;
mod clip_vision;
mod conv;
mod conv_transpose;
mod gemm_cpu;
mod decoder;
mod encoder;
mod patch_embedding;
mod layers;
mod siglip_vision;
mod space_clip;
mod vision;

pub use clip_vision::ClipVisionTransformer;
pub use decoder::SpaceClipDecoder;
pub use siglip_vision::SiglipVisionTransformer;
pub use space_clip::{SpaceClip, BACKBONE_PREFIX};
pub use vision::{VisionBackbone, VisionOutput};
