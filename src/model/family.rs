//! The one front door to every model family. A family is a folder under
//! `model/` that implements [`Family`] (how its config and weights are read,
//! how a model of its architecture gets random weights, whether and how it
//! trains) and [`DepthNet`] (how a loaded model prepares frames, runs and
//! places its depth), registered once in [`ModelFamily`]. The estimator,
//! `eval`, `train`, `bench`, `inspect` and the node only ever talk to these
//! two traits.

use std::any::Any;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::prompt_bins::{InputGeometry, PromptOverrides};
use crate::model::BackboneConfig;

/// The files a model is made of.
#[derive(Debug, Clone, Default)]
pub struct ModelFiles {
    /// The model YAML (SPACE-CLIP: its training YAML; the prompt families:
    /// prompts, bins and input).
    pub config: PathBuf,
    /// The weights: a training checkpoint, a whole CLIP, a BLIP-2.
    pub checkpoint: PathBuf,
    /// A second weight file: SPACE-CLIP's separate Hugging Face CLIP, or
    /// the image tower of a LAVIS BLIP-2.
    pub clip_weights: Option<PathBuf>,
    /// The backbone's `config.json` (else one beside the weights, or a preset).
    pub clip_config: Option<PathBuf>,
}

/// Settings that replace the model config's (the node's parameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOverrides {
    /// Replaces the config's `model_type`.
    pub model_type: Option<ModelFamily>,
    /// The prompt families' prompt and bin lists.
    pub prompts: PromptOverrides,
}

/// How a family trains, if it does (`clip_depth train`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Training {
    /// Its decoder on RGB-D data with the authors' recipe (`train::Trainer`).
    Decoder,
    /// Its depth bins from a few images (`train::bins`).
    Bins,
    /// Nothing to train (zero-shot).
    ZeroShot,
}

/// What `clip_depth eval` feeds a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalInput {
    /// The dataset image resized to the config's input size by the authors'
    /// loader, normalised as the model wants ([`DepthNet::input_description`]).
    LoaderPixels,
    /// Whole frames, as a camera gives them (the model's crop is its own).
    Frames,
}

/// A model family: its folder implements this once.
pub trait Family: Sync {
    /// The `model_type` spellings a config may use; the first is the name.
    fn names(&self) -> &'static [&'static str];
    /// As people write it: "SPACE-CLIP".
    fn title(&self) -> &'static str;
    /// The model of `files`, its weights checked strictly against its
    /// architecture, on `device` in `dtype`.
    fn load(&self, files: &ModelFiles, prompts: &PromptOverrides, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>>;
    /// A model of the architecture `files` describe (its config, and
    /// `clip_config` where the config alone does not say) with random
    /// weights, for timing it at full size without its files.
    fn random(&self, files: &ModelFiles, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>>;
    /// Whether the prompt and bin settings apply.
    fn takes_prompts(&self) -> bool {
        false
    }
    fn training(&self) -> Training;
    /// What the evaluation feeds it (the protocol of its paper's code).
    fn eval_input(&self) -> EvalInput {
        EvalInput::Frames
    }
    /// The installed model config used when none is given (the launch file's
    /// `model_type` argument alone), relative to `config/`.
    fn default_config(&self) -> Option<&'static str> {
        None
    }
}

/// What a family's head computes on its map: depth (B, 1, h, w) in metres
/// (f32), and for bin heads the end classes' margin on the same map
/// ([`crate::model::prompt_bins::edge_margin`]).
pub struct DepthGrid {
    pub depth: Tensor,
    pub edge: Option<Tensor>,
}

/// An image tower's output, opaque to everyone but its family.
pub type Encoded = Box<dyn Any + Send + Sync>;

/// A loaded model of any family, as the estimator drives it.
pub trait DepthNet: Send + Sync {
    fn family(&self) -> ModelFamily;
    /// For logs: the family and its backbone.
    fn name(&self) -> String;
    /// One line about the architecture, for `bench`.
    fn describe(&self) -> String;
    /// How a frame becomes the model's input (crop, size, normalisation)
    /// and its map becomes the frame's depth.
    fn geometry(&self) -> InputGeometry;
    /// Whether frames may be prepared on the model's device.
    fn device_preprocessing(&self) -> bool {
        false
    }
    /// The image tower: normalised pixels (B, 3, H, W) in the model's dtype.
    fn encode(&self, pixels: &Tensor) -> candle_core::Result<Encoded>;
    /// The head on the tower's output.
    fn decode(&self, encoded: &Encoded) -> candle_core::Result<DepthGrid>;
    /// Normalised pixels -> depth on the model's map (B, 1, h, w), unclamped.
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.decode(&self.encode(pixels)?)?.depth)
    }
    /// The output's clamp range from the config, metres.
    fn depth_range(&self) -> (f32, f32);
    /// What a caller feeding square inputs of a backbone's size (the
    /// evaluation loader) should feed: the input side and normalisation.
    fn input_description(&self) -> &BackboneConfig;
    fn as_any(&self) -> &dyn Any;
}

