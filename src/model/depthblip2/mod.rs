//! DepthBLIP-2 ("DepthBLIP-2: Leveraging Language to Guide BLIP-2 in
//! Understanding Depth Information"): BLIP-2's Q-Former fuses the image
//! with each distance prompt ("This object is far"); per class, the
//! multimodal embedding averaged over the 32 query outputs (and over the
//! class's prompts) is read as a small map, `map_groups` x `map_height` x
//! width (the release: 3 x 16 x 16 of the 768 channels), reduced over the
//! groups (max), divided by the temperature and softmaxed over the
//! classes; depth is the probability-weighted sum of the bins (fixed, or
//! adapted by a small MLP learnt from a few images). All prompts go
//! through the Q-Former in one batch.

mod bins;
mod config;
pub mod family;
mod head;

use candle_core::{DType, Device, Result as CandleResult, Tensor};
use candle_nn::VarBuilder;

pub use bins::{range as bins_range, BinsMlp, HIDDEN as BINS_HIDDEN, LAYOUT_FLAG1, LAYOUT_FLAG2};
pub use config::{DepthBlip2Config, GroupReduce, MapLayout};
pub use head::{class_logits, depth_from_probabilities, MapReading};

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::pil_resize::Filter;
use crate::image::preprocess::Preprocessor;
use crate::model::blip2::VisionKind;
use crate::model::input::{Crop, InputGeometry};
use crate::model::{BackboneConfig, BackboneKind};
use crate::weights::{record_tensors, Blip2Format, Blip2StateDict};
use crate::model::blip2::{mean_queries, Blip2, Blip2Config};
use crate::model::prompt_bins::{average_mirrored, edge_margin, with_mirrored};
use crate::model::text::{pre_caption, BertTokenizer};

/// The prompts as Q-Former input: (P, L) ids padded with [PAD] = 0 and
/// the (P, L) mask, prompts class-major, `per_class` of them per class.
#[derive(Debug, Clone)]
pub struct PromptIds {
    pub ids: Vec<Vec<u32>>,
    pub per_class: usize,
}

/// Every class's sentences through LAVIS's caption processor and BERT's
/// tokenizer, classes in order.
pub fn prompt_ids(cfg: &DepthBlip2Config, tokenizer: &BertTokenizer) -> PromptIds {
    let prompts = cfg.prompts();
    let per_class = prompts.first().map_or(0, Vec::len);
    let ids = prompts.iter().flatten().map(|s| tokenizer.encode(&pre_caption(s, 50))).collect();
    PromptIds { ids, per_class }
}

/// The image side of a batch: `ln_vision` tokens of the frames (and of
/// their mirror images with `flip_average`).
#[derive(Debug, Clone)]
pub struct Encoded {
    /// (B or 2B, 1 + HW, D)
    pub tokens: Tensor,
    pub batch: usize,
}

#[derive(Debug, Clone)]
pub struct DepthBlip2 {
    blip2: Blip2,
    /// (P, Q + L, H) and (P, 1, 1, Q + L): the prompts' embeddings.
    prompts: (Tensor, Tensor),
    per_class: usize,
    /// (1, K, 1, 1) f32 bins in metres.
    bins: Tensor,
    bin_values: Vec<f64>,
    cfg: DepthBlip2Config,
    description: BackboneConfig,
}

impl DepthBlip2 {
    /// `vb` points at the root of a LAVIS-named state dict; `bins` are the
    /// depths of the classes (the YAML's, or the adaptive MLP's).
    pub fn new(vb: VarBuilder, cfg: &DepthBlip2Config, arch: &Blip2Config, tokenizer: &BertTokenizer, bins: Vec<f64>) -> Result<Self> {
        cfg.validate().map_err(Error::ModelConfig)?;
        arch.validate().map_err(Error::ModelConfig)?;
        let c = arch.qformer.hidden;
        if !c.is_multiple_of(cfg.map_groups * cfg.map_height) {
            return Err(Error::ModelConfig(format!(
                "map_groups x map_height = {} x {} does not divide the Q-Former width {c}",
                cfg.map_groups, cfg.map_height
            )));
        }
        let p = arch.vision.patch;
        if !cfg.input_height.is_multiple_of(p) || !cfg.input_width.is_multiple_of(p) {
            return Err(Error::ModelConfig(format!(
                "input_height x input_width {}x{} must be multiples of {p} (the image tower's patch size)",
                cfg.input_height, cfg.input_width
            )));
        }
        if tokenizer.vocab_size() > arch.qformer.vocab {
            return Err(Error::ModelConfig(format!(
                "the tokenizer has {} tokens, the Q-Former's word embeddings {}: they are not one BLIP-2's",
                tokenizer.vocab_size(),
                arch.qformer.vocab
            )));
        }
        if bins.len() != cfg.depth_classes.len() {
            return Err(Error::ModelConfig(format!("{} bins for {} depth classes", bins.len(), cfg.depth_classes.len())));
        }
        let blip2 = Blip2::new(vb.clone(), arch)?;
        let prompt_ids = prompt_ids(cfg, tokenizer);
        let longest = prompt_ids.ids.iter().map(Vec::len).max().unwrap_or(0);
        if longest > arch.qformer.max_positions {
            return Err(Error::ModelConfig(format!(
                "a prompt has {longest} tokens, the Q-Former reads at most {}",
                arch.qformer.max_positions
            )));
        }
        let dev = vb.device();
        let (ids, mask) = pad(&prompt_ids.ids, longest, dev)?;
        let prompts = blip2.embed_prompts(&ids, &mask.to_dtype(vb.dtype())?)?;
        let bins_t = Tensor::from_vec(bins.iter().map(|&b| b as f32).collect::<Vec<_>>(), (1, bins.len(), 1, 1), dev)?;
        let v = &arch.vision;
        let description = BackboneConfig {
            kind: BackboneKind::Clip,
            hidden_size: v.width,
            intermediate_size: v.mlp,
            num_hidden_layers: v.layers,
            num_attention_heads: v.heads,
            patch_size: v.patch,
            image_size: cfg.input_width,
            image_mean: cfg.image_mean,
            image_std: cfg.image_std,
            ..BackboneConfig::clip_vit_base_patch16()
        };
        Ok(Self { blip2, prompts, per_class: prompt_ids.per_class, bins: bins_t, bin_values: bins, cfg: cfg.clone(), description })
    }

