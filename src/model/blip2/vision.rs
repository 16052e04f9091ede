//! BLIP-2's frozen image towers under LAVIS's names (`visual_encoder.*`):
//! EVA ViT-g (`eva_vit.py`: patch conv with bias, class token, absolute
//! positions, pre-norm blocks with q and v biases and exact GELU, no final
//! norm) and LAVIS's CLIP ViT-L (`clip_vit.py`: OpenAI's tower without
//! `ln_post` and `proj`). Both give all (1 + HW) tokens of the last layer.
//! Other input sizes resize the position table (see [`super::positions`]).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{VisionConfig, VisionKind};
use super::positions::resize_positions;
use crate::kernels::attention::CpuAttention;
use crate::model::layers::{layer_norm, softmax_last, LayerNorm, Linear};
use crate::model::vision::patch_embedding::PatchEmbedding;
use crate::model::Activation;

/// Self-attention from a packed (B, T, 3D) qkv with q pre-scaled.
pub(super) fn packed_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
        return qkv.contiguous()?.apply_op1_no_bwd(&CpuAttention { num_heads: heads });
    }
    let qkv = qkv.reshape((b, t, 3, heads, d / heads))?.permute((2, 0, 3, 1, 4))?;
    let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
    let attn = softmax_last(&q.matmul(&k.t()?)?)?;
    attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))
}

/// A (3D, D) packed projection with the q rows (and q bias) scaled by
/// head_dim^-0.5, so the attention needs no scaling.
fn scaled_qkv(weight: Tensor, bias: Tensor, d: usize, heads: usize) -> Result<Linear> {
    let scale = ((d / heads) as f64).powf(-0.5);
    let w = Tensor::cat(&[(weight.narrow(0, 0, d)? * scale)?, weight.narrow(0, d, 2 * d)?], 0)?;
    let b = Tensor::cat(&[(bias.narrow(0, 0, d)? * scale)?, bias.narrow(0, d, 2 * d)?], 0)?;
    Linear::from_weights(w, Some(b))
}

/// EVA's attention: one bias-free qkv matmul plus the q and v biases.
#[derive(Debug, Clone)]
pub struct EvaAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl EvaAttention {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let d = cfg.width;
        let weight = vb.get((3 * d, d), "qkv.weight")?;
        let q_bias = vb.get(d, "q_bias")?;
        let v_bias = vb.get(d, "v_bias")?;
        let bias = Tensor::cat(&[&q_bias, &q_bias.zeros_like()?, &v_bias], 0)?;
        Ok(Self { qkv: scaled_qkv(weight, bias, d, cfg.heads)?, proj: Linear::new(d, d, vb.pp("proj"))?, heads: cfg.heads })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj.forward(&packed_attention(&self.qkv.forward(x)?, self.heads)?)
    }
}

