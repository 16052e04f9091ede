//! OpenAI CLIP's ModifiedResNet (RN50, RN101, RN50x4, ...), with OpenAI's
//! state-dict names under `visual.`: a three-conv stem with an average pool,
//! bottlenecks whose strided step is an average pool (after the 3x3 conv on
//! the main path, before the 1x1 conv on the shortcut) so every conv has
//! stride 1 except the stem's first, and attention pooling at the end.
//!
//! BatchNorm is folded into the convs at load, so 3x3 and 1x1 convs run on
//! the CPU kernels of [`crate::kernels::conv`].

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use crate::kernels::conv::Conv;
use crate::kernels::pool::{add_relu, avg_pool};
use crate::model::layers::{conv2d_bn, softmax_last, Linear};

/// PyTorch's BatchNorm2d epsilon (not stored in checkpoints).
const BN_EPS: f64 = 1e-5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResnetConfig {
    /// Bottlenecks per stage (RN50: 3 4 6 3; RN101: 3 4 23 3).
    pub layers: [usize; 4],
    /// Stem width (64 for RN50); stage i has `width * 2^i` planes, x4 out.
    pub width: usize,
    /// Heads of the attention pool (`width * 32 / 64` in OpenAI's models).
    pub heads: usize,
    /// Width of the pooled embedding (the joint space).
    pub output_dim: usize,
    /// The training resolution: the attention pool's position grid is
    /// `image_size / 32` square.
    pub image_size: usize,
}

impl ResnetConfig {
    /// Channels of the last stage's map (RN50: 2048).
    pub fn channels(&self) -> usize {
        self.width * 32
    }

    /// Pixels per output cell.
    pub const STRIDE: usize = 32;

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.width < 2 || !self.width.is_multiple_of(2) {
            return Err(format!("ResNet width {} must be even and positive", self.width));
        }
        if self.layers.contains(&0) {
            return Err(format!("ResNet stages {:?} must each have a block", self.layers));
        }
        if self.heads == 0 || !self.channels().is_multiple_of(self.heads) {
            return Err(format!("attention pool: {} channels are not divisible by {} heads", self.channels(), self.heads));
        }
        if self.image_size < Self::STRIDE || !self.image_size.is_multiple_of(Self::STRIDE) {
            return Err(format!("ResNet image size {} is not a multiple of 32", self.image_size));
        }
        Ok(())
    }
}

/// A 3x3 stride-2 conv (no bias) followed by BatchNorm, folded into one conv.
fn conv_bn_strided(c_in: usize, c_out: usize, conv_vb: VarBuilder, bn_vb: VarBuilder) -> Result<Conv> {
    let get = |vb: &VarBuilder, shape: &[usize], name: &str| vb.get_with_hints_dtype(shape, name, Default::default(), DType::F32);
    let weight = get(&conv_vb, &[c_out, c_in, 3, 3], "weight")?;
    let gamma = get(&bn_vb, &[c_out], "weight")?;
    let beta = get(&bn_vb, &[c_out], "bias")?;
    let mean = get(&bn_vb, &[c_out], "running_mean")?;
    let var = get(&bn_vb, &[c_out], "running_var")?;
    let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
    let weight = weight.broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
    let bias = beta.sub(&mean.mul(&scale)?)?;
    let dtype = conv_vb.dtype();
    let cfg = Conv2dConfig { padding: 1, stride: 2, ..Default::default() };
    Conv::new(Conv2d::new(weight.to_dtype(dtype)?, Some(bias.to_dtype(dtype)?), cfg))
}

/// `conv1`..`conv3` with `bn1`..`bn3`, then a 2x2 average pool: /4 in all.
#[derive(Debug, Clone)]
struct Stem {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
}

