//! Where and in which precision the model runs, as users spell it.

pub mod cpu_split;
pub mod memory;

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device {other:?} (expected cpu, cuda or cuda:N)")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; a CUDA device on a build or machine without one is
    /// a clear error.
    pub fn open(&self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Device(format!(
                        "{self} requested, but this build has no CUDA support (rebuild with --features cuda)"
                    )));
                }
                Device::new_cuda(*n).map_err(|e| {
                    let msg = e.to_string();
                    Error::Device(format!("cannot open {self}: {}", msg.lines().next().unwrap_or("")))
                })
            }
        }
    }
}

/// Model precision: `f32`, `f16` or `bf16`. Output depth is always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDType(pub DType);

impl FromStr for ModelDType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "f32" | "float32" => Ok(Self(DType::F32)),
            "f16" | "float16" | "half" => Ok(Self(DType::F16)),
            "bf16" | "bfloat16" => Ok(Self(DType::BF16)),
            other => Err(format!("unknown dtype {other:?} (expected f32, f16 or bf16)")),
        }
    }
}

impl fmt::Display for ModelDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Default for ModelDType {
    fn default() -> Self {
        Self(DType::F32)
    }
}

/// Process-wide CPU settings, to call first thing in `main` (before any
/// thread exists). candle's element-wise worker pool busy-waits 25 000
/// spins after each operation before parking; on a small machine those
/// spinning workers take cores from the matmuls that follow (measured on 2
/// cores: 3-5 % of end-to-end latency). A user's own setting is kept.
pub fn tune_cpu_runtime() {
    const SPIN: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN).is_none() {
        std::env::set_var(SPIN, "100");
    }
}

/// For training: keep freed memory in the process instead of returning it
/// to the kernel. A training step allocates and frees tensors of tens of
/// megabytes hundreds of times; glibc serves those with mmap and munmap, so
/// every one is faulted back in and zeroed by the kernel, which took a
/// quarter of a step's time on the CPU (measured with `perf`). With mmap
/// off and no trimming, the heap stays at the step's peak and is reused.
/// Not for the node: there the peak is the checkpoint read at start.
/// Without glibc this does nothing.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        // SAFETY: mallopt only changes allocator parameters; called before
        // the allocations it is meant for, from one thread.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_dtypes() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert!("cuda:x".parse::<DeviceSpec>().unwrap_err().contains("cuda:x"));
        assert_eq!("bf16".parse::<ModelDType>().unwrap().0, DType::BF16);
        assert!("int8".parse::<ModelDType>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_support_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("no CUDA support"), "{err}");
    }
}
