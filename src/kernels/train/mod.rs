//! CPU kernels with a backward pass, for training: the operations whose
//! candle versions have no backward (bilinear resize), a slow one (3x3
//! convolution through a scalar transposed convolution) or a gradient that
//! differs from PyTorch's (ReLU at 0). Each is called through a function
//! that falls back to candle's differentiable ops off the CPU.

pub mod batch_norm;
pub mod conv3x3;
pub mod dropout;
pub mod gate;
pub mod pointwise;
pub mod relu;
pub mod separable;
