//! The library's front door: load a depth model from its files (the
//! family chosen by the model config's `model_type`), turn camera frames
//! into metric depth maps of any size, timed per stage. Families:
//! SPACE-CLIP (`space_clip`, the default), DepthCLIP (`depthclip`) and
//! DepthBLIP-2 (`depthblip2`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::model::{BackboneConfig, BackboneKind, DecoderConfig};
use crate::device::{cpu_split, DeviceSpec, ModelDType};
use crate::error::{Error, Result};
use crate::image::ImageView;
use crate::model::depthclip::{declare_towers, ClipArchitecture, InputGeometry, PromptOverrides};
use crate::model::prompt_bins::{mark_beyond_bins, BeyondBins};
use crate::model::text::ClipTokenizer;
use crate::model::{DepthBlip2, DepthBlip2Config, DepthClip, DepthClipConfig, SpaceClip, VisionOutput};
use crate::image::postprocess::resize_bilinear_clamped;
use crate::image::device_preprocess::DevicePreprocessor;
use crate::image::preprocess::Preprocessor;
use crate::weights::{expected_tensors, record_tensors, ClipLayout, ClipStateDict, StateDict};

/// The files a model is made of.
#[derive(Debug, Clone, Default)]
pub struct ModelFiles {
    /// Training YAML (decoder settings, depth range, backbone name).
    pub config: PathBuf,
    /// `.pt`/`.pth` training checkpoint or `.safetensors` state dict.
    pub checkpoint: PathBuf,
    /// Separate HF CLIP weights, when the checkpoint holds only the decoder.
    pub clip_weights: Option<PathBuf>,
    /// HF `config.json` of the backbone; else the one beside `clip_weights`,
    /// else the preset named by `clip_model_name`, else `clip_config.json`
    /// beside the checkpoint (as `clip_depth train` writes it).
    pub clip_config: Option<PathBuf>,
}

impl ModelFiles {
    /// Decides the backbone's architecture (see [`ModelFiles::clip_config`]),
    /// then applies the training config's backbone type and normalisation.
    pub fn backbone_config(&self, decoder: &DecoderConfig) -> Result<BackboneConfig> {
        let mut cfg = self.backbone_architecture(decoder)?;
        let wants = if decoder.wants_siglip() { BackboneKind::Siglip } else { BackboneKind::Clip };
        if cfg.kind != wants {
            return Err(Error::Config {
                path: self.config.clone(),
                message: format!(
                    "the config asks for a {wants:?} backbone (vision_backbone_type {:?}, clip_model_name {:?}) but the backbone config describes {:?}",
                    decoder.vision_backbone_type, decoder.clip_model_name, cfg.kind
                ),
            });
        }
        if let Some(mean) = decoder.vision_image_mean {
            cfg.image_mean = mean;
        }
        if let Some(std) = decoder.vision_image_std {
            cfg.image_std = std;
        }
        Ok(cfg)
    }

    fn backbone_architecture(&self, decoder: &DecoderConfig) -> Result<BackboneConfig> {
        if let Some(path) = &self.clip_config {
            return BackboneConfig::from_json_file(path);
        }
        if let Some(beside) = self.clip_weights.as_deref().and_then(Path::parent).map(|d| d.join("config.json")) {
            if beside.is_file() {
                return BackboneConfig::from_json_file(&beside);
            }
        }
        // Training writes the backbone's config beside its checkpoints.
        if let Some(beside) = self.checkpoint.parent().map(|d| d.join("clip_config.json")) {
            if beside.is_file() && BackboneConfig::from_preset(&decoder.clip_model_name).is_none() {
                return BackboneConfig::from_json_file(&beside);
            }
        }
        BackboneConfig::from_preset(&decoder.clip_model_name).ok_or_else(|| Error::Config {
            path: self.config.clone(),
            message: format!(
                "clip_model_name {:?} is not a known preset ({}); give the backbone's HF config.json",
                decoder.clip_model_name,
                BackboneConfig::PRESETS.join(", ")
            ),
        })
    }
}