    pub fn config(&self) -> &DepthBlip2Config {
        &self.cfg
    }

    pub fn blip2(&self) -> &Blip2 {
        &self.blip2
    }

    /// The bins in use (metres).
    pub fn bins(&self) -> &[f64] {
        &self.bin_values
    }

    /// `ln_vision` tokens (B, 1 + HW, D) of normalised pixels.
    pub fn image_embeds(&self, pixels: &Tensor) -> CandleResult<Tensor> {
        self.blip2.image_embeds(pixels)
    }

    /// The multimodal query outputs (B, P, Q, H) of every prompt.
    pub fn query_outputs(&self, image_embeds: &Tensor) -> CandleResult<Tensor> {
        self.blip2.multimodal(image_embeds, &self.prompts.0, &self.prompts.1)
    }

    /// P_f: per class the query outputs averaged over queries and prompts,
    /// (B, K, C) in f32.
    pub fn class_embeddings(&self, image_embeds: &Tensor) -> CandleResult<Tensor> {
        let per_prompt = mean_queries(&self.query_outputs(image_embeds)?)?; // (B, P, C)
        let (b, p, c) = per_prompt.dims3()?;
        per_prompt.reshape((b, p / self.per_class, self.per_class, c))?.mean(2)
    }

    /// Class logits on the map (B, K, h, w) / temperature, f32.
    pub fn logits(&self, image_embeds: &Tensor) -> CandleResult<Tensor> {
        let c = &self.cfg;
        let reading = MapReading { groups: c.map_groups, height: c.map_height, layout: c.map_layout, reduce: c.group_reduce, temperature: c.temperature };
        class_logits(&self.class_embeddings(image_embeds)?, &reading)
    }

    /// Class probabilities on the map (B, K, h, w), f32.
    pub fn probabilities(&self, image_embeds: &Tensor) -> CandleResult<Tensor> {
        candle_nn::ops::softmax(&self.logits(image_embeds)?, 1)
    }

    /// Depth on the map (B, 1, h, w) from image tokens, no flip averaging.
    pub fn depth(&self, image_embeds: &Tensor) -> CandleResult<Tensor> {
        depth_from_probabilities(&self.probabilities(image_embeds)?, &self.bins)
    }

    /// The image tower on the frames (and their mirror images).
    pub fn encode(&self, pixels: &Tensor) -> CandleResult<Encoded> {
        let batch = pixels.dim(0)?;
        Ok(Encoded { tokens: self.image_embeds(&with_mirrored(pixels, self.cfg.flip_average)?)?, batch })
    }

    /// The Q-Former and head: depth on the map (B, 1, h, w) in metres,
    /// f32, averaged with the mirror image's with `flip_average`.
    pub fn decode(&self, encoded: &Encoded) -> CandleResult<Tensor> {
        average_mirrored(self.depth(&encoded.tokens)?, encoded.batch, self.cfg.flip_average)
    }

    /// As [`Self::decode`], with the end classes' margin on the same map
    /// ([`crate::model::prompt_bins::edge_margin`]).
    pub fn decode_with_edges(&self, encoded: &Encoded) -> CandleResult<(Tensor, Tensor)> {
        let p = self.probabilities(&encoded.tokens)?;
        let depth = depth_from_probabilities(&p, &self.bins)?;
        let edge = edge_margin(&p, 1)?;
        let flip = self.cfg.flip_average;
        Ok((average_mirrored(depth, encoded.batch, flip)?, average_mirrored(edge, encoded.batch, flip)?))
    }

    /// Normalised pixels (B, 3, H, W) -> depth on the map (B, 1, h, w).
    pub fn forward(&self, pixels: &Tensor) -> CandleResult<Tensor> {
        self.decode(&self.encode(pixels)?)
    }

