//! Trainable layers with PyTorch's semantics (initialisation, train and
//! eval modes), differentiable through candle's autograd. On the CPU in
//! f32 the heavy ones run the training kernels of `crate::kernels::train`;
//! elsewhere candle's own differentiable ops.

use std::sync::Mutex;

use candle_core::{DType, Result, Tensor, Var, D};

use super::store::{Init, ParamBuilder};
use crate::kernels::is_cpu_f32;
use crate::kernels::train::batch_norm::BatchNormTrain;
use crate::kernels::train::conv3x3::Conv3x3;
use crate::kernels::train::dropout::dropout;
use crate::kernels::train::pointwise::{Kind, Pointwise};
use crate::rng::Rng;

/// What a forward pass is for: training (batch statistics, dropout) or
/// evaluation (running statistics, no dropout).
pub struct ForwardMode {
    pub train: bool,
    /// Draws the dropout masks, in forward order; `None` disables dropout.
    pub dropout_rng: Option<Mutex<Rng>>,
}

impl ForwardMode {
    pub fn eval() -> Self {
        Self { train: false, dropout_rng: None }
    }

    pub fn train(dropout_rng: Rng) -> Self {
        Self { train: true, dropout_rng: Some(Mutex::new(dropout_rng)) }
    }
}

/// `nn.Linear`: `x W^T + b` over the last dimension.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    pub fn new(pb: &ParamBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let init = Init::FanInUniform { fan_in: in_dim };
        Ok(Self { weight: pb.param("weight", (out_dim, in_dim), init)?, bias: pb.param("bias", out_dim, init)? })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_matmul(&self.weight.t()?)?.broadcast_add(self.bias.as_tensor())
    }
}

/// `nn.Conv2d` with 'same' padding, stride 1, kernel 1 or 3.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Var,
    bias: Option<Var>,
    kernel: usize,
}