/// The depth model families, as the model config's `model_type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// `space_clip` (or no `model_type`): a frozen CLIP ViT and a trained decoder.
    SpaceClip,
    /// `depthclip`: zero-shot, a whole CLIP and distance prompts.
    DepthClip,
    /// `depthblip2`: BLIP-2's Q-Former fusing the image with distance
    /// prompts; bins fixed or adapted from a few images.
    DepthBlip2,
}

impl ModelFamily {
    pub const NAMES: [&'static str; 3] = ["space_clip", "depthclip", "depthblip2"];

    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        match name.trim().to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "" | "space_clip" | "spaceclip" => Ok(Self::SpaceClip),
            "depthclip" | "depth_clip" => Ok(Self::DepthClip),
            "depthblip2" | "depth_blip2" | "depthblip_2" | "depth_blip_2" => Ok(Self::DepthBlip2),
            other => Err(format!("model_type {other:?} is not a known model family ({})", Self::NAMES.join(", "))),
        }
    }

    /// The family a model YAML asks for (`model_type`, default `space_clip`).
    pub fn of_config(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            model_type: Option<serde_norway::Value>,
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let config_error = |message: String| Error::Config { path: path.to_owned(), message };
        let head: Head = serde_norway::from_str(&text).map_err(|e| config_error(e.to_string().replace('\n', " ")))?;
        match head.model_type {
            None | Some(serde_norway::Value::Null) => Ok(Self::SpaceClip),
            Some(serde_norway::Value::String(name)) => Self::parse(&name).map_err(config_error),
            Some(other) => Err(config_error(format!("model_type must be a string, got {other:?}"))),
        }
    }
}

/// Settings that replace the model config's (the node's parameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOverrides {
    /// Replaces the config's `model_type`.
    pub model_type: Option<ModelFamily>,
    /// DepthCLIP's prompt and bin lists.
    pub prompts: PromptOverrides,
}

/// The model behind an estimator.
#[derive(Debug, Clone)]
pub enum DepthModel {
    SpaceClip(SpaceClip),
    DepthClip(DepthClip),
    DepthBlip2(DepthBlip2),
}

impl DepthModel {
    pub fn family(&self) -> ModelFamily {
        match self {
            Self::SpaceClip(_) => ModelFamily::SpaceClip,
            Self::DepthClip(_) => ModelFamily::DepthClip,
            Self::DepthBlip2(_) => ModelFamily::DepthBlip2,
        }
    }

