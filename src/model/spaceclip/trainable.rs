//! SPACE-CLIP for training: the frozen backbone (the fast inference
//! encoder, no gradients) and the decoder, FiLM generators and auxiliary
//! heads as trainable layers with PyTorch's train/eval semantics. In eval
//! mode it computes what the inference decoder computes (BatchNorm from
//! running statistics, no dropout), so weights trained here deploy as is.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::DecoderConfig;
use super::decoder::SpaceClipDecoder;
use super::BACKBONE_PREFIX;
use crate::kernels::train::relu::relu;
use crate::kernels::train::separable::resize_bilinear;
use crate::model::nn::{
    BatchNorm2d, Conv2d, ConvTranspose2x2, ForwardMode, Dropout, Features, InitSource, Linear, ParamBuilder, ParamStore,
    Prediction, Role, TrainableModel,
};
use crate::model::vision::{tokens_to_map, VisionBackbone};
use crate::model::BackboneConfig;

/// Conv -> BN -> ReLU, the pattern of every fusion and head stage
/// (`{conv}`, `{bn}` names given by the caller).
#[derive(Debug, Clone)]
struct ConvBnRelu {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBnRelu {
    fn new(conv_pb: &ParamBuilder, bn_pb: &ParamBuilder, c_in: usize, c_out: usize, kernel: usize) -> Result<Self> {
        Ok(Self { conv: Conv2d::new(conv_pb, c_in, c_out, kernel, false)?, bn: BatchNorm2d::new(bn_pb, c_out)? })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        self.bn.forward_relu(&self.conv.forward(x)?, ctx)
    }
}

/// `Up(i, o)`: ConvTranspose2d(k2, s2) -> Conv3x3 -> BN -> ReLU.
#[derive(Debug, Clone)]
struct UpBlock {
    upsample: ConvTranspose2x2,
    conv: ConvBnRelu,
}

impl UpBlock {
    fn new(pb: &ParamBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            upsample: ConvTranspose2x2::new(&pb.pp("upsample"), c_in, c_out)?,
            conv: ConvBnRelu::new(&pb.pp("conv.0"), &pb.pp("conv.1"), c_out, c_out, 3)?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        self.conv.forward(&self.upsample.forward(x)?, ctx)
    }
}

/// `Res(c)`: Conv3x3 -> BN -> ReLU -> Dropout -> Conv3x3 -> BN -> + x -> ReLU.
#[derive(Debug, Clone)]
struct ResBlock {
    first: ConvBnRelu,
    dropout: Dropout,
    conv2: Conv2d,
    norm2: BatchNorm2d,
}

impl ResBlock {
    fn new(pb: &ParamBuilder, c: usize, dropout: f64) -> Result<Self> {
        Ok(Self {
            first: ConvBnRelu::new(&pb.pp("conv1"), &pb.pp("norm1"), c, c, 3)?,
            dropout: Dropout::new(dropout),
            conv2: Conv2d::new(&pb.pp("conv2"), c, c, 3, false)?,
            norm2: BatchNorm2d::new(&pb.pp("norm2"), c)?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        let y = self.dropout.forward(&self.first.forward(x, ctx)?, ctx)?;
        let y = self.norm2.forward(&self.conv2.forward(&y)?, ctx)?;
        relu(&(y + x)?)
    }
}

/// Structural pathway stage.
#[derive(Debug, Clone)]
struct StructuralBlock {
    upsample_low: UpBlock,
    fusion: ConvBnRelu,
}

impl StructuralBlock {
    fn new(pb: &ParamBuilder, c_in: usize, c_skip: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            upsample_low: UpBlock::new(&pb.pp("upsample_low"), c_in, c_out)?,
            fusion: ConvBnRelu::new(&pb.pp("fusion_conv.0"), &pb.pp("fusion_conv.1"), c_out + c_skip, c_out, 3)?,
        })
    }