impl Stem {
    fn new(vb: &VarBuilder, width: usize) -> Result<Self> {
        let half = width / 2;
        Ok(Self {
            conv1: conv_bn_strided(3, half, vb.pp("conv1"), vb.pp("bn1"))?,
            conv2: conv2d_bn(half, half, 3, vb.pp("conv2"), vb.pp("bn2"))?,
            conv3: conv2d_bn(half, width, 3, vb.pp("conv3"), vb.pp("bn3"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward_relu(x)?;
        let x = self.conv2.forward_relu(&x)?;
        avg_pool(&self.conv3.forward_relu(&x)?, 2)
    }
}

/// 1x1 -> 3x3 -> (avg pool) -> 1x1 (x4 channels) plus the shortcut.
#[derive(Debug, Clone)]
struct Bottleneck {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    /// `downsample.0` (1x1) with `downsample.1` (BN), after the shortcut's pool.
    downsample: Option<Conv>,
    stride: usize,
}

impl Bottleneck {
    fn new(vb: VarBuilder, inplanes: usize, planes: usize, stride: usize) -> Result<Self> {
        let out = planes * 4;
        let downsample = if stride > 1 || inplanes != out {
            Some(conv2d_bn(inplanes, out, 1, vb.pp("downsample.0"), vb.pp("downsample.1"))?)
        } else {
            None
        };
        Ok(Self {
            conv1: conv2d_bn(inplanes, planes, 1, vb.pp("conv1"), vb.pp("bn1"))?,
            conv2: conv2d_bn(planes, planes, 3, vb.pp("conv2"), vb.pp("bn2"))?,
            conv3: conv2d_bn(planes, out, 1, vb.pp("conv3"), vb.pp("bn3"))?,
            downsample,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward_relu(x)?;
        let mut y = self.conv2.forward_relu(&y)?;
        if self.stride > 1 {
            y = avg_pool(&y, self.stride)?;
        }
        let y = self.conv3.forward(&y)?;
        let shortcut = match &self.downsample {
            Some(conv) if self.stride > 1 => conv.forward(&avg_pool(x, self.stride)?)?,
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        add_relu(&y, &shortcut)
    }
}

/// CLIP's attention pooling: the mean of the map's tokens, as the only
/// query, attends over itself and every token (position embeddings added;
/// resized bilinearly, align_corners = true, for another grid).
#[derive(Debug, Clone)]
pub struct AttentionPool2d {
    positional_embedding: Tensor,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    c_proj: Linear,
    heads: usize,
    grid: usize,
}

impl AttentionPool2d {
    pub fn new(vb: VarBuilder, cfg: &ResnetConfig) -> Result<Self> {
        let c = cfg.channels();
        let grid = cfg.image_size / ResnetConfig::STRIDE;
        Ok(Self {
            positional_embedding: vb.get((grid * grid + 1, c), "positional_embedding")?,
            k_proj: Linear::new(c, c, vb.pp("k_proj"))?,
            q_proj: Linear::new(c, c, vb.pp("q_proj"))?,
            v_proj: Linear::new(c, c, vb.pp("v_proj"))?,
            c_proj: Linear::new(c, cfg.output_dim, vb.pp("c_proj"))?,
            heads: cfg.heads,
            grid,
        })
    }

    /// (B, C, H, W) -> (B, output_dim).
    pub fn forward(&self, map: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = map.dims4()?;
        let tokens = map.flatten_from(2)?.transpose(1, 2)?; // (B, HW, C)
        let mean = tokens.mean_keepdim(1)?;
        let tokens = Tensor::cat(&[&mean, &tokens], 1)?.broadcast_add(&self.positions(h, w)?)?;
        let hd = c / self.heads;
        let heads = |y: Tensor, t: usize| y.reshape((b, t, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = heads((self.q_proj.forward(&tokens.narrow(1, 0, 1)?)? * (hd as f64).powf(-0.5))?, 1)?;
        let k = heads(self.k_proj.forward(&tokens)?, h * w + 1)?;
        let v = heads(self.v_proj.forward(&tokens)?, h * w + 1)?;
        let att = softmax_last(&q.matmul(&k.t()?)?)?;
        let out = att.matmul(&v)?.transpose(1, 2)?.reshape((b, c))?;
        self.c_proj.forward(&out)
    }

    /// The position table for an `h` x `w` map (the stored one at its grid).
    fn positions(&self, h: usize, w: usize) -> Result<Tensor> {
        if (h, w) == (self.grid, self.grid) {
            return Ok(self.positional_embedding.clone());
        }
        let c = self.positional_embedding.dim(1)?;
        let g = self.grid;
        let spatial = self.positional_embedding.narrow(0, 1, g * g)?.t()?.reshape((1, c, g, g))?;
        let resized = spatial.upsample_bilinear2d(h, w, true)?.reshape((c, h * w))?.t()?;
        Tensor::cat(&[&self.positional_embedding.narrow(0, 0, 1)?, &resized], 0)
    }
}

/// The image tower. The map of the last stage (B, 32 * width, H/32, W/32)
/// is what zero-shot depth reads; the pooled embedding is CLIP's.
#[derive(Debug, Clone)]
pub struct ModifiedResNet {
    stem: Stem,
    stages: Vec<Vec<Bottleneck>>,
    attnpool: Option<AttentionPool2d>,
    cfg: ResnetConfig,
}

impl ModifiedResNet {
    /// `vb` points at `visual`. Without `pool` the attention pool's tensors
    /// are still read and checked (they are part of every checkpoint) but
    /// not kept: the feature map does not need them.
    pub fn new(vb: VarBuilder, cfg: &ResnetConfig, pool: bool) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let mut inplanes = cfg.width;
        let mut stages = Vec::with_capacity(4);
        for (i, &blocks) in cfg.layers.iter().enumerate() {
            let planes = cfg.width << i;
            let stride = if i == 0 { 1 } else { 2 };
            let vb = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks);
            for j in 0..blocks {
                stage.push(Bottleneck::new(vb.pp(j), inplanes, planes, if j == 0 { stride } else { 1 })?);
                inplanes = planes * 4;
            }
            stages.push(stage);
        }
        let attnpool = AttentionPool2d::new(vb.pp("attnpool"), cfg)?;
        Ok(Self { stem: Stem::new(&vb, cfg.width)?, stages, attnpool: pool.then_some(attnpool), cfg: cfg.clone() })
    }

    pub fn config(&self) -> &ResnetConfig {
        &self.cfg
    }

    /// Normalised pixels (B, 3, H, W), H and W multiples of 32 -> the last
    /// stage's map (B, 32 * width, H/32, W/32).
    pub fn feature_map(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        if h % ResnetConfig::STRIDE != 0 || w % ResnetConfig::STRIDE != 0 || h == 0 || w == 0 {
            candle_core::bail!("ResNet input {w}x{h} is not a multiple of 32 on both sides");
        }
        let mut x = self.stem.forward(pixels)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x)?;
        }
        Ok(x)
    }

    /// CLIP's image embedding (B, output_dim); needs the pool (see [`Self::new`]).
    pub fn embedding(&self, pixels: &Tensor) -> Result<Tensor> {
        match &self.attnpool {
            Some(pool) => pool.forward(&self.feature_map(pixels)?),
            None => candle_core::bail!("this ResNet was built without its attention pool"),
        }
    }
}