#[derive(Debug, Clone)]
pub struct EvaBlock {
    norm1: LayerNorm,
    attn: EvaAttention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl EvaBlock {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let (d, eps) = (cfg.width, cfg.eps);
        Ok(Self {
            norm1: layer_norm(d, eps, vb.pp("norm1"))?,
            attn: EvaAttention::new(vb.pp("attn"), cfg)?,
            norm2: layer_norm(d, eps, vb.pp("norm2"))?,
            fc1: Linear::new(d, cfg.mlp, vb.pp("mlp.fc1"))?.with_activation(Activation::Gelu),
            fc2: Linear::new(cfg.mlp, d, vb.pp("mlp.fc2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        &x + self.fc2.forward(&self.fc1.forward(&self.norm2.forward(&x)?)?)?
    }
}

/// CLIP's residual block: `nn.MultiheadAttention` (packed in_proj) and a
/// QuickGELU MLP, pre-norm.
#[derive(Debug, Clone)]
pub struct ClipBlock {
    ln_1: LayerNorm,
    in_proj: Linear,
    out_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    heads: usize,
}

impl ClipBlock {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let (d, eps) = (cfg.width, cfg.eps);
        let attn = vb.pp("attn");
        let in_proj = scaled_qkv(attn.get((3 * d, d), "in_proj_weight")?, attn.get(3 * d, "in_proj_bias")?, d, cfg.heads)?;
        Ok(Self {
            ln_1: layer_norm(d, eps, vb.pp("ln_1"))?,
            in_proj,
            out_proj: Linear::new(d, d, attn.pp("out_proj"))?,
            ln_2: layer_norm(d, eps, vb.pp("ln_2"))?,
            c_fc: Linear::new(d, cfg.mlp, vb.pp("mlp.c_fc"))?.with_activation(Activation::QuickGelu),
            c_proj: Linear::new(cfg.mlp, d, vb.pp("mlp.c_proj"))?,
            heads: cfg.heads,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = packed_attention(&self.in_proj.forward(&self.ln_1.forward(x)?)?, self.heads)?;
        let x = (x + self.out_proj.forward(&a)?)?;
        &x + self.c_proj.forward(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?
    }
}

#[derive(Debug, Clone)]
enum Blocks {
    Eva(Vec<EvaBlock>),
    Clip { ln_pre: LayerNorm, blocks: Vec<ClipBlock> },
}

/// The last resized position table and the grid it is for.
type ResizedTable = Option<((usize, usize), Tensor)>;

/// Either tower, with its class token and position table.
#[derive(Debug, Clone)]
pub struct VisionTower {
    patch_embed: PatchEmbedding,
    class_token: Tensor,
    /// The stored (1 + g*g, D) table, on the host in f32 for resizing.
    positions: Vec<f32>,
    blocks: Blocks,
    cfg: VisionConfig,
    resized: Arc<Mutex<ResizedTable>>,
}

impl VisionTower {
    /// `vb` points at `visual_encoder`.
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let (d, p, g) = (cfg.width, cfg.patch, cfg.grid());
        let host = |t: Tensor| -> Result<Vec<f32>> { t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>() };
        let (patch_embed, class_token, positions, blocks) = match cfg.kind {
            VisionKind::Eva => {
                let proj = vb.pp("patch_embed.proj");
                let patch = PatchEmbedding::from_weights(proj.get((d, 3, p, p), "weight")?, Some(proj.get(d, "bias")?))?;
                let class = vb.get((1, 1, d), "cls_token")?.reshape(d)?;
                let positions = host(vb.get((1, 1 + g * g, d), "pos_embed")?)?;
                let blocks = (0..cfg.layers).map(|i| EvaBlock::new(vb.pp("blocks").pp(i), cfg)).collect::<Result<Vec<_>>>()?;
                (patch, class, positions, Blocks::Eva(blocks))
            }
            VisionKind::Clip => {
                let patch = PatchEmbedding::from_weights(vb.get((d, 3, p, p), "conv1.weight")?, None)?;
                let class = vb.get(d, "class_embedding")?;
                let positions = host(vb.get((1 + g * g, d), "positional_embedding")?)?;
                let ln_pre = layer_norm(d, cfg.eps, vb.pp("ln_pre"))?;
                let rb = vb.pp("transformer.resblocks");
                let blocks = (0..cfg.layers).map(|i| ClipBlock::new(rb.pp(i), cfg)).collect::<Result<Vec<_>>>()?;
                (patch, class, positions, Blocks::Clip { ln_pre, blocks })
            }
        };
        Ok(Self { patch_embed, class_token, positions, blocks, cfg: cfg.clone(), resized: Arc::new(Mutex::new(None)) })
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// Normalised pixels (B, 3, H, W), sides multiples of the patch ->
    /// tokens (B, 1 + (H/p)(W/p), D).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        let p = self.cfg.patch;
        if h % p != 0 || w % p != 0 || h == 0 || w == 0 {
            candle_core::bail!("BLIP-2 image tower input {w}x{h} is not a multiple of the patch size {p} on both sides");
        }
        let patches = self.patch_embed.forward(pixels)?;
        let (b, _, d) = patches.dims3()?;
        let class = self.class_token.reshape((1, 1, d))?.expand((b, 1, d))?.to_dtype(patches.dtype())?;
        let pos = self.position_table(h / p, w / p, &patches)?;
        let x = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&pos)?;
        match &self.blocks {
            Blocks::Eva(blocks) => blocks.iter().try_fold(x, |x, blk| blk.forward(&x)),
            Blocks::Clip { ln_pre, blocks } => blocks.iter().try_fold(ln_pre.forward(&x)?, |x, blk| blk.forward(&x)),
        }
    }

    fn position_table(&self, gh: usize, gw: usize, like: &Tensor) -> Result<Tensor> {
        if let Ok(cache) = self.resized.lock() {
            if let Some((grid, table)) = cache.as_ref() {
                if *grid == (gh, gw) && table.dtype() == like.dtype() && table.device().same_device(like.device()) {
                    return Ok(table.clone());
                }
            }
        }
        let g = self.cfg.grid();
        let data = if (gh, gw) == (g, g) {
            self.positions.clone()
        } else {
            // LAVIS's EVA resize (and transformers') uses align_corners =
            // false; its CLIP tower's, true.
            let align = self.cfg.kind == VisionKind::Clip;
            resize_positions(&self.positions, self.cfg.width, g, gh, gw, align)
        };
        let table = Tensor::from_vec(data, (1 + gh * gw, self.cfg.width), like.device())?.to_dtype(like.dtype())?;
        if let Ok(mut cache) = self.resized.lock() {
            *cache = Some(((gh, gw), table.clone()));
        }
        Ok(table)
    }
}
