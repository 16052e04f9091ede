//! Writing and reading plain safetensors files of named tensors (training
//! outputs), with string metadata. Files are written to a temporary name
//! and renamed, so an interrupted write never leaves a truncated file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};

fn st_dtype(d: DType) -> Result<Dtype> {
    Ok(match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::U32 => Dtype::U32,
        DType::U8 => Dtype::U8,
        other => return Err(Error::Device(format!("cannot save {other:?} tensors"))),
    })
}

/// Writes `tensors` (in any order; names must be unique) to `path`.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let mut bytes = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        let data: Vec<u8> = match t.dtype() {
            DType::F32 => t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F64 => t.flatten_all()?.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::I64 => t.flatten_all()?.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::U32 => t.flatten_all()?.to_vec1::<u32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::U8 => t.flatten_all()?.to_vec1::<u8>()?,
            DType::F16 => t.flatten_all()?.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::BF16 => t.flatten_all()?.to_vec1::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            other => return Err(Error::Device(format!("cannot save {other:?} tensor {name}"))),
        };
        bytes.push((name.clone(), t.dtype(), t.dims().to_vec(), data));
    }
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = TensorView::new(st_dtype(*dtype)?, shape.clone(), data)
                .map_err(|e| Error::Weights { path: path.to_owned(), message: format!("{name}: {e}") })?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let tmp = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(views, Some(metadata.clone()), &tmp)
        .map_err(|e| Error::Weights { path: path.to_owned(), message: e.to_string() })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Every tensor of a safetensors file (on the CPU) and its metadata.
pub fn read_safetensors(path: &Path) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let data = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let bad = |message: String| Error::Weights { path: path.to_owned(), message };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&data).map_err(|e| bad(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&data, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
    let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata))
}
