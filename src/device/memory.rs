//! Device memory figures for benchmarks: the high-water mark of the CUDA
//! device's default stream-ordered memory pool, which holds every tensor
//! candle allocates there (cuBLAS's own workspace is outside it).

use candle_core::Device;

/// Peak pool memory in use since the last [`reset_peak`], in MiB; `None`
/// on the CPU, in builds without CUDA, or if the driver cannot tell.
pub fn peak_mib(device: &Device) -> Option<f64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        return cuda_pool::read(cuda, false);
    }
    let _ = device;
    None
}

/// Starts a new high-water mark (e.g. per batch size).
pub fn reset_peak(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        let _ = cuda_pool::read(cuda, true);
    }
    let _ = device;
}

#[cfg(feature = "cuda")]
mod cuda_pool {
    use candle_core::cuda::cudarc::driver::{result, sys};

    /// Reads the pool's used-memory high-water mark, or resets it to the
    /// current use when `reset`.
    pub fn read(cuda: &candle_core::CudaDevice, reset: bool) -> Option<f64> {
        let stream = cuda.cuda_stream();
        let ctx = stream.context();
        ctx.bind_to_thread().ok()?;
        let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
        let mut value: u64 = 0;
        // SAFETY: the device comes from an open context; USED_MEM_HIGH is a
        // cuuint64_t, read into (or, to reset, written from) `value`.
        unsafe {
            let pool = result::device::get_default_mem_pool(ctx.cu_device()).ok()?;
            let ptr = &mut value as *mut u64 as *mut core::ffi::c_void;
            if reset {
                result::mem_pool::set_attribute(pool, attr, ptr).ok()?;
            } else {
                result::mem_pool::get_attribute(pool, attr, ptr).ok()?;
            }
        }
        Some(value as f64 / (1024.0 * 1024.0))
    }
}
