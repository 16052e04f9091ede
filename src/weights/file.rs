//! Reading every tensor of a weight file, whatever its container.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Safetensors,
    /// `torch.save` zip archive (PyTorch >= 1.6).
    TorchZip,
    /// `torch.jit.save` archive (OpenAI's CLIP `.pt` files): its tensors
    /// only, no TorchScript is run.
    TorchScript,
}

/// All tensors of one file, with the names it stores them under.
#[derive(Debug)]
pub struct TensorFile {
    pub path: PathBuf,
    pub format: FileFormat,
    pub tensors: Vec<(String, Tensor)>,
}

fn weights_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights { path: path.to_owned(), message: message.into() }
}

/// Tells the container from its first bytes, not its extension.
fn sniff(path: &Path) -> Result<FileFormat> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let n = file.read(&mut head).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(FileFormat::TorchZip);
    }
    if n == 9 && head[8] == b'{' {
        return Ok(FileFormat::Safetensors);
    }
    if head.first() == Some(&0x80) {
        return Err(weights_error(
            path,
            "legacy (pre-1.6, non-zip) PyTorch pickle; re-save it with a current torch.save",
        ));
    }
    if n == 0 {
        return Err(weights_error(path, "file is empty"));
    }
    Err(weights_error(path, "neither a safetensors file nor a PyTorch zip checkpoint"))
}

/// Reads every tensor on the CPU. For a training checkpoint
/// (`{"model": state_dict, "optimizer": ..., "epoch": n}`) the `model` entry
/// is read (or `state_dict`); a bare state dict is read as is.
pub fn read_tensor_file(path: &Path) -> Result<TensorFile> {
    let mut format = sniff(path)?;
    if format == FileFormat::TorchZip && super::torchscript::is_torchscript(path) {
        format = FileFormat::TorchScript;
    }
    // The parsers below are third-party code fed untrusted bytes: a panic in
    // them must surface as an error on this file, not take the process down.
    let read = std::panic::catch_unwind(|| match format {
        FileFormat::Safetensors => candle_core::safetensors::load(path, &Device::Cpu)
            .map(|m| m.into_iter().collect::<Vec<_>>()),
        FileFormat::TorchZip => read_torch_zip(path),
        FileFormat::TorchScript => super::torchscript::read_torchscript(path).map_err(candle_core::Error::Msg),
    });
    let tensors = match read {
        Ok(Ok(tensors)) => tensors,
        Ok(Err(e)) => return Err(weights_error(path, one_line(&e.to_string()))),
        Err(_) => return Err(weights_error(path, "the file is corrupt (its parser failed)")),
    };
    if tensors.is_empty() {
        return Err(weights_error(path, "the file holds no tensors"));
    }
    Ok(TensorFile { path: path.to_owned(), format, tensors })
}

/// A `torch.save` archive: its `model` entry (or `state_dict`), else the
/// archive's top-level dict.
fn read_torch_zip(path: &Path) -> candle_core::Result<Vec<(String, Tensor)>> {
    let mut last_err = String::new();
    for key in [Some("model"), Some("state_dict"), None] {
        match super::torchscript::read_torch_save(path, key) {
            Ok(t) if !t.is_empty() => return Ok(t),
            Ok(_) => {}
            Err(e) if e.contains("not found") => last_err = e,
            Err(e) => return Err(candle_core::Error::Msg(e)),
        }
    }
    Err(candle_core::Error::Msg(if last_err.is_empty() { "no tensors found in the checkpoint".into() } else { last_err }))
}

/// Library errors may carry backtraces or several lines; keep the first.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
