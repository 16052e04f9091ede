//! f32 kernels for x86-64 CPUs with AVX-512, where the model's hot loops
//! beat a general GEMM: each keeps a block of 8 x 48 outputs in 24 vector
//! registers for its whole reduction, reading weights laid out for it at
//! load, so nothing is packed or re-read per call. Chosen at load when the
//! CPU has AVX-512F; elsewhere the model uses GEMM-based paths.

mod conv3x3;
mod linear;
mod winograd;

pub use conv3x3::{Direct3x3, READ_SLACK};
pub use linear::PackedLinear;
pub use winograd::{padded_plane as winograd_plane, Winograd3x3, WINOGRAD_READ_SLACK};

/// Whether this CPU can run the kernels (and `CLIP_DEPTH_NO_AVX512` is not
/// set, which selects the portable paths, e.g. to compare them).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("CLIP_DEPTH_NO_AVX512").is_none()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An output buffer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every user writes disjoint elements from each task.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method (not field access) so closures capture the whole Send
    /// wrapper rather than the raw pointer inside it.
    fn at(self, index: usize) -> *mut f32 {
        self.0.wrapping_add(index)
    }
}
