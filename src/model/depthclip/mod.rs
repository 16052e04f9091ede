//! DepthCLIP ("Can Language Understand Depth?", ACM MM 2022): metric depth
//! from a frozen CLIP and words, no training. The image tower's tokens are
//! compared with the text features of "This object is {distance}" prompts
//! for seven distance words; the softmax over them weights seven depth
//! bins. Text features are computed once at load and the text tower freed.

mod architecture;
pub mod family;
pub(crate) mod config;
mod head;
mod prompts;
mod random;
mod vit;

use candle_core::{DType, Device, Result as CandleResult, Tensor};
use candle_nn::VarBuilder;

pub use architecture::{ClipArchitecture, ImageTowerConfig};
pub use config::{DepthClipConfig, VitPositions, IMAGENET_MEAN, IMAGENET_STD};
pub use head::DepthHead;
pub use prompts::prompt_ids;
pub use random::random_clip_state_dict;
pub use vit::VitTokens;

use crate::error::{Error, Result};
pub use crate::model::prompt_bins::{average_mirrored, with_mirrored};
use crate::model::text::{ClipTextModel, ClipTokenizer};
use crate::model::{BackboneConfig, BackboneKind, ModifiedResNet};

/// The image tower as DepthCLIP reads it: tokens on a grid.
#[derive(Debug, Clone)]
pub enum ImageTower {
    /// The last stage's map, one token per 32 x 32 pixels (attention pool unused).
    Resnet(ModifiedResNet),
    Vit(VitTokens),
}

impl ImageTower {
    /// `vb` points at the root of the CLIP state dict (canonical names).
    pub fn new(vb: VarBuilder, cfg: &ImageTowerConfig, positions: VitPositions) -> CandleResult<Self> {
        Ok(match cfg {
            ImageTowerConfig::Resnet(r) => Self::Resnet(ModifiedResNet::new(vb.pp("visual"), r, false)?),
            ImageTowerConfig::Vit { vision, embed_dim } => Self::Vit(VitTokens::new(vb, vision, *embed_dim, positions)?),
        })
    }

    /// Normalised pixels (B, 3, H, W) -> tokens (B, N, C) and the grid (gh, gw).
    pub fn tokens(&self, pixels: &Tensor) -> CandleResult<(Tensor, (usize, usize))> {
        match self {
            Self::Resnet(m) => {
                let map = m.feature_map(pixels)?;
                let (b, c, gh, gw) = map.dims4()?;
                Ok((map.reshape((b, c, gh * gw))?.transpose(1, 2)?.contiguous()?, (gh, gw)))
            }
            Self::Vit(m) => {
                let (_, _, h, w) = pixels.dims4()?;
                let p = m.patch_size();
                Ok((m.forward(pixels)?, (h / p, w / p)))
            }
        }
    }
}

/// Both towers, as a checkpoint holds them: what strict loading checks.
pub fn declare_towers(vb: VarBuilder, arch: &ClipArchitecture) -> CandleResult<()> {
    ClipTextModel::new(vb.clone(), &arch.text)?;
    ImageTower::new(vb, &arch.image, VitPositions::SequenceLinear)?;
    Ok(())
}

/// The image tower's output for a batch.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// (B or 2B with the mirror images, N, C).
    pub tokens: Tensor,
    /// (gh, gw)
    pub grid: (usize, usize),
    /// Frames in the batch.
    pub batch: usize,
}

#[derive(Debug, Clone)]
pub struct DepthClip {
    image: ImageTower,
    head: DepthHead,
    cfg: DepthClipConfig,
    arch: ClipArchitecture,
    /// What a caller feeding square inputs should feed (see [`Self::input_description`]).
    description: BackboneConfig,
}

