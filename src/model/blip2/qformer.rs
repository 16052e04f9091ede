//! BLIP-2's Q-Former under LAVIS's names (`Qformer.bert.*`): BERT-base
//! whose input is the learned queries followed by the text tokens. In the
//! feature extractor's multimodal mode every layer runs one self-attention
//! over queries and text together (text padding masked with -10000), then
//! the queries alone cross-attend to the image tokens (in the layers that
//! have a `crossattention`) and pass their own feed-forward block
//! (`intermediate_query`, `output_query`); the text rows pass the plain
//! one. BERT's post-norm: each block is LayerNorm(dense(out) + input).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::config::QFormerConfig;
use crate::model::layers::{layer_norm, softmax_last, LayerNorm, Linear};
use crate::model::Activation;

/// Multi-head attention: q (B, T, D) pre-scaled, k and v (B, S, D), an
/// optional additive mask broadcastable to (B, heads, T, S).
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, mask: Option<&Tensor>) -> Result<Tensor> {
    let (b, t, d) = q.dims3()?;
    let s = k.dim(1)?;
    let hd = d / heads;
    let split = |x: &Tensor, n: usize| x.reshape((b, n, heads, hd))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q, t)?, split(k, s)?, split(v, s)?);
    let mut scores = q.matmul(&k.t()?)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    softmax_last(&scores)?.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))
}

/// `BertSelfAttention` (+ `BertSelfOutput`): query, key, value, then
/// `output.dense` and `output.LayerNorm` over the residual.
#[derive(Debug, Clone)]
pub struct BertAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    norm: LayerNorm,
    heads: usize,
}

impl BertAttention {
    pub fn new(vb: VarBuilder, cfg: &QFormerConfig, kv_width: usize) -> Result<Self> {
        let h = cfg.hidden;
        let sv = vb.pp("self");
        // The softmax scale folded into the query projection.
        let scale = ((h / cfg.heads) as f64).powf(-0.5);
        let qv = sv.pp("query");
        let query = Linear::from_weights((qv.get((h, h), "weight")? * scale)?, Some((qv.get(h, "bias")? * scale)?))?;
        Ok(Self {
            query,
            key: Linear::new(kv_width, h, sv.pp("key"))?,
            value: Linear::new(kv_width, h, sv.pp("value"))?,
            dense: Linear::new(h, h, vb.pp("output.dense"))?,
            norm: layer_norm(h, cfg.eps, vb.pp("output.LayerNorm"))?,
            heads: cfg.heads,
        })
    }

    /// Attention of `x` over itself.
    pub fn self_attention(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let ctx = attend(&self.query.forward(x)?, &self.key.forward(x)?, &self.value.forward(x)?, self.heads, mask)?;
        self.norm.forward(&(self.dense.forward(&ctx)? + x)?)
    }

    /// Attention of `x` (B, T, H) over `kv` (B, S, W).
    pub fn cross_attention(&self, x: &Tensor, kv: &Tensor) -> Result<Tensor> {
        let ctx = attend(&self.query.forward(x)?, &self.key.forward(kv)?, &self.value.forward(kv)?, self.heads, None)?;
        self.norm.forward(&(self.dense.forward(&ctx)? + x)?)
    }
}

/// `intermediate.dense` (GELU) and `output.{dense, LayerNorm}`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    intermediate: Linear,
    dense: Linear,
    norm: LayerNorm,
}

