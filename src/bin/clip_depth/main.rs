//! `clip_depth`: SPACE-CLIP metric depth from the command line (no ROS).
//! Every failure ends with one line on stderr and exit code 2.

mod args;
mod bench;
mod bench_train;
mod dataset;
mod eval;
mod infer;
mod inspect;
mod train;

#[cfg(test)]
mod docs_check;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "clip_depth", version, about = "Metric depth from one image with SPACE-CLIP (candle)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Estimate depth for one image; writes a float32 (H, W) .npy in metres.
    Infer(infer::InferArgs),
    /// Time each stage (preprocess, encoder, decoder, resize) per batch size.
    Bench(bench::BenchArgs),
    /// List a checkpoint's tensors, infer its architecture, report mismatches.
    Inspect(inspect::InspectArgs),
    /// Train a model's trainable part (SPACE-CLIP: the decoder) with the authors' recipe.
    Train(train::TrainArgs),
    /// Depth metrics of a checkpoint (or saved predictions) over the config's evaluation list.
    Eval(eval::EvalArgs),
    /// Write a random-weight checkpoint of a given architecture (official
    /// names, .safetensors), to exercise the node or a pipeline at full size.
    RandomCheckpoint(bench::RandomCheckpointArgs),
    /// Make a training dataset from an RGB-D rosbag2 recording or from synthetic scenes.
    Dataset(dataset::DatasetArgs),
}

fn main() -> ExitCode {
    clip_depth_ros::tune_cpu_runtime();
    clip_depth_ros::error::one_line_panics("clip_depth");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Infer(args) => infer::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::RandomCheckpoint(args) => bench::write_random_checkpoint(args),
        Command::Dataset(args) => dataset::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("clip_depth: error: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
