//! The backbone as the decoder sees it: hidden states at chosen taps, their
//! patch tokens as maps, and a pooled image embedding; and CLIP's ResNet
//! image tower (`resnet`), which zero-shot depth reads as a feature map.

mod clip;
pub(crate) mod config;
pub(crate) mod encoder;
pub(crate) mod patch_embedding;
mod resnet;
mod siglip;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use clip::ClipVisionTransformer;
pub use config::{Activation, BackboneConfig, BackboneKind};
pub use resnet::{AttentionPool2d, ModifiedResNet, ResnetConfig};
pub use siglip::SiglipVisionTransformer;

#[derive(Debug, Clone)]
pub enum VisionBackbone {
    Clip(ClipVisionTransformer),
    Siglip(SiglipVisionTransformer),
}

/// What one forward pass yields.
#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// Hidden states (B, T, D) in the order the taps were asked for.
    pub hidden_states: Vec<Tensor>,
    /// (B, D)
    pub pooler: Tensor,
}

impl VisionBackbone {
    /// `vb` points at the HF `vision_model` prefix.
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        Ok(match cfg.kind {
            BackboneKind::Clip => Self::Clip(ClipVisionTransformer::new(vb, cfg)?),
            BackboneKind::Siglip => Self::Siglip(SiglipVisionTransformer::new(vb, cfg)?),
        })
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Clip(m) => m.num_layers(),
            Self::Siglip(m) => m.num_layers(),
        }
    }

    /// Hidden states at `taps` (HF numbering, 0..=num_layers) and the pooler.
    pub fn forward(&self, pixels: &Tensor, taps: &[usize]) -> Result<VisionOutput> {
        let (kept, pooler) = match self {
            Self::Clip(m) => m.forward(pixels, taps)?,
            Self::Siglip(m) => m.forward(pixels, taps)?,
        };
        let hidden_states = kept
            .into_iter()
            .zip(taps)
            .map(|(h, tap)| {
                h.ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "tap {tap} is beyond the backbone's {} layers",
                        self.num_layers()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(VisionOutput { hidden_states, pooler })
    }

    /// The patch tokens of a hidden state (CLIP drops its class token).
    pub fn patch_tokens(&self, h: &Tensor) -> Result<Tensor> {
        match self {
            Self::Clip(_) => ClipVisionTransformer::patch_tokens(h),
            Self::Siglip(_) => Ok(h.clone()),
        }
    }
}

/// Patch tokens (B, N, D) as a feature map (B, D, g, g), row-major patches.
pub fn tokens_to_map(tokens: &Tensor) -> Result<Tensor> {
    let (b, n, d) = tokens.dims3()?;
    let g = (n as f64).sqrt().round() as usize;
    if g * g != n {
        candle_core::bail!("{n} patch tokens do not form a square grid");
    }
    tokens.transpose(1, 2)?.contiguous()?.reshape((b, d, g, g))
}
