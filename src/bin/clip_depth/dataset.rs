//! `clip_depth dataset`: training datasets from an RGB-D rosbag2 recording
//! (`from-bag`) or from procedural scenes with exact depth (`synth`), in
//! the file-list layout `clip_depth train` reads, with a ready config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use clip_depth_ros::data::rosbag::to_dataset::{from_bag, FromBagOptions};
use clip_depth_ros::data::rosbag::Warnings;
use clip_depth_ros::data::rosbag::scenes::SceneBag;
use clip_depth_ros::data::synth::{synthesize, SceneKind, SceneSink, SynthOptions};

use crate::args::parse_size;

#[derive(Args, Debug)]
pub struct DatasetArgs {
    #[command(subcommand)]
    command: DatasetCommand,
}

#[derive(Subcommand, Debug)]
enum DatasetCommand {
    /// Colour + depth pairs from a rosbag2 recording (.mcap or .db3, folder or file).
    FromBag(FromBagArgs),
    /// Ray-cast rooms or streets with exact depth (optionally also as a rosbag2).
    Synth(SynthArgs),
}

/// Options both commands share: the split, the config, the threads.
#[derive(Args, Debug)]
struct CommonArgs {
    /// Fraction of the samples held out for evaluation (the latest in time).
    #[arg(long, default_value_t = 0.2)]
    eval_fraction: f64,
    /// Take the config's model keys from this YAML (e.g. the tiny test
    /// model's) instead of the ViT-B/16 defaults.
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Set a key of the written config, e.g. --set batch_size=16 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Args, Debug)]
struct FromBagArgs {
    /// The bag: a rosbag2 folder (metadata.yaml + .mcap/.db3) or one file.
    #[arg(long)]
    bag: PathBuf,
    /// Colour topic: sensor_msgs/Image or CompressedImage (JPEG/PNG).
    #[arg(long)]
    rgb_topic: String,
    /// Depth topic: Image (16UC1 mm, 32FC1 m) or CompressedImage (compressedDepth).
    #[arg(long)]
    depth_topic: String,
    /// Colour camera_info (default: camera_info beside the image topic's base).
    #[arg(long)]
    rgb_info: Option<String>,
    /// Depth camera_info (default: camera_info beside the image topic's base).
    #[arg(long)]
    depth_info: Option<String>,
    /// Keep every N-th pair.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Largest stamp difference between paired colour and depth frames (ms).
    #[arg(long, default_value_t = 10.0)]
    max_offset_ms: f64,
    /// Least fraction of colour pixels with depth for a pair to be kept.
    #[arg(long, default_value_t = 0.3)]
    min_valid: f64,
    /// Output folder (new or empty).
    #[arg(long)]
    out: PathBuf,
    /// Leave out training frames this close (seconds) before the held-out ones.
    #[arg(long, default_value_t = 1.0)]
    split_gap: f64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Output folder (new or empty).
    #[arg(long)]
    out: PathBuf,
    /// Number of scenes.
    #[arg(long)]
    count: usize,
    /// Image size WxH.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (usize, usize),
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// indoor (rooms with furniture-like shapes) or street (ground, blocks, sky).
    #[arg(long, default_value = "indoor")]
    kind: SceneKind,
    /// Also write the scenes as a rosbag2 (MCAP) folder: colour, depth, camera_infos, /tf_static.
    #[arg(long)]
    bag: Option<PathBuf>,
    /// In the bag, a depth camera beside the colour camera (own frame, size
    /// and intrinsics) instead of depth registered to colour.
    #[arg(long, requires = "bag")]
    unregistered: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn check_fraction(v: f64, flag: &str) -> Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&v), "{flag} must be between 0 and 1, got {v}");
    Ok(())
}

fn warnings() -> Warnings {
    Warnings::new(|line| eprintln!("{line}"))
}

pub fn run(args: DatasetArgs) -> Result<ExitCode> {
    match args.command {
        DatasetCommand::FromBag(a) => run_from_bag(a),
        DatasetCommand::Synth(a) => run_synth(a),
    }
}

fn run_from_bag(a: FromBagArgs) -> Result<ExitCode> {
    check_fraction(a.min_valid, "--min-valid")?;
    check_fraction(a.common.eval_fraction, "--eval-fraction")?;
    anyhow::ensure!(a.max_offset_ms.is_finite() && a.max_offset_ms >= 0.0, "--max-offset-ms must be >= 0");
    anyhow::ensure!(a.split_gap.is_finite() && a.split_gap >= 0.0, "--split-gap must be >= 0");
    let opts = FromBagOptions {
        bag: a.bag,
        rgb_topic: a.rgb_topic,
        depth_topic: a.depth_topic,
        rgb_info: a.rgb_info,
        depth_info: a.depth_info,
        every: a.every as usize,
        max_offset_ns: (a.max_offset_ms * 1e6).round() as i64,
        min_valid: a.min_valid,
        out: a.out,
        eval_fraction: a.common.eval_fraction,
        split_gap_ns: (a.split_gap * 1e9).round() as i64,
        threads: a.common.threads,
        model_from: a.common.model_config,
        overrides: a.common.set,
    };
    let report = from_bag(&opts, &warnings())?;
    println!("dataset from {} -> {}", opts.bag.display(), opts.out.display());
    for line in report.lines() {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_synth(a: SynthArgs) -> Result<ExitCode> {
    check_fraction(a.common.eval_fraction, "--eval-fraction")?;
    let opts = SynthOptions {
        out: a.out,
        count: a.count,
        width: a.size.0,
        height: a.size.1,
        seed: a.seed,
        kind: a.kind,
        unregistered: a.unregistered,
        eval_fraction: a.common.eval_fraction,
        threads: a.common.threads,
        model_from: a.common.model_config,
        overrides: a.common.set,
    };
    let start = std::time::Instant::now();
    let mut bag = match &a.bag {
        Some(path) => Some(SceneBag::create(path, opts.unregistered).context("synth")?),
        None => None,
    };
    let r = synthesize(&opts, bag.as_mut().map(|b| b as &mut dyn SceneSink)).context("synth")?;
    let bag_path = match bag {
        Some(b) => Some(b.finish().context("synth")?),
        None => None,
    };
    println!(
        "{} {:?} scenes at {}x{} in {:.1} s -> {} ({} train, {} eval)",
        opts.count,
        opts.kind,
        opts.width,
        opts.height,
        start.elapsed().as_secs_f64(),
        opts.out.display(),
        r.train,
        r.eval
    );
    if let Some([lo, mid, hi]) = r.range {
        println!("  depth coverage {:.1} %; range {lo:.3} .. {hi:.3} m (median {mid:.2} m); max_depth {}", r.coverage * 100.0, r.max_depth);
    }
    println!("  camera fx {:.2} fy {:.2} cx {:.2} cy {:.2}", r.intrinsics.fx, r.intrinsics.fy, r.intrinsics.cx, r.intrinsics.cy);
    if let Some(bag) = &bag_path {
        println!(
            "  bag: {} ({}; topics /camera/color/image_raw, /camera/depth/image_raw, their camera_info, /tf_static)",
            bag.display(),
            if opts.unregistered { "depth camera beside the colour camera" } else { "depth registered to colour" }
        );
    }
    println!("  config: {}", r.config.display());
    Ok(ExitCode::SUCCESS)
}