    pub fn as_space_clip(&self) -> Option<&SpaceClip> {
        match self {
            Self::SpaceClip(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_depth_clip(&self) -> Option<&DepthClip> {
        match self {
            Self::DepthClip(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_depth_blip2(&self) -> Option<&DepthBlip2> {
        match self {
            Self::DepthBlip2(m) => Some(m),
            _ => None,
        }
    }

    /// SPACE-CLIP: its backbone's config. DepthCLIP: what a caller feeding
    /// square inputs should feed ([`DepthClip::input_description`]).
    pub fn backbone_config(&self) -> &BackboneConfig {
        match self {
            Self::SpaceClip(m) => m.backbone_config(),
            Self::DepthClip(m) => m.input_description(),
            Self::DepthBlip2(m) => m.input_description(),
        }
    }

    /// A SPACE-CLIP backbone's hidden states (DepthCLIP has none to give).
    pub fn hidden_states(&self, pixels: &Tensor, taps: &[usize]) -> candle_core::Result<VisionOutput> {
        match self {
            Self::SpaceClip(m) => m.hidden_states(pixels, taps),
            Self::DepthClip(_) => candle_core::bail!("DepthCLIP has no SPACE-CLIP backbone taps; use DepthClip::image_tokens"),
            Self::DepthBlip2(_) => candle_core::bail!("DepthBLIP-2 has no SPACE-CLIP backbone taps; use DepthBlip2::image_embeds"),
        }
    }

    /// Normalised pixels (B, 3, H, W) -> depth (B, 1, h, w), unclamped:
    /// SPACE-CLIP at its input size, DepthCLIP on its token grid.
    pub fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::SpaceClip(m) => m.forward(pixels),
            Self::DepthClip(m) => m.forward(pixels),
            Self::DepthBlip2(m) => m.forward(pixels),
        }
    }

    fn depth_range(&self) -> (f32, f32) {
        match self {
            Self::SpaceClip(m) => {
                let cfg = m.decoder_config();
                (cfg.min_depth as f32, cfg.max_depth as f32)
            }
            Self::DepthClip(m) => {
                let (lo, hi) = m.config().depth_range();
                (lo as f32, hi as f32)
            }
            Self::DepthBlip2(m) => {
                let (lo, hi) = m.config().depth_range(m.bins());
                (lo as f32, hi as f32)
            }
        }
    }
}

/// Time spent in each stage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    pub preprocess: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Resize to the output size, clamp, copy back to the host.
    pub resize: Duration,
    /// How many forward passes the batch ran as: 1 for one pass over the
    /// whole batch, more when a CPU batch was split over the cores.
    pub groups: usize,
}

impl StageTimings {
    pub fn total(&self) -> Duration {
        self.preprocess + self.encoder + self.decoder + self.resize
    }
}

/// A row-major depth map in metres (Z along the optical axis).
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

pub struct DepthEstimator {
    model: DepthModel,
    preprocessor: Preprocessor,
    /// DepthCLIP's crop and output placement.
    geometry: Option<InputGeometry>,
    /// Set when preprocessing runs on the model's device (the default on
    /// a GPU); otherwise frames are preprocessed on the CPU, bit-exactly.
    device_preprocessor: Option<DevicePreprocessor>,
    device: Device,
    dtype: DType,
    name: String,
    /// Bin-based heads: how pixels an end class leads come out.
    beyond_bins: BeyondBins,
    /// Split CPU batches over the cores (see [`cpu_split`]).
    split_batches: bool,
}

impl DepthEstimator {
    /// Reads the configs and weights, checks the weights strictly against
    /// the architecture, and builds the model on `device` in `dtype`.
    pub fn load(files: &ModelFiles, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        Self::load_with(files, &ModelOverrides::default(), device, dtype)
    }

    /// [`Self::load`] with some of the model config's settings replaced.
    pub fn load_with(files: &ModelFiles, overrides: &ModelOverrides, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        let family = match overrides.model_type {
            Some(f) => f,
            None => ModelFamily::of_config(&files.config)?,
        };
        if family == ModelFamily::SpaceClip && !overrides.prompts.is_empty() {
            return Err(Error::Config {
                path: files.config.clone(),
                message: "prompt and bin settings are DepthCLIP's and DepthBLIP-2's; this is a SPACE-CLIP model (model_type)".into(),
            });
        }
        match family {
            ModelFamily::SpaceClip => Self::load_space_clip(files, device, dtype),
            ModelFamily::DepthClip => Self::load_depth_clip(files, &overrides.prompts, device, dtype),
            ModelFamily::DepthBlip2 => Self::load_depth_blip2(files, &overrides.prompts, device, dtype),
        }
    }

    fn load_space_clip(files: &ModelFiles, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        let decoder_cfg = DecoderConfig::from_yaml_file(&files.config)?;
        let backbone_cfg = files.backbone_config(&decoder_cfg)?;
        decoder_cfg
            .check_taps(backbone_cfg.num_hidden_layers)
            .map_err(|message| Error::Config { path: files.config.clone(), message })?;
        let device = device.open()?;
        if device.is_cpu() && dtype.0 == DType::BF16 {
            return Err(Error::Device(
                "bf16 is not supported on the CPU (candle has no CPU bf16 matmul); use f32 or f16, or a CUDA device".into(),
            ));
        }
        let state = StateDict::from_files(&files.checkpoint, files.clip_weights.as_deref())?;
        let expected = expected_tensors(&backbone_cfg, &decoder_cfg, &state.names())?;
        state.check(&expected).map_err(|e| match e {
            Error::WeightMismatch(report) => {
                let mut names = files.checkpoint.display().to_string();
                if let Some(clip) = &files.clip_weights {
                    names.push_str(&format!(" + {}", clip.display()));
                }
                Error::WeightMismatch(format!("{names}: {report}"))
            }
            other => other,
        })?;
        let vb = state.into_var_builder(dtype.0, &device);
        let model = SpaceClip::new(vb, &backbone_cfg, &decoder_cfg)?;
        Ok(Self::from_model(model, device, dtype.0, decoder_cfg.clip_model_name.clone()))
    }

    /// DepthCLIP: the YAML, a whole CLIP (OpenAI TorchScript, OpenCLIP or
    /// Hugging Face weights), its architecture from the config file beside
    /// it or from the tensors, the tokenizer.
    fn load_depth_clip(files: &ModelFiles, overrides: &PromptOverrides, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        let config_error = |message: String| Error::Config { path: files.config.clone(), message };
        let mut cfg = DepthClipConfig::from_yaml_file(&files.config)?;
        cfg.apply(overrides).map_err(config_error)?;
        if let Some(clip) = &files.clip_weights {
            return Err(Error::Weights {
                path: clip.clone(),
                message: "separate CLIP weights are a SPACE-CLIP setting: DepthCLIP reads the whole CLIP from the checkpoint".into(),
            });
        }
        let device = device.open()?;
        if device.is_cpu() && dtype.0 == DType::BF16 {
            return Err(Error::Device(
                "bf16 is not supported on the CPU (candle has no CPU bf16 matmul); use f32 or f16, or a CUDA device".into(),
            ));
        }
        let dict = ClipStateDict::from_file(&files.checkpoint)?;
        let arch = clip_architecture(files, &dict)?;
        let expected = record_tensors(&dict.names(), |vb| declare_towers(vb, &arch))?;
        dict.check(&expected)?;
        let tokenizer = match (&cfg.tokenizer, files.checkpoint.parent().map(|d| d.join("tokenizer.json"))) {
            (Some(path), _) => ClipTokenizer::from_file(path)?,
            (None, Some(beside)) if beside.is_file() && dict.layout() == ClipLayout::HuggingFace => ClipTokenizer::from_file(&beside)?,
            _ => ClipTokenizer::openai(),
        };
        let vb = dict.into_var_builder(dtype.0, &device);
        let model = DepthClip::new(vb, &cfg, &arch, &tokenizer).map_err(|e| match e {
            Error::ModelConfig(message) => config_error(message),
            other => other,
        })?;
        let name = format!("DepthCLIP ({})", arch.image.describe());
        Ok(Self::from_depth_clip(model, device, dtype.0, name))
    }

    /// DepthBLIP-2: the YAML, BLIP-2 weights (LAVIS's Q-Former checkpoint
    /// with its tower's file as `clip_weights`, or a Hugging Face
    /// Blip2ForImageTextRetrieval with its `config.json`), the tokenizer,
    /// the bins (adapted by the YAML's `adaptive_bins` MLP when given).
    fn load_depth_blip2(files: &ModelFiles, overrides: &PromptOverrides, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        let config_error = |message: String| Error::Config { path: files.config.clone(), message };
        let mut cfg = DepthBlip2Config::from_yaml_file(&files.config)?;
        cfg.apply(overrides).map_err(config_error)?;
        let device = device.open()?;
        if device.is_cpu() && dtype.0 == DType::BF16 {
            return Err(Error::Device(
                "bf16 is not supported on the CPU (candle has no CPU bf16 matmul); use f32 or f16, or a CUDA device".into(),
            ));
        }
        let (dict, arch) = crate::model::depthblip2::load_weights(&cfg, &files.checkpoint, files.clip_weights.as_deref(), files.clip_config.as_deref())?;
        let tokenizer = crate::model::depthblip2::find_tokenizer(&cfg, &files.checkpoint)?;
        let bins = cfg.class_bins()?;
        let vb = dict.into_var_builder(dtype.0, &device);
        let model = DepthBlip2::new(vb, &cfg, &arch, &tokenizer, bins).map_err(|e| match e {
            Error::ModelConfig(message) => config_error(message),
            other => other,
        })?;
        let name = format!("DepthBLIP-2 ({})", arch.describe());
        Ok(Self::from_depth_blip2(model, device, dtype.0, name))
    }

    /// Wraps a built DepthBLIP-2 model (its weights must be on `device`).
    pub fn from_depth_blip2(model: DepthBlip2, device: Device, dtype: DType, name: String) -> Self {
        let geometry = model.geometry();
        let preprocessor = geometry.preprocessor().clone();
        Self { model: DepthModel::DepthBlip2(model), preprocessor, geometry: Some(geometry), device_preprocessor: None, device, dtype, name, beyond_bins: BeyondBins::default(), split_batches: true }
    }

    /// Wraps an already built model (its weights must be on `device`).
    pub fn from_model(model: SpaceClip, device: Device, dtype: DType, name: String) -> Self {
        let preprocessor = Preprocessor::for_backbone(model.backbone_config());
        let device_preprocessor = (!device.is_cpu()).then(|| DevicePreprocessor::for_backbone(model.backbone_config()));
        Self { model: DepthModel::SpaceClip(model), preprocessor, geometry: None, device_preprocessor, device, dtype, name, beyond_bins: BeyondBins::default(), split_batches: true }
    }

    /// Wraps a built DepthCLIP model (its weights must be on `device`).
    pub fn from_depth_clip(model: DepthClip, device: Device, dtype: DType, name: String) -> Self {
        let geometry = InputGeometry::new(model.config());
        let preprocessor = geometry.preprocessor().clone();
        Self { model: DepthModel::DepthClip(model), preprocessor, geometry: Some(geometry), device_preprocessor: None, device, dtype, name, beyond_bins: BeyondBins::default(), split_batches: true }
    }

    /// Preprocess on the model's device (on by default on a GPU) or on the
    /// CPU (the default there, and bit-exact with Pillow). DepthCLIP's
    /// crop and non-square input are always prepared on the CPU.
    pub fn set_device_preprocessing(&mut self, on: bool) {
        self.device_preprocessor = match &self.model {
            DepthModel::SpaceClip(m) => on.then(|| DevicePreprocessor::for_backbone(m.backbone_config())),
            DepthModel::DepthClip(_) | DepthModel::DepthBlip2(_) => None,
        };
    }

    pub fn device_preprocessing(&self) -> bool {
        self.device_preprocessor.is_some()
    }

    pub fn model(&self) -> &DepthModel {
        &self.model
    }

    pub fn family(&self) -> ModelFamily {
        self.model.family()
    }

    /// The frame -> input preparation (non-square for DepthCLIP).
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// (width, height) of the model's input.
    pub fn input_dims(&self) -> (usize, usize) {
        (self.preprocessor.width(), self.preprocessor.height())
    }

    /// The model's name (the backbone name from the training config;
    /// `DepthCLIP <clip_vis>`).
    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bin-based heads (DepthCLIP, DepthBLIP-2): whether a pixel whose most
    /// likely class is the farthest (nearest) is reported as +Inf (-Inf),
    /// the default, or as the bins' weighted mean. Other models ignore it.
    pub fn set_beyond_bins(&mut self, beyond_bins: BeyondBins) {
        self.beyond_bins = beyond_bins;
    }

    /// Whether a CPU batch may run as groups of frames side by side (the
    /// default; also off for every estimator with
    /// `CLIP_DEPTH_NO_BATCH_SPLIT=1`), or always as one forward pass
    /// ([`StageTimings::groups`] says which ran).
    pub fn set_batch_split(&mut self, on: bool) {
        self.split_batches = on;
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The clamp range of the output, from the model config (DepthCLIP:
    /// the bins' range unless `min_depth`/`max_depth` are given).
    pub fn depth_range(&self) -> (f32, f32) {
        self.model.depth_range()
    }

    /// The side of a square input: SPACE-CLIP's input; for DepthCLIP the
    /// tower's native resolution (see [`Self::input_dims`] for its own).
    pub fn input_size(&self) -> usize {
        match &self.model {
            DepthModel::SpaceClip(_) => self.preprocessor.size(),
            DepthModel::DepthClip(m) => m.input_description().image_size,
            DepthModel::DepthBlip2(m) => m.input_description().image_size,
        }
    }

    /// The normalised input batch (B, 3, H, W) in f32 on the CPU (DepthCLIP:
    /// cropped first when its config has a crop).
    pub fn preprocess(&self, images: &[ImageView<'_>]) -> Result<Tensor> {
        if images.is_empty() {
            return Err(Error::InvalidImage("empty batch".into()));
        }
        let (w, h) = self.input_dims();
        let mut planes = Vec::with_capacity(images.len() * 3 * w * h);
        for image in images {
            match &self.geometry {
                Some(g) => g.pixels_into(image, &mut planes)?,
                None => self.preprocessor.process_into(image, &mut planes)?,
            }
        }
        Ok(Tensor::from_vec(planes, (images.len(), 3, h, w), &Device::Cpu)?)
    }

    /// Depth for one frame at `width` x `height` (the frame's own size when
    /// `None`), clamped to the configured depth range.
    pub fn estimate(&self, image: &ImageView<'_>, size: Option<(usize, usize)>) -> Result<(DepthMap, StageTimings)> {
        let size = size.unwrap_or((image.width(), image.height()));
        let (mut maps, timings) = self.estimate_batch(std::slice::from_ref(image), size)?;
        Ok((maps.remove(0), timings))
    }

    /// Depth for a batch of frames in one forward pass, all at one output size.
    pub fn estimate_batch(&self, images: &[ImageView<'_>], size: (usize, usize)) -> Result<(Vec<DepthMap>, StageTimings)> {
        self.estimate_sized(images, &vec![size; images.len()])
    }

    /// Depth for a batch of frames in one forward pass, each frame resized
    /// to its own output size (e.g. several cameras of different sizes).
    pub fn estimate_sized(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)]) -> Result<(Vec<DepthMap>, StageTimings)> {
        self.run(images, sizes, Some(self.depth_range()))
    }

    /// As [`Self::estimate_sized`], but the values are the model's own,
    /// not clamped to its depth range: what a range test (REP 117's
    /// too-near / too-far) or an evaluation with median scaling needs.
    pub fn estimate_sized_raw(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)]) -> Result<(Vec<DepthMap>, StageTimings)> {
        self.run(images, sizes, None)
    }

    fn run(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)], clamp: Option<(f32, f32)>) -> Result<(Vec<DepthMap>, StageTimings)> {
        if sizes.len() != images.len() {
            return Err(Error::InvalidImage(format!("{} images but {} output sizes", images.len(), sizes.len())));
        }
        if let Some((w, h)) = sizes.iter().find(|(w, h)| *w == 0 || *h == 0) {
            return Err(Error::InvalidImage(format!("output size {w}x{h} is empty")));
        }
        if self.device.is_cpu() && self.split_batches {
            if let Some(groups) = cpu_split::plan(images.len(), candle_core::utils::get_num_threads()) {
                return self.run_side_by_side(images, sizes, clamp, &groups);
            }
        }
        self.run_whole(images, sizes, clamp)
    }

    /// A CPU batch as groups of frames run at once, each on its own share
    /// of the cores (see [`cpu_split`]); the maps in order, each stage's
    /// time the longest group's.
    fn run_side_by_side(
        &self,
        images: &[ImageView<'_>],
        sizes: &[(usize, usize)],
        clamp: Option<(f32, f32)>,
        groups: &[std::ops::Range<usize>],
    ) -> Result<(Vec<DepthMap>, StageTimings)> {
        let pools = cpu_split::pools(groups.len(), candle_core::utils::get_num_threads()).map_err(Error::Device)?;
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .iter()
                .zip(pools.iter())
                .map(|(r, pool)| {
                    let (images, sizes) = (&images[r.clone()], &sizes[r.clone()]);
                    s.spawn(move || pool.install(|| self.run_whole(images, sizes, clamp)))
                })
                .collect();
            // A panic in a group is the caller's, as it would be in one pass.
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect::<Vec<_>>()
        });
        let mut maps = Vec::with_capacity(images.len());
        let mut timings = StageTimings::default();
        for result in results {
            let (m, t) = result?;
            maps.extend(m);
            timings.preprocess = timings.preprocess.max(t.preprocess);
            timings.encoder = timings.encoder.max(t.encoder);
            timings.decoder = timings.decoder.max(t.decoder);
            timings.resize = timings.resize.max(t.resize);
        }
        timings.groups = groups.len();
        Ok((maps, timings))
    }

