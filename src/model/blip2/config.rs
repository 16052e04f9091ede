//! BLIP-2's shapes: the image tower (EVA ViT-g or LAVIS's CLIP ViT-L), the
//! Q-Former (BERT with learned queries), read from a Hugging Face
//! `Blip2Config` `config.json` or from the tensors of a LAVIS checkpoint
//! (LAVIS ships no config: heads = width / 88 for EVA, width / 64 for
//! CLIP and the Q-Former).


use serde_json::Value;

/// EVA ViT-g's head width (1408 = 16 x 88).
pub const EVA_HEAD_DIM: usize = 88;
/// CLIP's and BERT's head width.
pub const HEAD_DIM: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionKind {
    /// LAVIS's `eva_vit` (q and v biases, exact GELU, LayerNorm eps 1e-6).
    Eva,
    /// LAVIS's `clip_vit` (packed in_proj, QuickGELU, ln_pre, eps 1e-5).
    Clip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub kind: VisionKind,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
    pub patch: usize,
    /// The square side the position table is for.
    pub image_size: usize,
    pub eps: f64,
}

impl VisionConfig {
    pub fn grid(&self) -> usize {
        self.image_size / self.patch
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QFormerConfig {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    /// Per layer: whether its queries cross-attend to the image.
    pub cross_attention: Vec<bool>,
    /// Width of the image tokens the cross-attention reads.
    pub encoder_width: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub eps: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Blip2Config {
    pub vision: VisionConfig,
    pub qformer: QFormerConfig,
    pub queries: usize,
    /// `ln_vision`'s eps: LAVIS's nn.LayerNorm default 1e-5; transformers'
    /// `post_layernorm` takes the vision config's.
    pub ln_vision_eps: f64,
}

/// Architecture settings a LAVIS checkpoint cannot tell (the model YAML's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchitectureHints {
    /// Layers of the image tower to run (LAVIS's CLIP ViT-L runs 23 of the
    /// file's 24); default: all the file holds.
    pub vision_layers: Option<usize>,
    pub vision_heads: Option<usize>,
    pub qformer_heads: Option<usize>,
}

use crate::model::shapes::{count_layers, dims, square_grid, Shapes};

fn heads(width: usize, head_dim: usize, given: Option<usize>, what: &str) -> Result<usize, String> {
    let h = match given {
        Some(h) => h,
        None if width.is_multiple_of(head_dim) => width / head_dim,
        None => return Err(format!("{what} width {width} is not a multiple of {head_dim}: give its heads in the model YAML")),
    };
    if h == 0 || !width.is_multiple_of(h) {
        return Err(format!("{what}: {h} heads do not divide the width {width}"));
    }
    Ok(h)
}

impl Blip2Config {
    /// Names accepted by [`Self::preset`].
    pub const PRESETS: [&'static str; 2] = ["eva_vit_g", "clip_vit_l"];

    /// The released BLIP-2 shapes as LAVIS builds them, for random-weight
    /// timing: EVA ViT-g/14 (39 of its 40 layers) or CLIP ViT-L/14 (23 of
    /// 24), with the BERT-base Q-Former and 32 queries.
    pub fn preset(name: &str) -> Option<Self> {
        let key: String = name.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
        let vision = match key.as_str() {
            "evavitg" | "vitg" | "eva" | "pretrain" => {
                VisionConfig { kind: VisionKind::Eva, width: 1408, layers: 39, heads: 16, mlp: 6144, patch: 14, image_size: 224, eps: 1e-6 }
            }
            "clipvitl" | "vitl" | "clip" | "pretrainvitl" => {
                VisionConfig { kind: VisionKind::Clip, width: 1024, layers: 23, heads: 16, mlp: 4096, patch: 14, image_size: 224, eps: 1e-5 }
            }
            _ => return None,
        };
        let qformer = QFormerConfig {
            hidden: 768,
            heads: 12,
            layers: 12,
            intermediate: 3072,
            cross_attention: (0..12).map(|i| i % 2 == 0).collect(),
            encoder_width: vision.width,
            vocab: 30523,
            max_positions: 512,
            eps: 1e-12,
        };
        Some(Self { vision, qformer, queries: 32, ln_vision_eps: 1e-5 })
    }

    /// From tensor shapes under LAVIS's names.
    pub fn infer(shapes: &Shapes, hints: &ArchitectureHints, ln_vision_eps: f64) -> Result<Self, String> {
        let vision = if shapes.contains_key("visual_encoder.blocks.0.attn.qkv.weight") {
            let [_, rows, width] = dims(shapes, "visual_encoder.pos_embed")?;
            let [_, _, patch, _] = dims(shapes, "visual_encoder.patch_embed.proj.weight")?;
            let stored = count_layers(shapes, "visual_encoder.blocks");
            VisionConfig {
                kind: VisionKind::Eva,
                width,
                layers: hints.vision_layers.unwrap_or(stored),
                heads: heads(width, EVA_HEAD_DIM, hints.vision_heads, "the EVA tower")?,
                mlp: dims::<2>(shapes, "visual_encoder.blocks.0.mlp.fc1.weight")?[0],
                patch,
                image_size: square_grid(rows, 1, "visual_encoder.pos_embed")? * patch,
                eps: 1e-6,
            }
        } else if shapes.contains_key("visual_encoder.conv1.weight") {
            let [rows, _] = dims(shapes, "visual_encoder.positional_embedding")?;
            let [width, _, patch, _] = dims(shapes, "visual_encoder.conv1.weight")?;
            let stored = count_layers(shapes, "visual_encoder.transformer.resblocks");
            VisionConfig {
                kind: VisionKind::Clip,
                width,
                layers: hints.vision_layers.unwrap_or(stored),
                heads: heads(width, HEAD_DIM, hints.vision_heads, "the CLIP tower")?,
                mlp: dims::<2>(shapes, "visual_encoder.transformer.resblocks.0.mlp.c_fc.weight")?[0],
                patch,
                image_size: square_grid(rows, 1, "visual_encoder.positional_embedding")? * patch,
                eps: 1e-5,
            }
        } else {
            return Err("no image tower found (visual_encoder.blocks.* of EVA or visual_encoder.transformer.* of CLIP): \
                        give the tower's weights (eva_vit_g.pth / clip_vit_L.pth) as the vision weights"
                .into());
        };
        let query: [usize; 3] = dims(shapes, "query_tokens")?;
        let hidden = query[2];
        let layers = count_layers(shapes, "Qformer.bert.encoder.layer");
        if layers == 0 {
            return Err("no Q-Former layers (Qformer.bert.encoder.layer.*)".into());
        }
        let cross: Vec<bool> = (0..layers)
            .map(|i| shapes.contains_key(&format!("Qformer.bert.encoder.layer.{i}.crossattention.self.key.weight")))
            .collect();
        let first_cross = cross.iter().position(|c| *c).ok_or("no Q-Former layer cross-attends to the image")?;
        let [vocab, _] = dims(shapes, "Qformer.bert.embeddings.word_embeddings.weight")?;
        let qformer = QFormerConfig {
            hidden,
            heads: heads(hidden, HEAD_DIM, hints.qformer_heads, "the Q-Former")?,
            layers,
            intermediate: dims::<2>(shapes, "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight")?[0],
            cross_attention: cross,
            encoder_width: dims::<2>(shapes, &format!("Qformer.bert.encoder.layer.{first_cross}.crossattention.self.key.weight"))?[1],
            vocab,
            max_positions: dims::<2>(shapes, "Qformer.bert.embeddings.position_embeddings.weight")?[0],
            eps: 1e-12,
        };
        let cfg = Self { vision, qformer, queries: query[1], ln_vision_eps };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A Hugging Face `Blip2Config` (`model_type: blip-2`).
    pub fn from_hf_json(text: &str, hints: &ArchitectureHints) -> Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or("");
        if model_type != "blip-2" {
            return Err(format!("model_type {model_type:?}: DepthBLIP-2 needs a BLIP-2 config (blip-2)"));
        }
        let v = root.get("vision_config").ok_or("config.json has no vision_config")?;
        let q = root.get("qformer_config").ok_or("config.json has no qformer_config")?;
        let get = |o: &Value, key: &str, default: usize| -> Result<usize, String> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_u64().filter(|n| *n > 0).map(|n| n as usize).ok_or_else(|| format!("{key} must be a positive integer, got {x}")),
            }
        };
        let getf = |o: &Value, key: &str, default: f64| -> Result<f64, String> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_f64().filter(|f| *f > 0.0).ok_or_else(|| format!("{key} must be a positive number, got {x}")),
            }
        };
        for (o, section) in [(v, "vision_config"), (q, "qformer_config")] {
            if let Some(act) = o.get("hidden_act").and_then(Value::as_str) {
                if act != "gelu" {
                    return Err(format!("{section} hidden_act {act:?} is not supported (BLIP-2's exact gelu)"));
                }
            }
        }
        if v.get("qkv_bias").and_then(Value::as_bool) == Some(false) {
            return Err("vision_config qkv_bias false is not supported (EVA's q and v biases)".into());
        }
        let vision_eps = getf(v, "layer_norm_eps", 1e-6)?;
        let vision = VisionConfig {
            kind: VisionKind::Eva,
            width: get(v, "hidden_size", 1408)?,
            layers: hints.vision_layers.map_or_else(|| get(v, "num_hidden_layers", 39), Ok)?,
            heads: get(v, "num_attention_heads", 16)?,
            mlp: get(v, "intermediate_size", 6144)?,
            patch: get(v, "patch_size", 14)?,
            image_size: get(v, "image_size", 224)?,
            eps: vision_eps,
        };
        let layers = get(q, "num_hidden_layers", 12)?;
        let freq = get(q, "cross_attention_frequency", 2)?;
        let qformer = QFormerConfig {
            hidden: get(q, "hidden_size", 768)?,
            heads: get(q, "num_attention_heads", 12)?,
            layers,
            intermediate: get(q, "intermediate_size", 3072)?,
            cross_attention: (0..layers).map(|i| i % freq == 0).collect(),
            encoder_width: get(q, "encoder_hidden_size", vision.width)?,
            vocab: get(q, "vocab_size", 30523)?,
            max_positions: get(q, "max_position_embeddings", 512)?,
            eps: getf(q, "layer_norm_eps", 1e-12)?,
        };
        let cfg = Self { vision, qformer, queries: get(&root, "num_query_tokens", 32)?, ln_vision_eps: vision_eps };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        let v = &self.vision;
        if v.width == 0 || v.layers == 0 || v.patch == 0 || v.image_size < v.patch || v.heads == 0 || !v.width.is_multiple_of(v.heads) {
            return Err(format!("image tower shapes are inconsistent: {v:?}"));
        }
        let q = &self.qformer;
        if q.hidden == 0 || q.heads == 0 || !q.hidden.is_multiple_of(q.heads) {
            return Err(format!("the Q-Former's {} heads do not divide its width {}", q.heads, q.hidden));
        }
        if q.encoder_width != v.width {
            return Err(format!("the Q-Former cross-attends to {}-wide tokens but the image tower gives {}", q.encoder_width, v.width));
        }
        if self.queries == 0 {
            return Err("no learned queries".into());
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let v = &self.vision;
        format!(
            "{} width {} x {} layers, Q-Former {} x {} layers, {} queries",
            match v.kind {
                VisionKind::Eva => "EVA ViT",
                VisionKind::Clip => "CLIP ViT",
            },
            v.width,
            v.layers,
            self.qformer.hidden,
            self.qformer.layers,
            self.queries
        )
    }
}
