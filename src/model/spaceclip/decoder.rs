//! The SPACE-CLIP dual-pathway decoder: a FiLM-conditioned semantic pathway
//! from deep taps, a structural pathway from shallow taps, fused coarse to
//! fine into a 224x224 metric depth map.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv::Conv;
use super::{blocks, film};

pub use blocks::{DepthHead, MainBlock, StructuralBlock};
pub use film::FilmGenerators;

use super::DecoderConfig;
use crate::model::layers::conv2d;
use crate::model::vision::tokens_to_map;

#[derive(Debug, Clone)]
pub struct SpaceClipDecoder {
    film_param_generators: Option<FilmGenerators>,
    main_path_projections: Vec<Conv>,
    structural_path_projections: Vec<Conv>,
    structural_decoder_blocks: Vec<StructuralBlock>,
    main_decoder_blocks: Vec<MainBlock>,
    depth_prediction_head: DepthHead,
    /// Training-only multi-scale heads: loaded (and shape-checked) when the
    /// checkpoint has them, never run.
    #[allow(dead_code)]
    aux_depth_heads: Vec<DepthHead>,
    num_main: usize,
}

impl SpaceClipDecoder {
    /// `dim` is the backbone's hidden size; `vb` points at the checkpoint root.
    pub fn new(vb: VarBuilder, cfg: &DecoderConfig, dim: usize) -> Result<Self> {
        let ch = &cfg.decoder_channels;
        let n = cfg.num_stages();
        let film_param_generators = if cfg.use_film {
            Some(FilmGenerators::new(vb.pp("film_param_generators"), n, dim, cfg.film_param_hidden_dim)?)
        } else {
            None
        };
        let main_path_projections = (0..n)
            .map(|i| conv2d(dim, ch[i], 1, true, vb.pp("main_path_projections").pp(i)))
            .collect::<Result<_>>()?;
        let n_struct = if cfg.use_structural_pathway { n - 1 } else { 0 };
        let structural_path_projections = (0..n_struct)
            .map(|j| conv2d(dim, ch[j], 1, true, vb.pp("structural_path_projections").pp(j)))
            .collect::<Result<_>>()?;
        let structural_decoder_blocks = (0..n_struct)
            .map(|i| {
                let c_in = if i == 0 { dim } else { ch[i - 1] };
                StructuralBlock::new(vb.pp("structural_decoder_blocks").pp(i), c_in, ch[i], ch[i])
            })
            .collect::<Result<_>>()?;
        let main_decoder_blocks = (0..n)
            .map(|i| {
                let c_low = if i == 0 { ch[0] } else { ch[i - 1] };
                let c_struct = if i < n_struct { ch[i] } else { 0 };
                MainBlock::new(vb.pp("main_decoder_blocks").pp(i), c_low, ch[i], c_struct, ch[i])
            })
            .collect::<Result<_>>()?;
        let last = ch[n - 1];
        let depth_prediction_head = DepthHead::new(vb.pp("depth_prediction_head"), last, last / 2, 3)?;
        let aux_vb = vb.pp("aux_depth_heads");
        let aux_depth_heads = (0..n.saturating_sub(1))
            .take_while(|k| aux_vb.contains_tensor(&format!("{k}.0.weight")))
            .map(|k| DepthHead::new(aux_vb.pp(k), ch[k], (ch[k] / 2).max(16), 1))
            .collect::<Result<_>>()?;
        Ok(Self {
            film_param_generators,
            main_path_projections,
            structural_path_projections,
            structural_decoder_blocks,
            main_decoder_blocks,
            depth_prediction_head,
            aux_depth_heads,
            num_main: n,
        })
    }

    /// The encoder taps this decoder reads, in the order `forward` expects
    /// their patch tokens: the semantic taps, then the structural ones.
    pub fn taps(cfg: &DecoderConfig) -> Vec<usize> {
        let mut taps = cfg.main_path_indices.clone();
        if cfg.use_structural_pathway {
            taps.extend_from_slice(&cfg.structural_path_indices);
        }
        taps
    }

    /// `patch_tokens[k]` (B, N, D) for the k-th entry of [`Self::taps`];
    /// pooler (B, D). Returns depth (B, 1, 16g, 16g) for a g x g patch grid.
    pub fn forward(&self, patch_tokens: &[Tensor], pooler: &Tensor) -> Result<Tensor> {
        let n = self.num_main;
        let (main_tokens, struct_tokens) = patch_tokens.split_at(n);
        let film = match &self.film_param_generators {
            Some(generators) => generators.params(pooler)?,
            None => Vec::new(),
        };
        let main_feat = main_tokens
            .iter()
            .enumerate()
            .map(|(i, tokens)| {
                let tokens = match film.get(i) {
                    Some((gamma, beta)) => film::modulate(tokens, gamma, beta)?,
                    None => tokens.clone(),
                };
                self.main_path_projections[i].forward(&tokens_to_map(&tokens)?)
            })
            .collect::<Result<Vec<_>>>()?;

        let mut x = main_feat[0].clone();
        let mut s = match struct_tokens.first() {
            Some(tokens) => Some(tokens_to_map(tokens)?),
            None => None,
        };
        let struct_maps = struct_tokens
            .iter()
            .zip(&self.structural_path_projections)
            .map(|(tokens, proj)| proj.forward(&tokens_to_map(tokens)?))
            .collect::<Result<Vec<_>>>()?;
        for i in 0..n {
            let skip_struct = match (self.structural_decoder_blocks.get(i), s.as_ref()) {
                (Some(block), Some(prev)) => {
                    let next = block.forward(prev, &struct_maps[i])?;
                    s = Some(next.clone());
                    Some(next)
                }
                _ => None,
            };
            x = self.main_decoder_blocks[i].forward(&x, &main_feat[i], skip_struct.as_ref())?;
        }
        self.depth_prediction_head.forward(&x)
    }
}