impl DepthClip {
    /// Builds the text tower on the CPU in f32, turns the prompts into text
    /// features, frees it, then builds the image tower from `vb` (the
    /// model's device and dtype).
    pub fn new(vb: VarBuilder, cfg: &DepthClipConfig, arch: &ClipArchitecture, tokenizer: &ClipTokenizer) -> Result<Self> {
        cfg.validate().map_err(Error::ModelConfig)?;
        arch.validate().map_err(Error::ModelConfig)?;
        let stride = arch.channel_stride().map_err(Error::ModelConfig)?;
        let step = arch.image.stride();
        if !cfg.input_height.is_multiple_of(step) || !cfg.input_width.is_multiple_of(step) {
            return Err(Error::ModelConfig(format!(
                "input_height x input_width {}x{} must be multiples of {step} (the image tower's {})",
                cfg.input_height,
                cfg.input_width,
                if matches!(arch.image, ImageTowerConfig::Resnet(_)) { "output stride" } else { "patch size" }
            )));
        }
        if tokenizer.vocab_size() > arch.text.vocab_size {
            return Err(Error::ModelConfig(format!(
                "the tokenizer's vocabulary has {} tokens, the text tower's {}: they are not one CLIP's",
                tokenizer.vocab_size(),
                arch.text.vocab_size
            )));
        }
        let text_vb = vb.clone().set_dtype(DType::F32).set_device(Device::Cpu);
        let text = ClipTextModel::new(text_vb, &arch.text)?;
        let features = prompts::class_features(cfg, &text, tokenizer)?;
        drop(text);
        let image = ImageTower::new(vb.clone(), &arch.image, cfg.vit_position_embedding)?;
        let features = features.t()?.contiguous()?.to_device(vb.device())?;
        let head = DepthHead::new(features, &cfg.bins(), cfg.logit_scale / cfg.temperature, stride)?;
        Ok(Self { image, head, cfg: cfg.clone(), arch: arch.clone(), description: describe(cfg, arch) })
    }

    pub fn config(&self) -> &DepthClipConfig {
        &self.cfg
    }

    pub fn architecture(&self) -> &ClipArchitecture {
        &self.arch
    }

    /// (E, K) unit text features of the distance classes.
    pub fn text_features(&self) -> &Tensor {
        self.head.text_features()
    }

    /// The tower's raw tokens (B, N, C) and grid (before normalisation).
    pub fn image_tokens(&self, pixels: &Tensor) -> CandleResult<(Tensor, (usize, usize))> {
        self.image.tokens(pixels)
    }

    /// Tokens -> depth on the token grid (B, 1, gh, gw), f32.
    pub fn head(&self, tokens: &Tensor, grid: (usize, usize)) -> CandleResult<Tensor> {
        self.head.forward(tokens, grid)
    }

    /// The image tower on the frames (and their mirror images with
    /// `flip_average`): the encoder stage.
    pub fn encode(&self, pixels: &Tensor) -> CandleResult<Encoded> {
        let batch = pixels.dim(0)?;
        let (tokens, grid) = self.image.tokens(&with_mirrored(pixels, self.cfg.flip_average)?)?;
        Ok(Encoded { tokens, grid, batch })
    }

    /// The head: depth on the token grid (B, 1, gh, gw) in metres, f32,
    /// averaged with the mirror image's with `flip_average`.
    pub fn decode(&self, encoded: &Encoded) -> CandleResult<Tensor> {
        average_mirrored(self.head.forward(&encoded.tokens, encoded.grid)?, encoded.batch, self.cfg.flip_average)
    }

    /// As [`Self::decode`], with the end classes' margin on the same grid
    /// ([`crate::model::prompt_bins::edge_margin`]).
    pub fn decode_with_edges(&self, encoded: &Encoded) -> CandleResult<(Tensor, Tensor)> {
        let (depth, edge) = self.head.forward_with_edges(&encoded.tokens, encoded.grid)?;
        let flip = self.cfg.flip_average;
        Ok((average_mirrored(depth, encoded.batch, flip)?, average_mirrored(edge, encoded.batch, flip)?))
    }

    /// Normalised pixels (B, 3, H, W) -> depth on the token grid (B, 1,
    /// gh, gw) in metres, f32.
    pub fn forward(&self, pixels: &Tensor) -> CandleResult<Tensor> {
        self.decode(&self.encode(pixels)?)
    }

    /// For callers that feed square inputs of a backbone's size (the
    /// evaluation loader): the tower's native resolution and DepthCLIP's
    /// normalisation. For a ViT tower it is the ViT's config; for a ResNet
    /// it describes the tokens (hidden = channels, patch = 32, its stride).
    pub fn input_description(&self) -> &BackboneConfig {
        &self.description
    }
}

fn describe(cfg: &DepthClipConfig, arch: &ClipArchitecture) -> BackboneConfig {
    let mut d = match &arch.image {
        ImageTowerConfig::Vit { vision, .. } => vision.clone(),
        ImageTowerConfig::Resnet(r) => BackboneConfig {
            kind: BackboneKind::Clip,
            hidden_size: r.channels(),
            intermediate_size: r.channels(),
            num_hidden_layers: r.layers.iter().sum(),
            num_attention_heads: r.heads,
            patch_size: crate::model::ResnetConfig::STRIDE,
            image_size: r.image_size,
            hidden_act: crate::model::Activation::Relu,
            ..BackboneConfig::clip_vit_base_patch16()
        },
    };
    d.image_mean = cfg.image_mean;
    d.image_std = cfg.image_std;
    d
}
