//! The MLP activations of the CLIP family, which the fused kernels apply
//! (and the configs name: `hidden_act`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}
