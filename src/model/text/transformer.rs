//! The CLIP text transformer with Hugging Face `CLIPModel` names
//! (`text_model.embeddings`, `text_model.encoder.layers.{i}`,
//! `text_model.final_layer_norm`, `text_projection`); OpenAI's and
//! OpenCLIP's names are mapped to these at load (`crate::weights::clip_model`).
//!
//! It runs once per model load (a few prompts), so it is plain candle ops:
//! speed does not matter here, exactness does.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::TextConfig;
use crate::model::layers::{activation, layer_norm, softmax_last, LayerNorm, Linear};

/// Causal multi-head self-attention.
#[derive(Debug, Clone)]
struct TextAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl TextAttention {
    fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let d = cfg.width;
        Ok(Self {
            q_proj: Linear::new(d, d, vb.pp("q_proj"))?,
            k_proj: Linear::new(d, d, vb.pp("k_proj"))?,
            v_proj: Linear::new(d, d, vb.pp("v_proj"))?,
            out_proj: Linear::new(d, d, vb.pp("out_proj"))?,
            heads: cfg.heads,
        })
    }

    /// `mask` (T, T): 0 on and below the diagonal, -inf above.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / self.heads;
        let split = |y: Tensor| y.reshape((b, t, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split((self.q_proj.forward(x)? * (hd as f64).powf(-0.5))?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let y = softmax_last(&scores)?.matmul(&v)?;
        self.out_proj.forward(&y.transpose(1, 2)?.reshape((b, t, d))?)
    }
}

#[derive(Debug, Clone)]
struct TextMlp {
    fc1: Linear,
    fc2: Linear,
    act: crate::model::Activation,
}

impl TextMlp {
    fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(cfg.width, cfg.intermediate_size, vb.pp("fc1"))?,
            fc2: Linear::new(cfg.intermediate_size, cfg.width, vb.pp("fc2"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&activation(&self.fc1.forward(x)?, self.act)?)
    }
}

#[derive(Debug, Clone)]
struct TextLayer {
    self_attn: TextAttention,
    layer_norm1: LayerNorm,
    mlp: TextMlp,
    layer_norm2: LayerNorm,
}

impl TextLayer {
    fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let (d, eps) = (cfg.width, cfg.layer_norm_eps);
        Ok(Self {
            self_attn: TextAttention::new(vb.pp("self_attn"), cfg)?,
            layer_norm1: layer_norm(d, eps, vb.pp("layer_norm1"))?,
            mlp: TextMlp::new(vb.pp("mlp"), cfg)?,
            layer_norm2: layer_norm(d, eps, vb.pp("layer_norm2"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?, mask)?)?;
        &h + self.mlp.forward(&self.layer_norm2.forward(&h)?)?
    }
}

/// The text tower and its projection into the joint space.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<TextLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Linear,
    cfg: TextConfig,
}

impl ClipTextModel {
    /// `vb` points at the root of a `CLIPModel` state dict.
    pub fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let tm = vb.pp("text_model");
        let emb = tm.pp("embeddings");
        let layers = (0..cfg.layers)
            .map(|i| TextLayer::new(tm.pp("encoder.layers").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let projection = vb.get((cfg.embed_dim, cfg.width), "text_projection.weight")?;
        Ok(Self {
            token_embedding: emb.get((cfg.vocab_size, cfg.width), "token_embedding.weight")?,
            position_embedding: emb.get((cfg.context_length, cfg.width), "position_embedding.weight")?,
            layers,
            final_layer_norm: layer_norm(cfg.width, cfg.layer_norm_eps, tm.pp("final_layer_norm"))?,
            text_projection: Linear::from_weights(projection, None)?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// Token ids (each `context_length` long, end token = the highest id)
    /// -> (N, embed_dim) features of each end token, not normalised.
    ///
    /// Attention is causal, so positions after the last end token cannot
    /// change it: the sequences are cut there (prompts are a few tokens of 77).
    pub fn encode(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let device = self.token_embedding.device().clone();
        let n = ids.len();
        if n == 0 {
            candle_core::bail!("no prompts to encode");
        }
        let mut eot = Vec::with_capacity(n);
        for row in ids {
            if row.len() != self.cfg.context_length {
                candle_core::bail!("a prompt has {} tokens, the text tower takes {}", row.len(), self.cfg.context_length);
            }
            if let Some(&bad) = row.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
                candle_core::bail!("token id {bad} is beyond the text tower's vocabulary of {}", self.cfg.vocab_size);
            }
            // argmax, first occurrence: the end-of-text token.
            let max = row.iter().copied().max().unwrap_or(0);
            eot.push(row.iter().position(|&id| id == max).unwrap_or(0));
        }
        let t = eot.iter().max().copied().unwrap_or(0) + 1;
        let flat: Vec<u32> = ids.iter().flat_map(|row| row[..t].iter().copied()).collect();
        let flat = Tensor::from_vec(flat, n * t, &device)?;
        let x = self.token_embedding.index_select(&flat, 0)?.reshape((n, t, self.cfg.width))?;
        let mut x = x.broadcast_add(&self.position_embedding.narrow(0, 0, t)?)?;
        let mask = causal_mask(t, x.dtype(), &device)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        let x = self.final_layer_norm.forward(&x)?;
        let rows = eot
            .iter()
            .enumerate()
            .map(|(i, &p)| x.get(i)?.get(p))
            .collect::<Result<Vec<_>>>()?;
        self.text_projection.forward(&Tensor::stack(&rows, 0)?)
    }
}

fn causal_mask(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(data, (t, t), device)?.to_dtype(dtype)
}
