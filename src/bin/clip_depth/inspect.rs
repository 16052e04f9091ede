//! `clip_depth inspect`: what a weight file holds, what architecture it
//! implies, and (given the configs) exactly what does not match. A whole
//! CLIP (what DepthCLIP reads: OpenAI TorchScript, OpenCLIP, Hugging Face)
//! is recognised by its names, or by a `model_type: depthclip` config; a
//! BLIP-2 (LAVIS or Hugging Face, what DepthBLIP-2 reads) likewise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use clip_depth_ros::estimator::ModelFamily;
use clip_depth_ros::model::depthclip::{declare_towers, ClipArchitecture};
use clip_depth_ros::model::{BackboneConfig, DecoderConfig};
use clip_depth_ros::model::spaceclip::{expected_tensors, infer_architecture};
use clip_depth_ros::weights::{is_backbone, record_tensors, ClipStateDict, StateDict};
use clip_depth_ros::ModelFiles;

use crate::args::BackboneArgs;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Checkpoint (.pt/.pth/.safetensors) or any weight file.
    checkpoint: PathBuf,
    /// Training YAML to check against (default: the architecture inferred from the tensors).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Separate CLIP weights to merge (as `infer` would) and the backbone config to check against.
    #[command(flatten)]
    backbone: BackboneArgs,
    /// List every tensor, not only the decoder's.
    #[arg(long)]
    all: bool,
}

pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let family = match &args.config {
        Some(path) => Some(ModelFamily::of_config(path)?),
        None => None,
    };
    if family == Some(ModelFamily::DepthBlip2) || (family.is_none() && looks_like_blip2(&args.checkpoint)) {
        return inspect_blip2(&args);
    }
    if family != Some(ModelFamily::SpaceClip) {
        // A whole CLIP is told by its names; anything else is a SPACE-CLIP file.
        match ClipStateDict::from_file(&args.checkpoint) {
            Ok(dict) if dict.has_text_tower() || family == Some(ModelFamily::DepthClip) => return inspect_clip(&args, dict),
            Err(e) if family == Some(ModelFamily::DepthClip) => return Err(e.into()),
            _ => {}
        }
    }
    let dict = StateDict::from_files(&args.checkpoint, args.backbone.clip_weights.as_deref())?;
    let tensors: BTreeMap<_, _> = dict.tensors().iter().collect();
    let backbone_count = tensors.keys().filter(|n| is_backbone(n)).count();
    let params: usize = tensors.values().map(|t| t.elem_count()).sum();
    println!(
        "{} tensors ({} backbone, {} decoder), {:.2} M parameters; {} stored tensors ignored (BN counters, text tower, ...)",
        tensors.len(),
        backbone_count,
        tensors.len() - backbone_count,
        params as f64 / 1e6,
        dict.ignored().len()
    );
    for (name, t) in &tensors {
        if args.all || !is_backbone(name) {
            println!("  {name:<70} {:?} {:?}", t.dims(), t.dtype());
        }
    }

    let inferred = infer_architecture(&dict);
    match &inferred.backbone {
        Some(b) => println!(
            "backbone (inferred): {:?}, hidden {}, {} layers, MLP {}, patch {}, image {} (heads not stored: assumed {})",
            b.kind, b.hidden_size, b.num_hidden_layers, b.intermediate_size, b.patch_size, b.image_size, b.num_attention_heads
        ),
        None => println!("backbone: not in this file (give --clip-weights)"),
    }
    match &inferred.decoder {
        Some(d) => println!(
            "decoder (inferred): channels {:?}, FiLM {} (hidden {}), structural pathway {}, aux heads {}",
            d.decoder_channels, d.use_film, d.film_param_hidden_dim, d.use_structural_pathway, d.use_multiscale_supervision
        ),
        None => println!("decoder: not in this file"),
    }

    let decoder = match &args.config {
        Some(path) => Some(DecoderConfig::from_yaml_file(path)?),
        None => inferred.decoder.clone(),
    };
    let backbone = match (&args.backbone.clip_config, &decoder) {
        (Some(path), _) => Some(BackboneConfig::from_json_file(path)?),
        (None, Some(d)) if args.config.is_some() => {
            let files = ModelFiles { config: args.config.clone().unwrap_or_default(), clip_weights: args.backbone.clip_weights.clone(), ..Default::default() };
            Some(clip_depth_ros::model::spaceclip::backbone_config(&files, d)?)
        }
        _ => inferred.backbone.clone(),
    };
    let (Some(backbone), Some(decoder)) = (backbone, decoder) else {
        println!("check: skipped (need both a backbone and a decoder)");
        return Ok(ExitCode::SUCCESS);
    };
    if let Err(message) = decoder.check_taps(backbone.num_hidden_layers) {
        println!("check: the config does not fit the backbone: {message}");
        return Ok(ExitCode::from(1));
    }
    let expected = expected_tensors(&backbone, &decoder, &dict.names())?;
    let report = dict.mismatches(&expected);
    if report.is_empty() {
        println!("check: all {} tensors the model needs are present with the right shapes", expected.len());
        return Ok(ExitCode::SUCCESS);
    }
    println!("check: MISMATCH");
    for e in &report.missing {
        println!("  missing     {:<64} {:?}", e.name, e.shape.dims());
    }
    for (name, want, got) in &report.wrong_shape {
        println!("  wrong shape {name:<64} expected {:?}, found {:?}", want.dims(), got.dims());
    }
    for (name, shape) in &report.unexpected {
        println!("  unexpected  {name:<64} {:?}", shape.dims());
    }
    Ok(ExitCode::from(1))
}

