//! Small building blocks shared by the backbone and the decoder.

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use crate::kernels::avx512::{self, PackedLinear};
use crate::kernels::conv::Conv;
use crate::kernels::conv_transpose::ConvTranspose2x2;
use crate::kernels::is_cpu_f32;
use crate::kernels::linear::{CpuLinear, CpuPackedLinear};
use crate::kernels::resize::CpuResizeBilinear;

use crate::model::Activation;

/// `y = act(x W^T + b)` over the last dim, leading dims flattened. On the
/// CPU in f32 it is one GEMM (reading W transposed in place) into an output
/// pre-filled with the bias, with the activation applied in the same pass:
/// candle would spend extra passes on the bias add and the activation.
#[derive(Debug, Clone)]
pub struct Linear {
    /// (out, in), as stored; `None` once packed for the AVX-512 kernel
    /// (the model would otherwise hold its weights twice).
    weight: Option<Tensor>,
    packed: Option<Arc<PackedLinear>>,
    bias: Tensor,
    act: Option<Activation>,
}

impl Linear {
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let bias = match bias {
            Some(b) => b,
            None => Tensor::zeros(weight.dim(0)?, weight.dtype(), weight.device())?,
        };
        let (n, k) = weight.dims2()?;
        // Only real weights are packed: the name recorder hands out
        // broadcast (non-contiguous) zeros.
        if avx512::available() && is_cpu_f32(&weight) && weight.is_contiguous() {
            let packed = PackedLinear::new(&weight.flatten_all()?.to_vec1::<f32>()?, n, k);
            return Ok(Self { weight: None, packed: Some(Arc::new(packed)), bias: bias.contiguous()?, act: None });
        }
        Ok(Self { weight: Some(weight), packed: None, bias, act: None })
    }

    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Self::from_weights(weight, Some(bias))
    }

    /// The same layer followed by `act`.
    pub fn with_activation(mut self, act: Activation) -> Self {
        self.act = Some(act);
        self
    }
}


impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let x2 = x.reshape((rows, in_dim))?.contiguous()?;
        let (y, out_dim) = match (&self.packed, &self.weight) {
            (Some(packed), _) => {
                if !is_cpu_f32(x) {
                    candle_core::bail!("linear: weights packed for the CPU in f32, input is {:?} on {:?}", x.dtype(), x.device());
                }
                let op = CpuPackedLinear { weights: packed.clone(), act: self.act };
                (x2.apply_op2_no_bwd(&self.bias, &op)?, packed.out_features())
            }
            (None, Some(weight)) => {
                let fast = is_cpu_f32(x) && weight.dtype() == DType::F32 && weight.is_contiguous() && self.bias.is_contiguous();
                let y = if fast {
                    x2.apply_op3_no_bwd(weight, &self.bias, &CpuLinear { act: self.act })?
                } else {
                    let y = x2.matmul(&weight.t()?)?.broadcast_add(&self.bias)?;
                    match self.act {
                        Some(act) => activation(&y, act)?,
                        None => y,
                    }
                };
                (y, weight.dim(0)?)
            }
            (None, None) => unreachable!("a Linear keeps its weights in one form or the other"),
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = out_dim;
        y.reshape(out_dims)
    }
}

pub fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(LayerNorm { inner: candle_nn::LayerNorm::new(weight.clone(), bias.clone(), eps), weight, bias, eps })
}

/// LayerNorm over the last dimension: candle's fused op, or plain tensor
/// ops for dtypes it lacks (f64, used by reference-precision runs).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    inner: candle_nn::LayerNorm,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dtype() != DType::F64 {
            return self.inner.forward(x);
        }
        let mean = x.mean_keepdim(candle_core::D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
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
pub fn conv_transpose2x2(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<ConvTranspose2x2> {
    ConvTranspose2x2::new(vb.get((c_in, c_out, 2, 2), "weight")?, vb.get(c_out, "bias")?)
}

/// Bilinear resize (align_corners = false, no antialias), as PyTorch's
/// `F.interpolate(mode="bilinear")`; a no-op when the size already matches.
/// On the CPU in f32 the planes are resampled in parallel by
/// [`crate::kernels::bilinear`] (separable; candle's CPU resize is per-pixel).
pub fn resize_bilinear(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, xh, xw) = x.dims4()?;
    if (xh, xw) == (h, w) {
        Ok(x.clone())
    } else if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&CpuResizeBilinear { h, w })
    } else {
        x.upsample_bilinear2d(h, w, false)
    }
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cpu_resize_equals_candle_resize() {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 14, 9), &Device::Cpu).unwrap();
        for (h, w) in [(28, 18), (224, 224), (5, 4), (14, 30), (1, 1)] {
            let reference = x.upsample_bilinear2d(h, w, false).unwrap();
            let ours = resize_bilinear(&x, h, w).unwrap();
            let diff = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "{h}x{w}: {diff}");
        }
    }
}