    fn forward(&self, low: &Tensor, skip: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        let up = self.upsample_low.forward(low, ctx)?;
        let (_, _, h, w) = up.dims4()?;
        let skip = resize_bilinear(skip, h, w, false)?;
        self.fusion.forward(&Tensor::cat(&[&up, &skip], 1)?, ctx)
    }
}

/// `skip * (1 + sigmoid(conv1x1(up)))`.
fn gate(conv: &Conv2d, up: &Tensor, skip: &Tensor) -> Result<Tensor> {
    crate::kernels::train::gate::gate(&conv.forward(up)?, skip)
}

/// Semantic pathway stage.
#[derive(Debug, Clone)]
struct MainBlock {
    upsample_low: UpBlock,
    skip_clip_gate: Conv2d,
    skip_struct_gate: Option<Conv2d>,
    fusion: ConvBnRelu,
    res: ResBlock,
}

impl MainBlock {
    fn new(pb: &ParamBuilder, c_low: usize, c_clip: usize, c_struct: usize, c_out: usize, dropout: f64) -> Result<Self> {
        let upsample_low = UpBlock::new(&pb.pp("upsample_low"), c_low, c_out)?;
        let skip_clip_gate = Conv2d::new(&pb.pp("skip_clip_gate.0"), c_out, c_clip, 1, true)?;
        let skip_struct_gate =
            if c_struct > 0 { Some(Conv2d::new(&pb.pp("skip_struct_gate.0"), c_out, c_struct, 1, true)?) } else { None };
        let c_cat = c_out + c_clip + c_struct;
        Ok(Self {
            upsample_low,
            skip_clip_gate,
            skip_struct_gate,
            fusion: ConvBnRelu::new(&pb.pp("fusion_conv.0"), &pb.pp("fusion_conv.1"), c_cat, c_out, 3)?,
            res: ResBlock::new(&pb.pp("fusion_conv.3"), c_out, dropout)?,
        })
    }

