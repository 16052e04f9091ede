//! Camera frame -> model input as tensor operations on the model's device,
//! for GPUs: the 8-bit frame is uploaded as it is (through a reused
//! page-locked staging buffer on CUDA, so the copy is asynchronous and
//! queued before the kernels that read it) and the resize, rounding, colour
//! order and normalisation run there.
//!
//! The resize is Pillow's bicubic as matrix products with its fixed-point
//! tap weights (`pil_resize::tap_matrix_transposed`), each pass followed by
//! Pillow's rounding and clipping to 8 bits, and bit-exact with it: f32
//! cannot hold Pillow's 30-bit sums, so each weight is split into its high
//! and low 11 bits; both products are sums of integers below 2^24 (exact in
//! any order), and the rounding `floor((sum + 2^21) / 2^22)` is recombined
//! from them exactly (see [`PassMatrices::apply`]).

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::image::{ImageView, PixelFormat};
use crate::image::pil_resize::{tap_matrix_transposed, vertical_pass_first, PRECISION_BITS};

#[derive(Debug)]
pub struct DevicePreprocessor {
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    /// Tap matrices of the last frame size, on the device: cameras keep
    /// their size, so they are built once.
    matrices: Mutex<Option<TapMatrices>>,
    /// Per-channel scale and offset on the device, made on first use.
    normalisation: Mutex<Option<(Tensor, Tensor)>>,
    #[cfg(feature = "cuda")]
    staging: Mutex<Option<candle_core::cuda::cudarc::driver::PinnedHostSlice<u8>>>,
}

#[derive(Debug)]
struct TapMatrices {
    in_w: usize,
    in_h: usize,
    /// (in_w, S), or `None` when the width is already S.
    horizontal: Option<PassMatrices>,
    /// (in_h, S), or `None` when the height is already S.
    vertical: Option<PassMatrices>,
}

/// Bits of a fixed-point weight in its low part.
const LOW_BITS: u32 = 11;

/// One resampling pass: the fixed-point weights `k = hi * 2^11 + lo`
/// with `0 <= lo < 2^11`, as f32 matrices of integers.
#[derive(Debug, Clone)]
struct PassMatrices {
    hi: Tensor,
    lo: Tensor,
}

impl PassMatrices {
    fn new(in_size: usize, out_size: usize, device: &Device) -> Result<Self> {
        let k = tap_matrix_transposed(in_size, out_size);
        let hi: Vec<f32> = k.iter().map(|&k| (k >> LOW_BITS) as f32).collect();
        let lo: Vec<f32> = k.iter().map(|&k| (k & ((1 << LOW_BITS) - 1)) as f32).collect();
        Ok(Self {
            hi: Tensor::from_vec(hi, (in_size, out_size), device)?,
            lo: Tensor::from_vec(lo, (in_size, out_size), device)?,
        })
    }

    /// `clip8(floor((x * k + 2^21) / 2^22))` for 8-bit rows `x`, exactly.
    /// With `a = x * hi` and `b = x * lo` (integers; |a|, |b| < 2^24 for
    /// pixels <= 255 and Pillow's normalised weights), `x * k = a 2^11 + b`.
    /// Writing `a = q 2^11 + r` (0 <= r < 2^11) the result is
    /// `q + floor((r 2^11 + b + 2^21) / 2^22)`, every term exact in f32.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let unit = (1u32 << LOW_BITS) as f64;
        let a = x.matmul(&self.hi)?;
        let b = x.matmul(&self.lo)?;
        let q = (&a / unit)?.floor()?;
        let r = (a - (&q * unit)?)?;
        let carry = (((r * unit)? + b)? + (1u32 << (PRECISION_BITS - 1)) as f64)?;
        let carry = (carry / (1u32 << PRECISION_BITS) as f64)?.floor()?;
        Ok((q + carry)?.clamp(0f32, 255f32)?)
    }
}