impl dyn DepthNet {
    /// The family's own model type, for what only it offers (tests, taps).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }
}

/// Downcasts a family's own [`Encoded`].
pub fn encoded_as<T: 'static>(encoded: &Encoded) -> candle_core::Result<&T> {
    encoded.downcast_ref().ok_or_else(|| candle_core::Error::Msg("an image tower's output given to another family's head".into()))
}

/// candle has no bf16 matmul on the CPU: every family says so the same way.
pub fn check_dtype(device: &Device, dtype: DType) -> Result<()> {
    if device.is_cpu() && dtype == DType::BF16 {
        return Err(Error::Device("bf16 is not supported on the CPU (candle has no CPU bf16 matmul); use f32 or f16, or a CUDA device".into()));
    }
    Ok(())
}

/// The model families, as the model config's `model_type` names them. This
/// list and [`ModelFamily::imp`] are the only places a family is registered.
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
    pub const ALL: [ModelFamily; 3] = [ModelFamily::SpaceClip, ModelFamily::DepthClip, ModelFamily::DepthBlip2];

    /// The family's implementation.
    pub fn imp(self) -> &'static dyn Family {
        match self {
            ModelFamily::SpaceClip => &crate::model::spaceclip::family::SPACE_CLIP,
            ModelFamily::DepthClip => &crate::model::depthclip::family::DEPTH_CLIP,
            ModelFamily::DepthBlip2 => &crate::model::depthblip2::family::DEPTH_BLIP2,
        }
    }

    /// The canonical `model_type`.
    pub fn name(self) -> &'static str {
        self.imp().names()[0]
    }

    pub fn title(self) -> &'static str {
        self.imp().title()
    }

    /// Every family's canonical `model_type`.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|f| f.name()).collect()
    }

    /// A `model_type` (any spelling a family accepts; case, `-` and spaces
    /// do not matter; empty: SPACE-CLIP).
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        let key = name.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        if key.is_empty() {
            return Ok(ModelFamily::SpaceClip);
        }
        Self::ALL
            .into_iter()
            .find(|f| f.imp().names().contains(&key.as_str()))
            .ok_or_else(|| format!("model_type {key:?} is not a known model family ({})", Self::names().join(", ")))
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

    /// Loads the model of `files` with `overrides` (see [`Family::load`]).
    pub fn load(self, files: &ModelFiles, prompts: &PromptOverrides, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        if !self.imp().takes_prompts() && !prompts.is_empty() {
            return Err(Error::Config {
                path: files.config.clone(),
                message: format!("prompt and bin settings are the prompt families'; this is a {} model (model_type)", self.title()),
            });
        }
        check_dtype(device, dtype)?;
        self.imp().load(files, prompts, device, dtype)
    }

    /// The table the launch file reads (`config/model_types.yaml`): every
    /// spelling of every family's `model_type`, with the family's name and
    /// its installed default config. Written from this registry (the test
    /// below keeps the file equal to it).
    pub fn launch_table() -> String {
        let mut out = String::from(
            "# model_type spellings -> family and the installed model config used when\n\
             # none is given (launch/clip_depth.launch.py). Generated from the library's\n\
             # family registry (src/model/family.rs): edit that, not this file.\n",
        );
        for f in Self::ALL {
            let default = f.imp().default_config().map_or("null".to_string(), |c| format!("{c:?}"));
            for spelling in f.imp().names() {
                out.push_str(&format!("{spelling}: {{family: {}, default_config: {default}}}\n", f.name()));
            }
        }
        out
    }

    /// See [`Family::random`].
    pub fn random(self, files: &ModelFiles, device: &Device, dtype: DType) -> Result<Box<dyn DepthNet>> {
        check_dtype(device, dtype)?;
        self.imp().random(files, device, dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_finds_its_family_and_names_are_unique() {
        assert_eq!(ModelFamily::parse("").unwrap(), ModelFamily::SpaceClip);
        assert_eq!(ModelFamily::parse("Depth-CLIP").unwrap(), ModelFamily::DepthClip);
        assert_eq!(ModelFamily::parse("depth_blip2").unwrap(), ModelFamily::DepthBlip2);
        let err = ModelFamily::parse("midas").unwrap_err();
        assert!(err.contains("midas") && err.contains("depthclip"), "{err}");
        let mut all: Vec<&str> = ModelFamily::ALL.iter().flat_map(|f| f.imp().names().iter().copied()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a spelling names two families");
        for f in ModelFamily::ALL {
            assert_eq!(ModelFamily::parse(f.name()).unwrap(), f);
        }
    }

    /// The launch file's table is the registry's (regenerate it with the
    /// text this prints on failure).
    #[test]
    fn the_launch_files_family_table_is_the_registrys() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/model_types.yaml");
        let want = ModelFamily::launch_table();
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "config/model_types.yaml is out of date; it should read:\n{want}");
    }
}
