//! The library's front door: load a SPACE-CLIP model from its files, turn
//! camera frames into metric depth maps of any size, timed per stage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

use crate::model::{BackboneConfig, BackboneKind, DecoderConfig};
use crate::device::{DeviceSpec, ModelDType};
use crate::error::{Error, Result};
use crate::image::ImageView;
use crate::model::SpaceClip;
use crate::image::postprocess::resize_bilinear_clamped;
use crate::image::device_preprocess::DevicePreprocessor;
use crate::image::preprocess::Preprocessor;
use crate::weights::{expected_tensors, StateDict};

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

/// Time spent in each stage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    pub preprocess: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Resize to the output size, clamp, copy back to the host.
    pub resize: Duration,
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
    model: SpaceClip,
    preprocessor: Preprocessor,
    /// Set when preprocessing runs on the model's device (the default on
    /// a GPU); otherwise frames are preprocessed on the CPU, bit-exactly.
    device_preprocessor: Option<DevicePreprocessor>,
    device: Device,
    dtype: DType,
    name: String,
}

impl DepthEstimator {
    /// Reads the configs and weights, checks the weights strictly against
    /// the architecture, and builds the model on `device` in `dtype`.
    pub fn load(files: &ModelFiles, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
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

    /// Wraps an already built model (its weights must be on `device`).
    pub fn from_model(model: SpaceClip, device: Device, dtype: DType, name: String) -> Self {
        let preprocessor = Preprocessor::for_backbone(model.backbone_config());
        let device_preprocessor = (!device.is_cpu()).then(|| DevicePreprocessor::for_backbone(model.backbone_config()));
        Self { model, preprocessor, device_preprocessor, device, dtype, name }
    }

    /// Preprocess on the model's device (on by default on a GPU) or on the
    /// CPU (the default there, and bit-exact with Pillow).
    pub fn set_device_preprocessing(&mut self, on: bool) {
        self.device_preprocessor = on.then(|| DevicePreprocessor::for_backbone(self.model.backbone_config()));
    }

    pub fn device_preprocessing(&self) -> bool {
        self.device_preprocessor.is_some()
    }

    pub fn model(&self) -> &SpaceClip {
        &self.model
    }

    /// The backbone name from the training config.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The clamp range of the output, from the training config.
    pub fn depth_range(&self) -> (f32, f32) {
        let cfg = self.model.decoder_config();
        (cfg.min_depth as f32, cfg.max_depth as f32)
    }

    pub fn input_size(&self) -> usize {
        self.preprocessor.size()
    }

    /// The normalised input batch (B, 3, S, S) in f32 on the CPU.
    pub fn preprocess(&self, images: &[ImageView<'_>]) -> Result<Tensor> {
        if images.is_empty() {
            return Err(Error::InvalidImage("empty batch".into()));
        }
        let s = self.preprocessor.size();
        let mut planes = Vec::with_capacity(images.len() * 3 * s * s);
        for image in images {
            self.preprocessor.process_into(image, &mut planes)?;
        }
        Ok(Tensor::from_vec(planes, (images.len(), 3, s, s), &Device::Cpu)?)
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
        let mut timings = StageTimings::default();
        let t = Instant::now();
        let pixels = match &self.device_preprocessor {
            Some(on_device) if !images.is_empty() => on_device.process_batch(images, &self.device)?,
            _ => self.preprocess(images)?.to_device(&self.device)?,
        };
        let pixels = pixels.to_dtype(self.dtype)?;
        self.sync()?;
        timings.preprocess = t.elapsed();

        let t = Instant::now();
        let encoded = self.model.encode(&pixels)?;
        self.sync()?;
        timings.encoder = t.elapsed();

        let t = Instant::now();
        let depth = self.model.decode(&encoded)?;
        self.sync()?;
        timings.decoder = t.elapsed();

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

    /// Depth from already normalised pixels (B, 3, S, S) in f32, each map
    /// resized to `size` (width, height); clamped to the depth range when
    /// `clamp`. For evaluation, which feeds the loader's exact input.
    pub fn depth_from_pixels(&self, pixels: &Tensor, size: (usize, usize), clamp: bool) -> Result<Vec<DepthMap>> {
        let pixels = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        let depth = self.model.forward(&pixels)?;
        let (min_d, max_d) = if clamp { self.depth_range() } else { (f32::NEG_INFINITY, f32::INFINITY) };
        let (_, _, sh, sw) = depth.dims4()?;
        let host = depth.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(host
            .chunks_exact(sh * sw)
            .map(|map| DepthMap {
                width: size.0,
                height: size.1,
                data: resize_bilinear_clamped(map, sw, sh, size.0, size.1, min_d, max_d),
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