    /// The crop, the input (Pillow bilinear, as torchvision's `Resize`)
    /// and the output placement.
    pub fn geometry(&self) -> InputGeometry {
        let c = &self.cfg;
        let pre = Preprocessor::new_rect(c.input_width, c.input_height, c.image_mean, c.image_std).with_filter(Filter::Bilinear);
        let crop = c.crop.map(|edges| Crop { edges, frame: c.crop_frame });
        InputGeometry::from_parts(crop, pre, c.upsample_align_corners)
    }

    /// For callers that feed square inputs (evaluation): the input side,
    /// the patch, the normalisation.
    pub fn input_description(&self) -> &BackboneConfig {
        &self.description
    }

    /// The map's (height, width).
    pub fn map_size(&self) -> (usize, usize) {
        let c = self.blip2.config().qformer.hidden;
        (self.cfg.map_height, c / (self.cfg.map_groups * self.cfg.map_height))
    }
}

/// Ids padded to `len` with 0 and the 1/0 mask, both (P, len).
fn pad(rows: &[Vec<u32>], len: usize, dev: &Device) -> CandleResult<(Tensor, Tensor)> {
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in rows {
        ids.extend(r.iter().copied().chain(std::iter::repeat_n(0, len - r.len())));
        mask.extend((0..len).map(|i| if i < r.len() { 1f32 } else { 0.0 }));
    }
    Ok((Tensor::from_vec(ids, (rows.len(), len), dev)?, Tensor::from_vec(mask, (rows.len(), len), dev)?.to_dtype(DType::F32)?))
}

/// The weights and the architecture: a Hugging Face file with its
/// `config.json` (`hf_config`, else beside it), or LAVIS's checkpoint and
/// tower file with the shapes read from the tensors; checked strictly.
pub fn load_weights(cfg: &DepthBlip2Config, checkpoint: &Path, vision: Option<&Path>, hf_config: Option<&Path>) -> Result<(Blip2StateDict, Blip2Config)> {
    let mut dict = Blip2StateDict::from_files(checkpoint, vision)?;
    let arch = check_weights(cfg, &mut dict, hf_config)?;
    Ok((dict, arch))
}

/// The architecture of read weights (see [`load_weights`]), the tower
/// layers beyond `vision_layers` set aside, every tensor checked.
pub fn check_weights(cfg: &DepthBlip2Config, dict: &mut Blip2StateDict, hf_config: Option<&Path>) -> Result<Blip2Config> {
    let checkpoint = dict.path().to_path_buf();
    let hints = cfg.hints();
    let arch = match dict.format() {
        Blip2Format::HuggingFace => {
            let path = match hf_config {
                Some(p) => p.to_path_buf(),
                None => checkpoint.parent().map(|d| d.join("config.json")).filter(|p| p.is_file()).ok_or_else(|| Error::Weights {
                    path: checkpoint.clone(),
                    message: "Hugging Face BLIP-2 weights need their config.json (beside them, or --clip-config)".into(),
                })?,
            };
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            Blip2Config::from_hf_json(&text, &hints).map_err(|message| Error::Config { path, message })?
        }
        Blip2Format::Lavis => {
            if let Some(p) = hf_config {
                return Err(Error::Config { path: p.to_owned(), message: "a config.json is for Hugging Face weights; LAVIS's are read from their shapes".into() });
            }
            Blip2Config::infer(&dict.shapes(), &hints, 1e-5).map_err(|message| Error::Weights { path: checkpoint.clone(), message })?
        }
    };
    let stored = {
        let shapes = dict.shapes();
        let prefix = if arch.vision.kind == VisionKind::Eva { "visual_encoder.blocks" } else { "visual_encoder.transformer.resblocks" };
        crate::model::shapes::count_layers(&shapes, prefix)
    };
    if arch.vision.layers > stored && stored > 0 {
        return Err(Error::Config { path: checkpoint, message: format!("vision_layers {} but the tower's file holds {stored} layers", arch.vision.layers) });
    }
    dict.drop_tower_layers_from(arch.vision.layers);
    let expected = record_tensors(&dict.names(), |vb| Blip2::new(vb, &arch).map(|_| ()))?;
    dict.check(&expected)?;
    Ok(arch)
}

/// The YAML's `tokenizer`, else `tokenizer.json` or `vocab.txt` beside
/// the weights, else the built-in bert-base-uncased vocabulary.
pub fn find_tokenizer(cfg: &DepthBlip2Config, checkpoint: &Path) -> Result<BertTokenizer> {
    if let Some(path) = &cfg.tokenizer {
        return BertTokenizer::from_file(path);
    }
    if let Some(dir) = checkpoint.parent() {
        for name in ["tokenizer.json", "vocab.txt"] {
            let beside = dir.join(name);
            if beside.is_file() {
                return BertTokenizer::from_file(&beside);
            }
        }
    }
    Ok(BertTokenizer::bert_base_uncased())
}
