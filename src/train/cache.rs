//! An on-disk cache of a frozen encoder's features: for every training
//! sample, the features of its image and of its mirror image (with the
//! crop the loader takes without random augmentation) and its depth map.
//! Training then reads them instead of decoding and encoding images. It
//! trades disk space (ViT-B/16: about 8.4 MB per sample in f32) and the
//! rotation, random crop and colour jitter augmentations for speed; the
//! horizontal flip is kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};

use crate::data::file_list::ListEntry;
use crate::data::sample::{flip_plane, Augment, DataSpec};
use crate::error::{Error, Result};
use crate::model::nn::{Features, TrainableModel};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::weights::{read_safetensors, write_safetensors};

const MANIFEST: &str = "manifest.json";

/// One cached training sample.
#[derive(Debug, Clone)]
pub struct CachedSample {
    /// Features of the image, then of its mirror; each with batch dim 1.
    pub features: Features,
    pub mirror: Features,
    pub depth: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

impl CachedSample {
    /// The features and depth as the loader would give them, mirrored or not.
    pub fn view(&self, flip: bool) -> (Features, Vec<f32>) {
        if flip {
            (self.mirror.clone(), flip_plane(&self.depth, self.width))
        } else {
            (self.features.clone(), self.depth.clone())
        }
    }
}

pub struct FeatureCache {
    dir: PathBuf,
}

/// FNV-1a, stable across platforms and compiler versions.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut f = Fingerprint::default();
    for part in parts {
        f.part(part);
    }
    f.finish()
}

/// [`fingerprint`] fed part by part (a model's frozen tensors, every value
/// of each, without holding them all as bytes at once).
#[derive(Debug, Clone)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// Adds bytes to the current part.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Ends the current part (so that "ab"+"c" differs from "a"+"bc").
    pub fn end_part(&mut self) {
        self.update(&[0xff]);
    }

    pub fn part(&mut self, bytes: &[u8]) {
        self.update(bytes);
        self.end_part();
    }

    pub fn finish(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl FeatureCache {
    fn sample_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:07}.safetensors"))
    }

    fn skip_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:07}.skip"))
    }

    /// Opens the cache in `dir`, computing what is missing. A cache made
    /// for other data or weights (another `fingerprint`) is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        dir: &Path,
        fingerprint: &str,
        entries: &[ListEntry],
        spec: &DataSpec,
        model: &dyn TrainableModel,
        device: &Device,
        stop: &AtomicBool,
        mut on_skip: impl FnMut(&ListEntry, &str),
    ) -> Result<Option<Self>> {
        let io = |source| Error::Io { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let manifest = dir.join(MANIFEST);
        let want = serde_json::json!({ "fingerprint": fingerprint, "samples": entries.len() });
        match std::fs::read_to_string(&manifest) {
            Ok(text) => {
                let have: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if have != want {
                    return Err(Error::Config {
                        path: manifest,
                        message: "this feature cache was made for other data, settings or weights; remove it or choose another directory".into(),
                    });
                }
            }
            Err(_) => std::fs::write(&manifest, want.to_string()).map_err(|source| Error::Io { path: manifest.clone(), source })?,
        }
        let cache = Self { dir: dir.to_owned() };
        let todo: Vec<usize> =
            (0..entries.len()).filter(|&i| !cache.sample_path(i).exists() && !cache.skip_path(i).exists()).collect();
        if todo.is_empty() {
            return Ok(Some(cache));
        }
        let mut progress = Progress::new("caching features", entries.len() as u64, "samples")
            .starting_at((entries.len() - todo.len()) as u64);
        for (k, &i) in todo.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                progress.finish();
                return Ok(None);
            }
            let loaded = spec.load_train(&entries[i], i, Augment::Off, &mut Rng::seed(0)).and_then(|s| {
                let m = spec.mirrored(&s)?;
                Ok((s, m))
            });
            match loaded {
                Ok((s, m)) => {
                    let size = spec.preprocessor.size();
                    let mut pixels = s.pixels.clone();
                    pixels.extend_from_slice(&m.pixels);
                    let pixels = Tensor::from_vec(pixels, (2, 3, size, size), &Device::Cpu)?.to_device(device)?;
                    let f = model.features(&pixels)?;
                    let mut tensors = Vec::new();
                    for (k, t) in f.0.iter().enumerate() {
                        tensors.push((format!("f.{k}"), t.get(0)?));
                        tensors.push((format!("m.{k}"), t.get(1)?));
                    }
                    let depth = s.depth.as_ref().ok_or_else(|| Error::InvalidImage("training sample without depth".into()))?;
                    tensors.push(("depth".into(), Tensor::from_slice(depth, (s.height, s.width), &Device::Cpu)?));
                    write_safetensors(&cache.sample_path(i), &tensors, &HashMap::new())?;
                }
                Err(reason) => {
                    on_skip(&entries[i], &reason);
                    std::fs::write(cache.skip_path(i), &reason).map_err(|source| Error::Io { path: cache.skip_path(i), source })?;
                }
            }
            progress.set((entries.len() - todo.len() + k + 1) as u64, "");
        }
        progress.finish();
        Ok(Some(cache))
    }

    /// The cached sample, or the reason it was skipped when the cache was made.
    pub fn get(&self, index: usize, device: &Device) -> Result<std::result::Result<CachedSample, String>> {
        if let Ok(reason) = std::fs::read_to_string(self.skip_path(index)) {
            return Ok(Err(reason));
        }
        let (tensors, _) = read_safetensors(&self.sample_path(index))?;
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        let mut features = Vec::new();
        let mut mirror = Vec::new();
        for k in 0.. {
            match (map.get(&format!("f.{k}")), map.get(&format!("m.{k}"))) {
                (Some(f), Some(m)) => {
                    features.push(f.unsqueeze(0)?.to_device(device)?);
                    mirror.push(m.unsqueeze(0)?.to_device(device)?);
                }
                _ => break,
            }
        }
        let depth = map.get("depth").ok_or_else(|| Error::Weights { path: self.sample_path(index), message: "no depth".into() })?;
        let (height, width) = depth.dims2()?;
        Ok(Ok(CachedSample {
            features: Features(features),
            mirror: Features(mirror),
            depth: depth.flatten_all()?.to_vec1::<f32>()?,
            width,
            height,
        }))
    }
}