    fn forward(&self, low: &Tensor, skip_clip: &Tensor, skip_struct: Option<&Tensor>, ctx: &ForwardMode) -> Result<Tensor> {
        let up = self.upsample_low.forward(low, ctx)?;
        let (_, _, h, w) = up.dims4()?;
        let clip = gate(&self.skip_clip_gate, &up, &resize_bilinear(skip_clip, h, w, false)?)?;
        let fused = match (&self.skip_struct_gate, skip_struct) {
            (Some(g), Some(s)) => {
                let s = gate(g, &up, &resize_bilinear(s, h, w, false)?)?;
                Tensor::cat(&[&up, &clip, &s], 1)?
            }
            (None, None) => Tensor::cat(&[&up, &clip], 1)?,
            _ => candle_core::bail!("structural skip given to a stage built without one, or missing"),
        };
        self.res.forward(&self.fusion.forward(&fused, ctx)?, ctx)
    }
}

/// Conv3x3 -> BN -> ReLU -> Conv(k, bias) -> ReLU.
#[derive(Debug, Clone)]
struct DepthHead {
    first: ConvBnRelu,
    last: Conv2d,
}

impl DepthHead {
    fn new(pb: &ParamBuilder, c_in: usize, c_mid: usize, last_kernel: usize) -> Result<Self> {
        Ok(Self {
            first: ConvBnRelu::new(&pb.pp("0"), &pb.pp("1"), c_in, c_mid, 3)?,
            last: Conv2d::new(&pb.pp("3"), c_mid, 1, last_kernel, true)?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardMode) -> Result<Tensor> {
        relu(&self.last.forward(&self.first.forward(x, ctx)?)?)
    }
}

/// Floating-point types of a training run: the frozen encoder's (f32; bf16
/// on a GPU; f64 for reference runs) and the trainable part's (f32, or
/// f64 for reference runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    pub encoder: DType,
    pub train: DType,
}

impl Default for Precision {
    fn default() -> Self {
        Self { encoder: DType::F32, train: DType::F32 }
    }
}

/// The decoder's settings that only training reads (the authors' YAML
/// defaults differ from inference's: no aux heads and dropout 0.1 when
/// the keys are absent).
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub aux_heads: bool,
    pub dropout: f64,
}

#[derive(Debug, Clone)]
struct Decoder {
    film: Vec<(Linear, Linear)>,
    main_path_projections: Vec<Conv2d>,
    structural_path_projections: Vec<Conv2d>,
    structural_decoder_blocks: Vec<StructuralBlock>,
    main_decoder_blocks: Vec<MainBlock>,
    depth_prediction_head: DepthHead,
    aux_depth_heads: Vec<DepthHead>,
    dim: usize,
}

impl Decoder {
    /// Registers in the order PyTorch's `state_dict()` lists the tensors.
    fn new(pb: &ParamBuilder, cfg: &DecoderConfig, dim: usize, opts: TrainOptions) -> Result<Self> {
        let ch = &cfg.decoder_channels;
        let n = cfg.num_stages();
        let film = if cfg.use_film {
            (0..n)
                .map(|i| {
                    let g = pb.pp("film_param_generators").pp(i);
                    Ok((Linear::new(&g.pp(0), dim, cfg.film_param_hidden_dim)?, Linear::new(&g.pp(2), cfg.film_param_hidden_dim, 2 * dim)?))
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let main_path_projections = (0..n)
            .map(|i| Conv2d::new(&pb.pp("main_path_projections").pp(i), dim, ch[i], 1, true))
            .collect::<Result<_>>()?;
        let n_struct = if cfg.use_structural_pathway { n - 1 } else { 0 };
        let main_decoder_blocks = (0..n)
            .map(|i| {
                let c_low = if i == 0 { ch[0] } else { ch[i - 1] };
                let c_struct = if i < n_struct { ch[i] } else { 0 };
                MainBlock::new(&pb.pp("main_decoder_blocks").pp(i), c_low, ch[i], c_struct, ch[i], opts.dropout)
            })
            .collect::<Result<_>>()?;
        let structural_path_projections = (0..n_struct)
            .map(|j| Conv2d::new(&pb.pp("structural_path_projections").pp(j), dim, ch[j], 1, true))
            .collect::<Result<_>>()?;
        let structural_decoder_blocks = (0..n_struct)
            .map(|i| {
                let c_in = if i == 0 { dim } else { ch[i - 1] };
                StructuralBlock::new(&pb.pp("structural_decoder_blocks").pp(i), c_in, ch[i], ch[i])
            })
            .collect::<Result<_>>()?;
        let last = ch[n - 1];
        let depth_prediction_head = DepthHead::new(&pb.pp("depth_prediction_head"), last, last / 2, 3)?;
        let aux_depth_heads = if opts.aux_heads {
            (0..n - 1)
                .map(|k| DepthHead::new(&pb.pp("aux_depth_heads").pp(k), ch[k], (ch[k] / 2).max(16), 1))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            film,
            main_path_projections,
            structural_path_projections,
            structural_decoder_blocks,
            main_decoder_blocks,
            depth_prediction_head,
            aux_depth_heads,
            dim,
        })
    }

    /// Patch tokens of the semantic then structural taps, pooler (B, D).
    fn forward(&self, tokens: &[Tensor], pooler: &Tensor, out: (usize, usize), ctx: &ForwardMode) -> Result<Prediction> {
        let n = self.main_decoder_blocks.len();
        let (main_tokens, struct_tokens) = tokens.split_at(n);
        let mut main_feat = Vec::with_capacity(n);
        for (i, t) in main_tokens.iter().enumerate() {
            let t = match self.film.get(i) {
                Some((first, second)) => {
                    let p = second.forward(&relu(&first.forward(pooler)?)?)?.unsqueeze(1)?; // (B, 1, 2D)
                    let (gamma, beta) = (p.narrow(2, 0, self.dim)?, p.narrow(2, self.dim, self.dim)?);
                    t.broadcast_mul(&gamma)?.broadcast_add(&beta)?
                }
                None => t.clone(),
            };
            main_feat.push(self.main_path_projections[i].forward(&tokens_to_map(&t)?)?);
        }
        let struct_maps = struct_tokens
            .iter()
            .zip(&self.structural_path_projections)
            .map(|(t, p)| p.forward(&tokens_to_map(t)?))
            .collect::<Result<Vec<_>>>()?;
        let mut s = match struct_tokens.first() {
            Some(t) => Some(tokens_to_map(t)?),
            None => None,
        };
        let mut x = main_feat[0].clone();
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let skip_struct = match (self.structural_decoder_blocks.get(i), s.as_ref()) {
                (Some(block), Some(prev)) => {
                    let next = block.forward(prev, &struct_maps[i], ctx)?;
                    s = Some(next.clone());
                    Some(next)
                }
                _ => None,
            };
            x = self.main_decoder_blocks[i].forward(&x, &main_feat[i], skip_struct.as_ref(), ctx)?;
            stages.push(x.clone());
        }
        let depth = resize_bilinear(&self.depth_prediction_head.forward(&x, ctx)?, out.0, out.1, false)?;
        let aux = self
            .aux_depth_heads
            .iter()
            .zip(&stages)
            .map(|(head, feat)| resize_bilinear(&head.forward(feat, ctx)?, out.0, out.1, false))
            .collect::<Result<_>>()?;
        Ok(Prediction { depth, aux })
    }
}

/// SPACE-CLIP with a frozen backbone and a trainable decoder.
pub struct TrainableSpaceClip {
    store: ParamStore,
    backbone: VisionBackbone,
    decoder: Decoder,
    taps: Vec<usize>,
    backbone_cfg: BackboneConfig,
    precision: Precision,
}

impl TrainableSpaceClip {
    /// `backbone` holds every backbone tensor under its canonical name
    /// (`clip_vision_model.vision_model.*`), already checked; the decoder
    /// comes from `source` (a seed or a checkpoint's tensors).
    pub fn new(
        backbone: HashMap<String, Tensor>,
        backbone_cfg: &BackboneConfig,
        decoder_cfg: &DecoderConfig,
        opts: TrainOptions,
        source: &InitSource,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        decoder_cfg.check_taps(backbone_cfg.num_hidden_layers).map_err(candle_core::Error::Msg)?;
        let store = ParamStore::default();
        let mut names: Vec<&String> = backbone.keys().collect();
        names.sort();
        for name in names {
            store.insert(name.clone(), Role::Frozen, candle_core::Var::from_tensor(&backbone[name].to_device(device)?)?)?;
        }
        let on_device = backbone
            .into_iter()
            .map(|(k, v)| Ok((k.strip_prefix(&format!("{BACKBONE_PREFIX}.")).unwrap_or(&k).to_string(), v.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let vb = VarBuilder::from_tensors(on_device, precision.encoder, device);
        let backbone = VisionBackbone::new(vb, backbone_cfg)?;
        let pb = ParamBuilder::new(&store, source, device).with_dtype(precision.train);
        let decoder = Decoder::new(&pb, decoder_cfg, backbone_cfg.hidden_size, opts)?;
        Ok(Self { store, backbone, decoder, taps: SpaceClipDecoder::taps(decoder_cfg), backbone_cfg: backbone_cfg.clone(), precision })
    }
}

impl TrainableModel for TrainableSpaceClip {
    fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Patch tokens of every tap the decoder reads, then the pooler, in
    /// the training precision whatever the encoder's.
    fn features(&self, pixels: &Tensor) -> Result<Features> {
        let out = self.backbone.forward(&pixels.to_dtype(self.precision.encoder)?, &self.taps)?;
        let t = self.precision.train;
        let mut f = out
            .hidden_states
            .iter()
            .map(|h| self.backbone.patch_tokens(h)?.to_dtype(t)?.contiguous())
            .collect::<Result<Vec<_>>>()?;
        f.push(out.pooler.to_dtype(t)?);
        Ok(Features(f))
    }

    fn forward(&self, features: &Features, out_size: (usize, usize), ctx: &ForwardMode) -> Result<Prediction> {
        let (pooler, tokens) = features.0.split_last().ok_or_else(|| candle_core::Error::Msg("no features".into()))?;
        if tokens.len() != self.taps.len() {
            candle_core::bail!("expected {} feature maps, got {}", self.taps.len(), tokens.len());
        }
        self.decoder.forward(tokens, pooler, out_size, ctx)
    }

    fn input_size(&self) -> usize {
        self.backbone_cfg.image_size
    }

    fn normalisation(&self) -> ([f32; 3], [f32; 3]) {
        (self.backbone_cfg.image_mean, self.backbone_cfg.image_std)
    }
}