impl Conv2d {
    pub fn new(pb: &ParamBuilder, c_in: usize, c_out: usize, kernel: usize, bias: bool) -> Result<Self> {
        if kernel != 1 && kernel != 3 {
            candle_core::bail!("conv: kernel {kernel} is not supported (1 or 3)");
        }
        let init = Init::FanInUniform { fan_in: c_in * kernel * kernel };
        let weight = pb.param("weight", (c_out, c_in, kernel, kernel), init)?;
        let bias = if bias { Some(pb.param("bias", c_out, init)?) } else { None };
        Ok(Self { weight, bias, kernel })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (c_out, _, _, _) = self.weight.dims4()?;
        if let (1, Some(bias), true) = (self.kernel, &self.bias, is_cpu_f32(x)) {
            return x.contiguous()?.apply_op3(self.weight.as_tensor(), bias.as_tensor(), Pointwise(Kind::Conv1x1));
        }
        let y = if self.kernel == 1 {
            // A 1x1 conv is one matrix product over the channels.
            let wm = self.weight.reshape((c_out, c))?;
            wm.broadcast_matmul(&x.reshape((b, c, h * w))?)?.reshape((b, c_out, h, w))?
        } else if is_cpu_f32(x) {
            x.contiguous()?.apply_op2(self.weight.as_tensor(), Conv3x3)?
        } else {
            x.conv2d(self.weight.as_tensor(), 1, 1, 1, 1)?
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(&bias.reshape((1, c_out, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// `nn.ConvTranspose2d(kernel 2, stride 2)` with bias. The output pixels
/// never overlap, so it is one matrix product (C_in -> 4 C_out per input
/// pixel) and an interleave, both differentiable.
#[derive(Debug, Clone)]
pub struct ConvTranspose2x2 {
    weight: Var,
    bias: Var,
}

impl ConvTranspose2x2 {
    pub fn new(pb: &ParamBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        // PyTorch takes fan_in from dim 1 of the (C_in, C_out, 2, 2) weight.
        let init = Init::FanInUniform { fan_in: c_out * 4 };
        Ok(Self { weight: pb.param("weight", (c_in, c_out, 2, 2), init)?, bias: pb.param("bias", c_out, init)? })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if is_cpu_f32(x) {
            return x.contiguous()?.apply_op3(self.weight.as_tensor(), self.bias.as_tensor(), Pointwise(Kind::Up2x2));
        }
        let (b, c_in, h, w) = x.dims4()?;
        let (_, c_out, _, _) = self.weight.dims4()?;
        let wm = self.weight.reshape((c_in, c_out * 4))?;
        let pixels = x.reshape((b, c_in, h * w))?.transpose(1, 2)?; // (B, HW, C_in)
        let y = pixels.broadcast_matmul(&wm)?; // (B, HW, 4 C_out)
        let y = y.reshape((b, h, w, c_out, 2, 2))?.permute((0, 3, 1, 4, 2, 5))?.contiguous()?;
        y.reshape((b, c_out, 2 * h, 2 * w))?.broadcast_add(&self.bias.reshape((1, c_out, 1, 1))?)
    }
}

/// `nn.BatchNorm2d` (eps 1e-5, momentum 0.1): batch statistics in
/// training, with the running mean and unbiased variance updated and
/// `num_batches_tracked` counted; running statistics in evaluation.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    channels: usize,
}

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    pub fn new(pb: &ParamBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            weight: pb.param("weight", channels, Init::Const(1.0))?,
            bias: pb.param("bias", channels, Init::Const(0.0))?,
            running_mean: pb.buffer("running_mean", channels, None, Init::Const(0.0))?,
            running_var: pb.buffer("running_var", channels, None, Init::Const(1.0))?,
            num_batches_tracked: pb.buffer("num_batches_tracked", (), Some(DType::I64), Init::Const(0.0))?,
            channels,
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        self.forward_act(x, ctx, false)
    }

    /// `relu(bn(x))`, in one pass on the CPU.
    pub fn forward_relu(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        self.forward_act(x, ctx, true)
    }

    fn forward_act(&self, x: &Tensor, ctx: &ForwardMode, relu: bool) -> Result<Tensor> {
        let y = self.normalise(x, ctx, relu)?;
        // The fused kernel applied the ReLU already.
        if relu && !(ctx.train && is_cpu_f32(x)) {
            return crate::kernels::train::relu::relu(&y);
        }
        Ok(y)
    }

    fn normalise(&self, x: &Tensor, ctx: &ForwardMode, relu: bool) -> Result<Tensor> {
        let c = self.channels;
        let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        if !ctx.train {
            let mean = self.running_mean.as_detached_tensor();
            let var = self.running_var.as_detached_tensor();
            let scale = self.weight.as_tensor().div(&(var + BN_EPS)?.sqrt()?)?;
            let shift = self.bias.as_tensor().sub(&mean.mul(&scale)?)?;
            return x.broadcast_mul(&per_channel(&scale)?)?.broadcast_add(&per_channel(&shift)?);
        }
        let (b, _, h, w) = x.dims4()?;
        let n = b * h * w;
        if n < 2 {
            candle_core::bail!("batch norm in training needs more than one value per channel, got input {:?}", x.shape());
        }
        let (y, mean, var) = if is_cpu_f32(x) {
            let op = BatchNormTrain::new(BN_EPS).with_relu(relu);
            let y = x.contiguous()?.apply_op3(self.weight.as_tensor(), self.bias.as_tensor(), op.clone())?;
            let stats = op.stats.lock().map_err(|_| candle_core::Error::Msg("batch norm statistics lock poisoned".into()))?;
            let stats = stats.as_ref().ok_or_else(|| candle_core::Error::Msg("batch norm ran without statistics".into()))?;
            let dev = x.device();
            (y, Tensor::new(stats.mean.as_slice(), dev)?, Tensor::new(stats.var.as_slice(), dev)?)
        } else {
            let flat = x.transpose(0, 1)?.reshape((c, n))?;
            let mean = flat.mean_keepdim(D::Minus1)?;
            let centred = flat.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
            let xhat = x.broadcast_sub(&per_channel(&mean)?)?.broadcast_div(&per_channel(&(&var + BN_EPS)?.sqrt()?)?)?;
            let y = xhat
                .broadcast_mul(&per_channel(self.weight.as_tensor())?)?
                .broadcast_add(&per_channel(self.bias.as_tensor())?)?;
            (y, mean.flatten_all()?.detach().to_dtype(DType::F64)?, var.flatten_all()?.detach().to_dtype(DType::F64)?)
        };
        // running = (1 - m) running + m batch, the variance unbiased.
        let unbiased = (var * (n as f64 / (n - 1) as f64))?;
        let update = |running: &Var, batch: Tensor| -> Result<()> {
            let old = running.as_detached_tensor().to_dtype(DType::F64)?;
            let new = ((old * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?)?;
            running.set(&new.to_dtype(running.dtype())?)
        };
        update(&self.running_mean, mean)?;
        update(&self.running_var, unbiased)?;
        let count = self.num_batches_tracked.as_detached_tensor();
        self.num_batches_tracked.set(&(count.to_dtype(DType::F64)? + 1.0)?.to_dtype(DType::I64)?)?;
        Ok(y)
    }
}

/// `nn.Dropout(p)`: in training, zeroes each value with probability p and
/// scales the rest by 1 / (1 - p); the identity in evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    pub fn new(p: f64) -> Self {
        Self { p }
    }

    pub fn forward(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        let rng = match (&ctx.dropout_rng, ctx.train && self.p > 0.0) {
            (Some(rng), true) => rng,
            _ => return Ok(x.clone()),
        };
        // One draw per call seeds this layer's mask.
        let seed = rng.lock().map_err(|_| candle_core::Error::Msg("dropout generator lock poisoned".into()))?.next_u64();
        dropout(x, self.p, seed)
    }
}