    /// One forward pass over the whole batch.
    fn run_whole(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)], clamp: Option<(f32, f32)>) -> Result<(Vec<DepthMap>, StageTimings)> {
        let mut timings = StageTimings { groups: 1, ..Default::default() };
        let t = Instant::now();
        let pixels = match &self.device_preprocessor {
            Some(on_device) if !images.is_empty() => on_device.process_batch(images, &self.device)?,
            _ => self.preprocess(images)?.to_device(&self.device)?,
        };
        let pixels = pixels.to_dtype(self.dtype)?;
        self.sync()?;
        timings.preprocess = t.elapsed();

        let depth = match &self.model {
            DepthModel::SpaceClip(model) => {
                let t = Instant::now();
                let encoded = model.encode(&pixels)?;
                self.sync()?;
                timings.encoder = t.elapsed();

                let t = Instant::now();
                let depth = model.decode(&encoded)?;
                self.sync()?;
                timings.decoder = t.elapsed();
                depth
            }
            DepthModel::DepthClip(model) => {
                let decode = |e: &_| {
                    let (depth, edge) = model.decode_with_edges(e)?;
                    Ok((depth, edge, e.grid))
                };
                return self.run_on_grid(|p| model.encode(p), decode, images, &pixels, sizes, clamp, timings);
            }
            DepthModel::DepthBlip2(model) => {
                let map = model.map_size();
                let decode = |e: &_| {
                    let (depth, edge) = model.decode_with_edges(e)?;
                    Ok((depth, edge, map))
                };
                return self.run_on_grid(|p| model.encode(p), decode, images, &pixels, sizes, clamp, timings);
            }
        };

        let t = Instant::now();
        let (min_d, max_d) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        // The S x S maps come to the host once; resizing there is one pass.
        let (_, _, sh, sw) = depth.dims4()?;
        let host = depth.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let maps = host
            .chunks_exact(sh * sw)
            .zip(sizes)
            .map(|(map, &(width, height))| DepthMap {
                width,
                height,
                data: resize_bilinear_clamped(map, sw, sh, width, height, min_d, max_d),
            })
            .collect();
        timings.resize = t.elapsed();
        Ok((maps, timings))
    }

    /// DepthCLIP's and DepthBLIP-2's image tower (`encode`) and head
    /// (`decode`: depth, the end classes' margin and their grid), then each
    /// grid map resized into its frame's crop region (NaN outside), clamped
    /// when asked, and the pixels an end class leads marked (see
    /// [`BeyondBins`]).
    #[allow(clippy::too_many_arguments)]
    fn run_on_grid<E>(
        &self,
        encode: impl Fn(&Tensor) -> candle_core::Result<E>,
        decode: impl Fn(&E) -> candle_core::Result<(Tensor, Tensor, (usize, usize))>,
        images: &[ImageView<'_>],
        pixels: &Tensor,
        sizes: &[(usize, usize)],
        clamp: Option<(f32, f32)>,
        mut timings: StageTimings,
    ) -> Result<(Vec<DepthMap>, StageTimings)> {
        let t = Instant::now();
        let encoded = encode(pixels)?;
        self.sync()?;
        timings.encoder = t.elapsed();

        let t = Instant::now();
        let (depth, edge, (gh, gw)) = decode(&encoded)?;
        self.sync()?;
        timings.decoder = t.elapsed();

        let t = Instant::now();
        let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let host = depth.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let edges = edge.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let geometry = self.geometry.as_ref().ok_or_else(|| Error::ModelConfig("a grid model without its input geometry".into()))?;
        let unbounded = (f32::NEG_INFINITY, f32::INFINITY);
        let maps = host
            .chunks_exact(gh * gw)
            .zip(edges.chunks_exact(gh * gw))
            .zip(images.iter().zip(sizes))
            .map(|((map, edge), (image, &(width, height)))| {
                let region = geometry.region((image.width(), image.height()), (width, height));
                let mut data = geometry.place(map, (gw, gh), (width, height), region, (lo, hi));
                if self.beyond_bins == BeyondBins::Mark {
                    mark_beyond_bins(&mut data, &geometry.place(edge, (gw, gh), (width, height), region, unbounded));
                }
                DepthMap { width, height, data }
            })
            .collect();
        timings.resize = t.elapsed();
        Ok((maps, timings))
    }

    /// Depth from already normalised pixels (B, 3, H, W) in f32, each map
    /// resized to `size` (width, height); clamped to the depth range when
    /// `clamp`. For evaluation, which feeds the loader's exact input
    /// (DepthCLIP: any size its tower takes; the map covers the whole output).
    pub fn depth_from_pixels(&self, pixels: &Tensor, size: (usize, usize), clamp: bool) -> Result<Vec<DepthMap>> {
        let pixels = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        let depth = self.model.forward(&pixels)?;
        let (min_d, max_d) = if clamp { self.depth_range() } else { (f32::NEG_INFINITY, f32::INFINITY) };
        let (_, _, sh, sw) = depth.dims4()?;
        let host = depth.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let align_corners = match &self.model {
            DepthModel::DepthClip(m) => m.config().upsample_align_corners,
            DepthModel::DepthBlip2(m) => m.config().upsample_align_corners,
            DepthModel::SpaceClip(_) => false,
        };
        Ok(host
            .chunks_exact(sh * sw)
            .map(|map| DepthMap {
                width: size.0,
                height: size.1,
                data: if self.geometry.is_some() {
                    crate::model::depthclip::resize_bilinear(map, sw, sh, size.0, size.1, align_corners)
                        .into_iter()
                        .map(|v| v.clamp(min_d, max_d))
                        .collect()
                } else {
                    resize_bilinear_clamped(map, sw, sh, size.0, size.1, min_d, max_d)
                },
            })
            .collect())
    }

    fn sync(&self) -> Result<()> {
        if !self.device.is_cpu() {
            self.device.synchronize()?;
        }
        Ok(())
    }
}

/// A whole CLIP's architecture: the config file given or found beside the
/// weights (`open_clip_config.json`, `config.json`), else read from the
/// tensors (OpenAI's files carry none).
fn clip_architecture(files: &ModelFiles, dict: &ClipStateDict) -> Result<ClipArchitecture> {
    if let Some(path) = &files.clip_config {
        return ClipArchitecture::from_json_file(path);
    }
    let dir = files.checkpoint.parent().map(Path::to_path_buf).unwrap_or_default();
    for name in ["open_clip_config.json", "config.json"] {
        let beside = dir.join(name);
        if beside.is_file() {
            return ClipArchitecture::from_json_file(&beside);
        }
    }
    if dict.layout() == ClipLayout::HuggingFace {
        return Err(Error::Weights {
            path: files.checkpoint.clone(),
            message: "Hugging Face CLIP weights need their config.json (beside them, or --clip-config)".into(),
        });
    }
    ClipArchitecture::infer(&dict.shapes()).map_err(|message| Error::Weights { path: files.checkpoint.clone(), message })
}
