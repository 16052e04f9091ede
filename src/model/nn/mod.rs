//! Training-mode building blocks shared by every trainable model family:
//! a named parameter store, PyTorch-equivalent layers, and the contract a
//! model offers the trainer.

mod layers;
mod store;

use candle_core::{Result, Tensor};

pub use layers::{BatchNorm2d, Conv2d, ConvTranspose2x2, ForwardMode, Dropout, Linear, BN_EPS, BN_MOMENTUM};
pub use store::{Entry, Init, InitSource, ParamBuilder, ParamStore, Role};

/// What the frozen part of a model computes from a batch of normalised
/// pixels: tensors the trainable part reads, and that a feature cache may
/// store instead of recomputing (per image, batch dimension first).
#[derive(Debug, Clone)]
pub struct Features(pub Vec<Tensor>);

/// A depth model's prediction in training: the final map and the
/// auxiliary maps, all at the requested size (B, 1, H, W), metres.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub depth: Tensor,
    pub aux: Vec<Tensor>,
}

/// A model the trainer can train. Which parameters train (a decoder, a
/// small head, adapters and the last blocks of a backbone) is the model's
/// choice: it registers them as [`Role::Trainable`] in its store.
pub trait TrainableModel: Send + Sync {
    /// Every tensor of the model by checkpoint name, with its role.
    fn store(&self) -> &ParamStore;

    /// The frozen part: normalised pixels (B, 3, S, S) -> features. Runs
    /// without gradients.
    fn features(&self, pixels: &Tensor) -> Result<Features>;

    /// The trainable part: features -> depth at `out_size` (H, W).
    fn forward(&self, features: &Features, out_size: (usize, usize), ctx: &ForwardMode) -> Result<Prediction>;

    /// The model's input side length (the square the backbone takes).
    fn input_size(&self) -> usize;

    /// Input normalisation (RGB mean, std).
    fn normalisation(&self) -> ([f32; 3], [f32; 3]);
}
