//! Small building blocks shared by the backbone and the decoder.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, VarBuilder};

use super::conv::Conv;

use crate::config::Activation;

/// `y = x W^T + b` over the last dim, with leading dims flattened so candle
/// runs one plain 2-D matmul (faster than its broadcast path).
#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self { weight_t: weight.t()?.contiguous()?, bias })
    }

    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Self::from_weights(weight, Some(bias))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = self.weight_t.dim(1)?;
        y.reshape(out_dims)
    }
}

pub fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<candle_nn::LayerNorm> {
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(candle_nn::LayerNorm::new(weight, bias, eps))
}

pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        // x * sigmoid(1.702 x), as OpenAI CLIP
        Activation::QuickGelu => x.mul(&candle_nn::ops::sigmoid(&(x * 1.702)?)?),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

/// PyTorch's BatchNorm2d epsilon; the checkpoint does not store it.
const BN_EPS: f64 = 1e-5;

fn conv_config(kernel: usize) -> Conv2dConfig {
    Conv2dConfig { padding: kernel / 2, ..Default::default() }
}

/// A conv ('same' padding) with optional bias, weights as stored.
pub fn conv2d(c_in: usize, c_out: usize, kernel: usize, bias: bool, vb: VarBuilder) -> Result<Conv> {
    let weight = vb.get((c_out, c_in, kernel, kernel), "weight")?;
    let bias = if bias { Some(vb.get(c_out, "bias")?) } else { None };
    Conv::new(Conv2d::new(weight, bias, conv_config(kernel)))
}

/// A bias-free conv followed by an eval-mode BatchNorm2d, folded into one
/// conv at load: `w' = w * g / sqrt(var + eps)`, `b' = beta - mean * g / sqrt(var + eps)`.
/// The fold is done in f32 whatever the model dtype, then cast.
pub fn conv2d_bn(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    conv_vb: VarBuilder,
    bn_vb: VarBuilder,
) -> Result<Conv> {
    let f32_get = |vb: &VarBuilder, shape: &[usize], name: &str| {
        vb.get_with_hints_dtype(shape, name, Default::default(), DType::F32)
    };
    let weight = f32_get(&conv_vb, &[c_out, c_in, kernel, kernel], "weight")?;
    let gamma = f32_get(&bn_vb, &[c_out], "weight")?;
    let beta = f32_get(&bn_vb, &[c_out], "bias")?;
    let mean = f32_get(&bn_vb, &[c_out], "running_mean")?;
    let var = f32_get(&bn_vb, &[c_out], "running_var")?;
    let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
    let weight = weight.broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
    let bias = beta.sub(&mean.mul(&scale)?)?;
    let dtype = conv_vb.dtype();
    Conv::new(Conv2d::new(
        weight.to_dtype(dtype)?,
        Some(bias.to_dtype(dtype)?),
        conv_config(kernel),
    ))
}

/// ConvTranspose2d(k = 2, s = 2) with bias: the decoder's x2 upsampler.
pub fn conv_transpose2x2(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<ConvTranspose2d> {
    let weight = vb.get((c_in, c_out, 2, 2), "weight")?;
    let bias = vb.get(c_out, "bias")?;
    let cfg = ConvTranspose2dConfig { stride: 2, ..Default::default() };
    Ok(ConvTranspose2d::new(weight, Some(bias), cfg))
}

/// Bilinear resize (align_corners = false, no antialias), as PyTorch's
/// `F.interpolate(mode="bilinear")`; a no-op when the size already matches.
pub fn resize_bilinear(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, xh, xw) = x.dims4()?;
    if (xh, xw) == (h, w) {
        Ok(x.clone())
    } else {
        x.upsample_bilinear2d(h, w, false)
    }
}

/// `x * (1 + sigmoid(gate))`: the decoder's skip gating.
pub fn gate(x: &Tensor, gate_logits: &Tensor) -> Result<Tensor> {
    x.mul(&(candle_nn::ops::sigmoid(gate_logits)? + 1.0)?)
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(x)
}
