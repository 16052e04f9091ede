//! A CLIP ViT as a token tower (the release's ViT path): every patch token of
//! the last layer through `post_layernorm` and `visual_projection`, at any
//! input whose sides are multiples of the patch, the position table resized
//! to the token grid. Hugging Face names (`vision_model.*`,
//! `visual_projection.weight`); the layer stack is SPACE-CLIP's encoder.

use std::sync::{Arc, Mutex};

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::VitPositions;
use crate::model::layers::{layer_norm, LayerNorm, Linear};
use crate::model::vision::encoder::Encoder;
use crate::model::vision::patch_embedding::PatchEmbedding;
use crate::model::BackboneConfig;

/// The last resized position table and the grid it is for.
type ResizedTable = Option<((usize, usize), Tensor)>;

#[derive(Debug, Clone)]
pub struct VitTokens {
    class_embedding: Tensor,
    patch_embedding: PatchEmbedding,
    /// The stored table, (1 + g*g, D), kept on the host in f32 for resizing.
    positions: Vec<f32>,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    visual_projection: Linear,
    mode: VitPositions,
    grid: usize,
    width: usize,
    patch: usize,
    /// The last resized table and its grid: frames all have one size.
    resized: Arc<Mutex<ResizedTable>>,
}

impl VitTokens {
    /// `vb` points at the root of a `CLIPModel` state dict.
    pub fn new(vb: VarBuilder, cfg: &BackboneConfig, embed_dim: usize, mode: VitPositions) -> Result<Self> {
        let vm = vb.pp("vision_model");
        let emb = vm.pp("embeddings");
        let d = cfg.hidden_size;
        let grid = cfg.grid_size();
        let positions = emb.get((grid * grid + 1, d), "position_embedding.weight")?;
        let positions = positions.to_dtype(candle_core::DType::F32)?.to_device(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let projection = vb.get((embed_dim, d), "visual_projection.weight")?;
        Ok(Self {
            class_embedding: emb.get(d, "class_embedding")?,
            patch_embedding: PatchEmbedding::new(emb.pp("patch_embedding"), cfg, false)?,
            positions,
            pre_layrnorm: layer_norm(d, cfg.layer_norm_eps, vm.pp("pre_layrnorm"))?,
            encoder: Encoder::new(vm.pp("encoder"), cfg)?,
            post_layernorm: layer_norm(d, cfg.layer_norm_eps, vm.pp("post_layernorm"))?,
            visual_projection: Linear::from_weights(projection, None)?,
            mode,
            grid,
            width: d,
            patch: cfg.patch_size,
            resized: Arc::new(Mutex::new(None)),
        })
    }

    pub fn patch_size(&self) -> usize {
        self.patch
    }

    /// Normalised pixels (B, 3, H, W) -> tokens (B, (H/p)(W/p), embed_dim).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        let p = self.patch;
        if h % p != 0 || w % p != 0 || h == 0 || w == 0 {
            candle_core::bail!("ViT input {w}x{h} is not a multiple of the patch size {p} on both sides");
        }
        let patches = self.patch_embedding.forward(pixels)?;
        let (b, n, d) = patches.dims3()?;
        let class = self.class_embedding.reshape((1, 1, d))?.expand((b, 1, d))?;
        let pos = self.position_table(h / p, w / p, pixels)?;
        let x = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&pos)?;
        let x = self.pre_layrnorm.forward(&x)?;
        let (last, _) = self.encoder.forward(&x, &[])?;
        let tokens = self.post_layernorm.forward(&last.narrow(1, 1, n)?)?;
        self.visual_projection.forward(&tokens)
    }

    /// The (1 + gh*gw, D) position table for a grid, on the pixels' device and dtype.
    fn position_table(&self, gh: usize, gw: usize, like: &Tensor) -> Result<Tensor> {
        if let Ok(cache) = self.resized.lock() {
            if let Some((grid, table)) = cache.as_ref() {
                if *grid == (gh, gw) && table.dtype() == like.dtype() && table.device().same_device(like.device()) {
                    return Ok(table.clone());
                }
            }
        }
        let data = if (gh, gw) == (self.grid, self.grid) {
            self.positions.clone()
        } else {
            match self.mode {
                VitPositions::SequenceLinear => resize_sequence(&self.positions, self.width, 1 + gh * gw),
                VitPositions::GridBilinear => resize_grid(&self.positions, self.width, self.grid, gh, gw),
            }
        };
        let table = Tensor::from_vec(data, (1 + gh * gw, self.width), like.device())?.to_dtype(like.dtype())?;
        if let Ok(mut cache) = self.resized.lock() {
            *cache = Some(((gh, gw), table.clone()));
        }
        Ok(table)
    }
}

/// PyTorch's source index for linear/bilinear resampling with
/// align_corners = false: `(dst + 0.5) * in / out - 0.5`, clamped at 0.
fn source_index(dst: usize, in_len: usize, out_len: usize) -> (usize, usize, f32) {
    let scale = in_len as f32 / out_len as f32;
    let src = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src as usize).min(in_len - 1);
    let i1 = (i0 + 1).min(in_len - 1);
    (i0, i1, src - i0 as f32)
}

/// The (rows, width) table resampled along its rows to `out_rows`
/// (`F.interpolate(table.T[None], size=out_rows, mode="linear")`).
fn resize_sequence(table: &[f32], width: usize, out_rows: usize) -> Vec<f32> {
    let rows = table.len() / width;
    let mut out = vec![0f32; out_rows * width];
    for r in 0..out_rows {
        let (i0, i1, l) = source_index(r, rows, out_rows);
        for c in 0..width {
            out[r * width + c] = (1.0 - l) * table[i0 * width + c] + l * table[i1 * width + c];
        }
    }
    out
}

/// The class row kept; the g x g grid resized to gh x gw (bilinear,
/// align_corners = false).
fn resize_grid(table: &[f32], width: usize, g: usize, gh: usize, gw: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity((1 + gh * gw) * width);
    out.extend_from_slice(&table[..width]);
    let grid = &table[width..];
    for y in 0..gh {
        let (y0, y1, ly) = source_index(y, g, gh);
        for x in 0..gw {
            let (x0, x1, lx) = source_index(x, g, gw);
            for c in 0..width {
                let at = |yy: usize, xx: usize| grid[(yy * g + xx) * width + c];
                let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                let bottom = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                out.push((1.0 - ly) * top + ly * bottom);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn resizing_matches_candle_interpolation() {
        let (rows, width) = (5, 3);
        let table: Vec<f32> = (0..rows * width).map(|i| (i as f32 * 0.37).sin()).collect();
        let t = Tensor::from_vec(table.clone(), (rows, width), &Device::Cpu).unwrap();
        // candle's interpolate1d is nearest; compare with its bilinear on a 1-row image.
        let reference = t.t().unwrap().reshape((1, width, 1, rows)).unwrap().upsample_bilinear2d(1, 9, false).unwrap();
        let reference = reference.reshape((width, 9)).unwrap().t().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ours = resize_sequence(&table, width, 9);
        for (a, b) in ours.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-6, "{a} {b}");
        }
    }
}