impl DevicePreprocessor {
    pub fn new(size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            size,
            mean,
            std,
            matrices: Mutex::new(None),
            normalisation: Mutex::new(None),
            #[cfg(feature = "cuda")]
            staging: Mutex::new(None),
        }
    }

    /// Normalised (B, 3, S, S) f32 planes of `images` on `device`.
    pub fn process_batch(&self, images: &[ImageView<'_>], device: &Device) -> Result<Tensor> {
        let planes = images.iter().map(|image| self.process(image, device)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&planes, 0)?)
    }

    /// Normalised (3, S, S) f32 planes of one image on `device`.
    pub fn process(&self, image: &ImageView<'_>, device: &Device) -> Result<Tensor> {
        let (w, h, c, s) = (image.width(), image.height(), image.format().channels(), self.size);
        let frame = self.upload(image, device)?.to_dtype(DType::F32)?;
        // (H, W, C) -> (C, H, W): one plane per channel, rows as matrix rows.
        let mut x = frame.reshape((h, w, c))?.permute((2, 0, 1))?.contiguous()?;
        let (horizontal, vertical) = self.tap_matrices(w, h, device)?;
        // (C, R, N) -> (C, R, S): each row resampled.
        let rows = |x: Tensor, m: &Option<PassMatrices>| -> Result<Tensor> {
            let Some(m) = m else { return Ok(x) };
            let (c, r, n) = x.dims3()?;
            Ok(m.apply(&x.reshape((c * r, n))?)?.reshape((c, r, s))?)
        };
        // The same along columns: as matrix rows, and back.
        let columns = |x: Tensor, m: &Option<PassMatrices>| -> Result<Tensor> {
            Ok(rows(x.transpose(1, 2)?.contiguous()?, m)?.transpose(1, 2)?.contiguous()?)
        };
        // Pillow's pass order (the 8-bit rounding between passes depends on it).
        x = if vertical_pass_first(w, h, s, s) {
            rows(columns(x, &vertical)?, &horizontal)?
        } else {
            columns(rows(x, &horizontal)?, &vertical)?
        }; // (C, S, S)
        let channel = |i: usize| x.narrow(0, i, 1);
        let rgb = match image.format() {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => x.narrow(0, 0, 3)?,
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => Tensor::cat(&[channel(2)?, channel(1)?, channel(0)?], 0)?,
            PixelFormat::Mono8 => x.broadcast_as((3, s, s))?,
        };
        // (v / 255 - mean) / std as one multiply-add per channel.
        let (scale, offset) = self.normalisation(device)?;
        Ok(rgb.broadcast_mul(&scale)?.broadcast_add(&offset)?)
    }

    /// The per-channel scale and offset, (3, 1, 1) each, on the device.
    fn normalisation(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let mut cache = self.normalisation.lock().map_err(|_| Error::InvalidImage("preprocessor lock poisoned".into()))?;
        if cache.is_none() {
            let scale: Vec<f32> = (0..3).map(|i| 1.0 / (255.0 * self.std[i])).collect();
            let offset: Vec<f32> = (0..3).map(|i| -self.mean[i] / self.std[i]).collect();
            *cache = Some((Tensor::from_vec(scale, (3, 1, 1), device)?, Tensor::from_vec(offset, (3, 1, 1), device)?));
        }
        Ok(cache.clone().expect("filled above"))
    }

    fn tap_matrices(&self, w: usize, h: usize, device: &Device) -> Result<(Option<PassMatrices>, Option<PassMatrices>)> {
        let mut cache = self.matrices.lock().map_err(|_| Error::InvalidImage("preprocessor lock poisoned".into()))?;
        let stale = !matches!(&*cache, Some(m) if (m.in_w, m.in_h) == (w, h));
        if stale {
            let s = self.size;
            let matrix = |n: usize| -> Result<Option<PassMatrices>> {
                if n == s {
                    return Ok(None);
                }
                Ok(Some(PassMatrices::new(n, s, device)?))
            };
            *cache = Some(TapMatrices { in_w: w, in_h: h, horizontal: matrix(w)?, vertical: matrix(h)? });
        }
        let m = cache.as_ref().expect("filled above");
        Ok((m.horizontal.clone(), m.vertical.clone()))
    }

    /// The frame's pixels, packed, as a (H, W * C) u8 tensor on `device`.
    fn upload(&self, image: &ImageView<'_>, device: &Device) -> Result<Tensor> {
        let (h, row) = (image.height(), image.width() * image.format().channels());
        #[cfg(feature = "cuda")]
        if let Device::Cuda(cuda) = device {
            return self.upload_pinned(image, cuda);
        }
        let bytes = match image.packed_pixels() {
            Some(px) => px.to_vec(),
            None => (0..h).flat_map(|y| image.row(y)[..row].iter().copied()).collect(),
        };
        Ok(Tensor::from_vec(bytes, (h, row), device)?)
    }

    /// Copies the frame into the page-locked staging buffer (waiting, if
    /// need be, for the previous frame's copy out of it) and queues its
    /// copy to the device on the device's stream.
    #[cfg(feature = "cuda")]
    fn upload_pinned(&self, image: &ImageView<'_>, cuda: &candle_core::CudaDevice) -> Result<Tensor> {
        use candle_core::cuda::CudaStorage;
        let (h, row) = (image.height(), image.width() * image.format().channels());
        let len = h * row;
        let stream = cuda.cuda_stream();
        let mut staging = self.staging.lock().map_err(|_| Error::InvalidImage("preprocessor lock poisoned".into()))?;
        if staging.as_ref().is_none_or(|b| b.len() != len) {
            // SAFETY: the whole buffer is written below before the copy
            // that reads it is queued.
            let buffer = unsafe { stream.context().alloc_pinned::<u8>(len) }.map_err(candle_core::Error::wrap)?;
            *staging = Some(buffer);
        }
        let buffer = staging.as_mut().expect("allocated above");
        // Waits for the previous copy out of the buffer, if still queued.
        let host = buffer.as_mut_slice().map_err(candle_core::Error::wrap)?;
        for y in 0..h {
            host[y * row..(y + 1) * row].copy_from_slice(&image.row(y)[..row]);
        }
        let device_bytes = stream.clone_htod(&*buffer).map_err(candle_core::Error::wrap)?;
        let storage = CudaStorage::wrap_cuda_slice(device_bytes, cuda.clone());
        Ok(Tensor::from_storage(candle_core::Storage::Cuda(storage), (h, row), candle_core::op::BackpropOp::none(), false))
    }
}