/// A whole CLIP: its layout, tensors, architecture and the strict check.
fn inspect_clip(args: &InspectArgs, dict: ClipStateDict) -> Result<ExitCode> {
    let tensors: BTreeMap<_, _> = dict.tensors().iter().collect();
    let params: usize = tensors.values().map(|t| t.elem_count()).sum();
    println!(
        "whole CLIP ({:?} names): {} tensors, {:.2} M parameters; {} stored tensors ignored (logit scale, BN counters, ...)",
        dict.layout(),
        tensors.len(),
        params as f64 / 1e6,
        dict.ignored().len()
    );
    if args.all {
        for (name, t) in &tensors {
            let stored = dict.stored_name(name);
            let from = if &stored == *name { String::new() } else { format!("  <- {stored}") };
            println!("  {name:<64} {:?} {:?}{from}", t.dims(), t.dtype());
        }
    }
    let beside = |name: &str| args.checkpoint.parent().map(|d| d.join(name)).filter(|p| p.is_file());
    let (arch, source) = match args.backbone.clip_config.clone().or_else(|| beside("open_clip_config.json")).or_else(|| beside("config.json")) {
        Some(path) => (ClipArchitecture::from_json_file(&path)?, path.display().to_string()),
        None => match ClipArchitecture::infer(&dict.shapes()) {
            Ok(arch) => (arch, "the tensors (heads = width / 64)".to_string()),
            Err(message) => {
                println!("architecture: cannot tell ({message})");
                return Ok(ExitCode::from(1));
            }
        },
    };
    println!(
        "image tower: {}; text tower: width {}, {} layers, {} heads, vocabulary {}, context {}; joint width {} (from {source})",
        arch.image.describe(),
        arch.text.width,
        arch.text.layers,
        arch.text.heads,
        arch.text.vocab_size,
        arch.text.context_length,
        arch.text.embed_dim
    );
    match arch.channel_stride() {
        Ok(s) => println!("DepthCLIP reads every {} image channel(s) against the text space", s),
        Err(m) => println!("DepthCLIP cannot use it: {m}"),
    }
    let expected = record_tensors(&dict.names(), |vb| declare_towers(vb, &arch))?;
    match dict.check(&expected) {
        Ok(()) => {
            println!("check: all {} tensors the model needs are present with the right shapes", expected.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("check: MISMATCH: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Whether a weight file holds a BLIP-2 Q-Former (LAVIS's or Hugging Face's names).
fn looks_like_blip2(path: &std::path::Path) -> bool {
    clip_depth_ros::weights::read_tensor_file(path)
        .map(|f| f.tensors.iter().any(|(n, _)| n.starts_with("Qformer.") || n.starts_with("qformer.")))
        .unwrap_or(false)
}

/// A BLIP-2's format, size and architecture, checked as DepthBLIP-2 loads it.
fn inspect_blip2(args: &InspectArgs) -> Result<ExitCode> {
    use clip_depth_ros::model::depthblip2::{check_weights, DepthBlip2Config};
    use clip_depth_ros::weights::Blip2StateDict;
    let cfg = match &args.config {
        Some(path) => DepthBlip2Config::from_yaml_file(path)?,
        None => DepthBlip2Config::default(),
    };
    let mut dict = Blip2StateDict::from_files(&args.checkpoint, args.backbone.clip_weights.as_deref())?;
    let tensors: BTreeMap<_, _> = dict.tensors().iter().map(|(n, t)| (n.clone(), (t.dims().to_vec(), t.dtype()))).collect();
    let params: usize = dict.tensors().values().map(|t| t.elem_count()).sum();
    println!(
        "BLIP-2 ({:?} names): {} tensors, {:.2} M parameters; {} stored tensors DepthBLIP-2 does not read",
        dict.format(),
        tensors.len(),
        params as f64 / 1e6,
        dict.ignored().len()
    );
    for (name, (dims, dtype)) in &tensors {
        if args.all || !name.starts_with("visual_encoder.") {
            println!("  {name:<70} {dims:?} {dtype:?}");
        }
    }
    match check_weights(&cfg, &mut dict, args.backbone.clip_config.as_deref()) {
        Ok(arch) => {
            println!("architecture: {}; every tensor DepthBLIP-2 reads is there with its shape", arch.describe());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("mismatch: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
