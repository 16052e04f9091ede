//! The pre-norm transformer encoder shared by CLIP and SigLIP (HF names:
//! `encoder.layers.{i}.{self_attn, layer_norm1, mlp, layer_norm2}`).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::attention::CpuAttention;
use crate::model::layers::{layer_norm, softmax_last, LayerNorm, Linear};
use crate::model::BackboneConfig;

/// Multi-head self-attention. q, k and v projections are fused into one
/// matmul at load; the checkpoint keeps them apart.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl SelfAttention {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        let scale = (cfg.head_dim() as f64).powf(-0.5);
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for name in ["q_proj", "k_proj", "v_proj"] {
            let (w, b) = (vb.get((d, d), &format!("{name}.weight"))?, vb.get(d, &format!("{name}.bias"))?);
            // The softmax scale is folded into q at load, as HF scales q.
            let s = if name == "q_proj" { scale } else { 1.0 };
            weights.push((w * s)?);
            biases.push((b * s)?);
        }
        let qkv_proj = Linear::from_weights(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?))?;
        Ok(Self {
            qkv_proj,
            out_proj: Linear::new(d, d, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / self.num_heads;
        let qkv = self.qkv_proj.forward(x)?;
        if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
            let y = qkv.contiguous()?.apply_op1_no_bwd(&CpuAttention { num_heads: self.num_heads })?;
            return self.out_proj.forward(&y);
        }
        let qkv = qkv
            .reshape((b, t, 3, self.num_heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = softmax_last(&q.matmul(&k.t()?)?)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out_proj.forward(&y)
    }
}

#[derive(Debug, Clone)]
pub struct Mlp {
    /// With the activation fused in.
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(cfg.hidden_size, cfg.intermediate_size, vb.pp("fc1"))?.with_activation(cfg.hidden_act),
            fc2: Linear::new(cfg.intermediate_size, cfg.hidden_size, vb.pp("fc2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?)
    }
}

#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: SelfAttention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

impl EncoderLayer {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            self_attn: SelfAttention::new(vb.pp("self_attn"), cfg)?,
            layer_norm1: layer_norm(d, eps, vb.pp("layer_norm1"))?,
            mlp: Mlp::new(vb.pp("mlp"), cfg)?,
            layer_norm2: layer_norm(d, eps, vb.pp("layer_norm2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        &h + self.mlp.forward(&self.layer_norm2.forward(&h)?)?
    }
}

/// The layer stack; `forward` keeps the hidden states whose HF index is in
/// `taps` (0 = the encoder's input, k = output of layer k).
#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig) -> Result<Self> {
        let vb = vb.pp("layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb.pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Returns the last hidden state and the requested taps, in `taps` order.
    pub fn forward(&self, x: &Tensor, taps: &[usize]) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let mut kept: Vec<Option<Tensor>> = vec![None; taps.len()];
        let mut keep = |index: usize, h: &Tensor| {
            for (slot, &tap) in kept.iter_mut().zip(taps) {
                if tap == index {
                    *slot = Some(h.clone());
                }
            }
        };
        keep(0, x);
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            keep(i + 1, &h);
        }
        Ok((h, kept))
    }
}
