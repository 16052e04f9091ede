//! The decoder's convolutional blocks, eval mode: every Conv -> BatchNorm
//! pair is folded into one conv at load, dropout is the identity.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv::Conv;
use crate::kernels::conv_transpose::ConvTranspose2x2;

use crate::model::layers::{conv2d, conv2d_bn, conv_transpose2x2, resize_bilinear};

/// `Up(i, o)`: ConvTranspose2d(k2, s2) -> Conv3x3 -> BN -> ReLU
/// (`upsample`, `conv.0`, `conv.1`).
#[derive(Debug, Clone)]
pub struct UpBlock {
    upsample: ConvTranspose2x2,
    conv: Conv,
}

impl UpBlock {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            upsample: conv_transpose2x2(c_in, c_out, vb.pp("upsample"))?,
            conv: conv2d_bn(c_out, c_out, 3, vb.pp("conv.0"), vb.pp("conv.1"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward_relu(&self.upsample.forward(x)?)
    }
}

/// `Res(c)`: Conv3x3 -> BN -> ReLU -> Conv3x3 -> BN -> + x -> ReLU
/// (`conv1`, `norm1`, `conv2`, `norm2`).
#[derive(Debug, Clone)]
pub struct ResBlock {
    conv1: Conv,
    conv2: Conv,
}

impl ResBlock {
    pub fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        Ok(Self {
            conv1: conv2d_bn(c, c, 3, vb.pp("conv1"), vb.pp("norm1"))?,
            conv2: conv2d_bn(c, c, 3, vb.pp("conv2"), vb.pp("norm2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv2.forward(&self.conv1.forward_relu(x)?)?;
        (y + x)?.relu()
    }
}

/// Structural pathway stage: upsample the running map, fuse the projected
/// shallow tap (resized to match) with a Conv3x3 -> BN -> ReLU
/// (`upsample_low`, `fusion_conv.0`, `fusion_conv.1`).
#[derive(Debug, Clone)]
pub struct StructuralBlock {
    upsample_low: UpBlock,
    fusion: Conv,
}

impl StructuralBlock {
    pub fn new(vb: VarBuilder, c_in: usize, c_skip: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            upsample_low: UpBlock::new(vb.pp("upsample_low"), c_in, c_out)?,
            fusion: conv2d_bn(c_out + c_skip, c_out, 3, vb.pp("fusion_conv.0"), vb.pp("fusion_conv.1"))?,
        })
    }

    pub fn forward(&self, low: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let up = self.upsample_low.forward(low)?;
        let (_, _, h, w) = up.dims4()?;
        let skip = resize_bilinear(skip, h, w)?;
        self.fusion.forward_relu(&Tensor::cat(&[&up, &skip], 1)?)
    }
}

/// Semantic pathway stage: upsample, gate both skips by the upsampled map
/// (`x * (1 + sigmoid(conv1x1(up)))`), concat, Conv3x3 -> BN -> ReLU -> Res
/// (`upsample_low`, `skip_clip_gate.0`, `skip_struct_gate.0`,
/// `fusion_conv.0`, `fusion_conv.1`, `fusion_conv.3`).
#[derive(Debug, Clone)]
pub struct MainBlock {
    upsample_low: UpBlock,
    skip_clip_gate: Conv,
    skip_struct_gate: Option<Conv>,
    fusion: Conv,
    res: ResBlock,
}

impl MainBlock {
    pub fn new(
        vb: VarBuilder,
        c_low: usize,
        c_skip_clip: usize,
        c_skip_struct: usize,
        c_out: usize,
    ) -> Result<Self> {
        let skip_struct_gate = if c_skip_struct > 0 {
            Some(conv2d(c_out, c_skip_struct, 1, true, vb.pp("skip_struct_gate.0"))?)
        } else {
            None
        };
        let c_cat = c_out + c_skip_clip + c_skip_struct;
        Ok(Self {
            upsample_low: UpBlock::new(vb.pp("upsample_low"), c_low, c_out)?,
            skip_clip_gate: conv2d(c_out, c_skip_clip, 1, true, vb.pp("skip_clip_gate.0"))?,
            skip_struct_gate,
            fusion: conv2d_bn(c_cat, c_out, 3, vb.pp("fusion_conv.0"), vb.pp("fusion_conv.1"))?,
            res: ResBlock::new(vb.pp("fusion_conv.3"), c_out)?,
        })
    }

    pub fn forward(&self, low: &Tensor, skip_clip: &Tensor, skip_struct: Option<&Tensor>) -> Result<Tensor> {
        let up = self.upsample_low.forward(low)?;
        let (_, _, h, w) = up.dims4()?;
        let skip_clip = self.skip_clip_gate.forward_gate(&up, &resize_bilinear(skip_clip, h, w)?)?;
        let fused = match (&self.skip_struct_gate, skip_struct) {
            (Some(g), Some(s)) => {
                let s = g.forward_gate(&up, &resize_bilinear(s, h, w)?)?;
                Tensor::cat(&[&up, &skip_clip, &s], 1)?
            }
            (None, None) => Tensor::cat(&[&up, &skip_clip], 1)?,
            _ => candle_core::bail!("structural skip given to a stage built without one, or missing"),
        };
        self.res.forward(&self.fusion.forward_relu(&fused)?)
    }
}

/// Conv3x3 -> BN -> ReLU -> Conv(k, bias) -> ReLU: the depth head
/// (`.0`, `.1`, `.3`; k = 3) and the training-only aux heads (k = 1).
#[derive(Debug, Clone)]
pub struct DepthHead {
    conv0: Conv,
    conv3: Conv,
}

impl DepthHead {
    pub fn new(vb: VarBuilder, c_in: usize, c_mid: usize, last_kernel: usize) -> Result<Self> {
        Ok(Self {
            conv0: conv2d_bn(c_in, c_mid, 3, vb.pp("0"), vb.pp("1"))?,
            conv3: conv2d(c_mid, 1, last_kernel, true, vb.pp("3"))?,
        })
    }

    /// (B, C, H, W) -> (B, 1, H, W), metres.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv3.forward_relu(&self.conv0.forward_relu(x)?)
    }
}