impl FeedForward {
    pub fn new(vb: VarBuilder, intermediate: &str, output: &str, cfg: &QFormerConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden, cfg.intermediate);
        Ok(Self {
            intermediate: Linear::new(h, i, vb.pp(intermediate).pp("dense"))?.with_activation(Activation::Gelu),
            dense: Linear::new(i, h, vb.pp(output).pp("dense"))?,
            norm: layer_norm(h, cfg.eps, vb.pp(output).pp("LayerNorm"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&(self.dense.forward(&self.intermediate.forward(x)?)? + x)?)
    }
}

#[derive(Debug, Clone)]
pub struct QFormerLayer {
    attention: BertAttention,
    crossattention: Option<BertAttention>,
    text_ffn: FeedForward,
    query_ffn: FeedForward,
}

impl QFormerLayer {
    pub fn new(vb: VarBuilder, cfg: &QFormerConfig, index: usize) -> Result<Self> {
        let cross = cfg.cross_attention.get(index).copied().unwrap_or(false);
        Ok(Self {
            attention: BertAttention::new(vb.pp("attention"), cfg, cfg.hidden)?,
            crossattention: if cross { Some(BertAttention::new(vb.pp("crossattention"), cfg, cfg.encoder_width)?) } else { None },
            text_ffn: FeedForward::new(vb.clone(), "intermediate", "output", cfg)?,
            query_ffn: FeedForward::new(vb, "intermediate_query", "output_query", cfg)?,
        })
    }

    /// x (B*P, Q + L, H) with `prompts` = P rows per image, the image
    /// tokens (B, N, W). Returns the next x, or only its query rows when
    /// `last` (the text rows are not read after the last layer).
    fn forward(&self, x: &Tensor, mask: &Tensor, image: &Tensor, queries: usize, prompts: usize, last: bool) -> Result<Tensor> {
        let a = self.attention.self_attention(x, Some(mask))?;
        let (bp, t, h) = a.dims3()?;
        let mut q = a.narrow(1, 0, queries)?;
        if let Some(cross) = &self.crossattention {
            // Queries never attend to each other here: the P prompts'
            // queries of an image read its tokens as one sequence.
            let b = bp / prompts;
            let joined = q.contiguous()?.reshape((b, prompts * queries, h))?;
            q = cross.cross_attention(&joined, image)?.reshape((bp, queries, h))?;
        }
        let q = self.query_ffn.forward(&q)?;
        if last || t == queries {
            return Ok(q);
        }
        let text = self.text_ffn.forward(&a.narrow(1, queries, t - queries)?)?;
        Tensor::cat(&[&q, &text], 1)
    }
}

/// `Qformer.bert`: embeddings and layers.
#[derive(Debug, Clone)]
pub struct QFormer {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    norm: LayerNorm,
    layers: Vec<QFormerLayer>,
    cfg: QFormerConfig,
}

impl QFormer {
    /// `vb` points at `Qformer.bert`.
    pub fn new(vb: VarBuilder, cfg: &QFormerConfig) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let h = cfg.hidden;
        let enc = vb.pp("encoder.layer");
        Ok(Self {
            word_embeddings: emb.get((cfg.vocab, h), "word_embeddings.weight")?,
            position_embeddings: emb.get((cfg.max_positions, h), "position_embeddings.weight")?,
            norm: layer_norm(h, cfg.eps, emb.pp("LayerNorm"))?,
            layers: (0..cfg.layers).map(|i| QFormerLayer::new(enc.pp(i), cfg, i)).collect::<Result<Vec<_>>>()?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &QFormerConfig {
        &self.cfg
    }

    /// The normalised embeddings of queries + text, (P, Q + L, H), and the
    /// additive mask (P, 1, 1, Q + L): `ids` and `mask` are (P, L), the
    /// mask 1 on tokens and 0 on padding. Independent of the image.
    pub fn embed(&self, query_tokens: &Tensor, ids: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let (p, l) = ids.dims2()?;
        if l > self.cfg.max_positions {
            candle_core::bail!("a prompt has {l} tokens, the Q-Former reads at most {}", self.cfg.max_positions);
        }
        let h = self.cfg.hidden;
        let words = self.word_embeddings.index_select(&ids.flatten_all()?, 0)?.reshape((p, l, h))?;
        let text = words.broadcast_add(&self.position_embeddings.narrow(0, 0, l)?)?;
        let q = query_tokens.dim(1)?;
        let queries = query_tokens.to_dtype(text.dtype())?.expand((p, q, h))?;
        let x = self.norm.forward(&Tensor::cat(&[&queries, &text], 1)?)?;
        let full = Tensor::cat(&[&Tensor::ones((p, q), mask.dtype(), mask.device())?, mask], 1)?;
        let additive = ((full.affine(-1.0, 1.0)?) * -10000.0)?.reshape((p, 1, 1, q + l))?.to_dtype(x.dtype())?;
        Ok((x, additive))
    }

    /// The multimodal query outputs: image tokens (B, N, W) and the
    /// prompts' embeddings from [`Self::embed`] -> (B, P, Q, H).
    pub fn multimodal(&self, image: &Tensor, embedded: &Tensor, additive: &Tensor, queries: usize) -> Result<Tensor> {
        let b = image.dim(0)?;
        let (p, t, h) = embedded.dims3()?;
        let mut x = embedded.unsqueeze(0)?.expand((b, p, t, h))?.reshape((b * p, t, h))?;
        let mask = additive.unsqueeze(0)?.expand((b, p, 1, 1, t))?.reshape((b * p, 1, 1, t))?;
        let image = image.to_dtype(x.dtype())?;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &mask, &image, queries, p, i + 1 == n)?;
        }
        x.reshape((b, p, queries, h))
    }
}

/// The mean over the last-but-one dimension in f32: (.., Q, H) -> (.., H).
pub fn mean_queries(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(DType::F32)?.mean(D::Minus2)
}
