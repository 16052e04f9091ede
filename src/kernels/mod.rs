//! CPU kernels behind the model's layers: the hot loops the architecture
//! files call through candle custom ops. The model files say what is
//! computed; these say how, fast, on a CPU in f32. Each falls back to
//! candle's own ops for other devices and dtypes at its call site.

pub mod attention;
pub mod activation;
pub mod avx512;
pub mod bilinear;
pub mod conv;
pub mod conv_transpose;
pub mod gemm;
pub mod linear;
pub mod mirror;
pub mod pool;
pub mod resize;
pub mod train;

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Whether `x` can take the CPU f32 kernels.
pub fn is_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The contiguous f32 slice of a custom op's CPU input.
pub fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// An output buffer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub struct SendPtr(pub *mut f32);
// SAFETY: every user writes disjoint elements from each task.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method (not field access) so closures capture the whole Send
    /// wrapper rather than the raw pointer inside it.
    pub fn at(self, index: usize) -> *mut f32 {
        self.0.wrapping_add(index)
    }
}
