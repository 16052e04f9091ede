//! `clip_depth infer`: one image in, a depth .npy (and a picture) out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;

use clip_depth_ros::image::colormap::{colorize, finite_range, ColourOrder};
use clip_depth_ros::model::prompt_bins::BeyondBins;
use clip_depth_ros::{ImageView, PixelFormat};

use crate::args::{parse_size, ModelArgs};

#[derive(Args, Debug)]
pub struct InferArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input image(s) (PNG or JPEG); several run as one batch.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output size WxH (default: each input's size).
    #[arg(long, value_parser = parse_size)]
    pub output_size: Option<(usize, usize)>,
    /// Where to write the float32 (H, W) depth in metres, one per input.
    #[arg(long, num_args = 1.., required = true)]
    pub output: Vec<PathBuf>,
    /// Also write coloured PNGs of the depth (near = red, far = blue), one per input.
    #[arg(long, num_args = 1..)]
    pub colormap: Vec<PathBuf>,
    /// Bin-based models (DepthCLIP, DepthBLIP-2): `mark` writes +Inf where
    /// the farthest distance class is the most likely (beyond what the model
    /// tells apart) and -Inf where the nearest is; `keep` writes the bins'
    /// weighted mean there too (what the papers evaluate).
    #[arg(long, default_value = "mark")]
    pub beyond_bins: BeyondBins,
}

/// Decodes an image file to packed RGB8.
pub fn read_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .decode()
        .with_context(|| format!("cannot decode image {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((img.into_raw(), w, h))
}

pub fn run(args: InferArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        args.output.len() == args.input.len(),
        "{} inputs but {} --output paths: give one output per input",
        args.input.len(),
        args.output.len()
    );
    anyhow::ensure!(
        args.colormap.is_empty() || args.colormap.len() == args.input.len(),
        "{} inputs but {} --colormap paths: give none or one per input",
        args.input.len(),
        args.colormap.len()
    );
    // Check the cheap things before loading the model.
    let frames = args.input.iter().map(|p| read_rgb(p)).collect::<Result<Vec<_>>>()?;
    let mut estimator = args.model.load()?;
    estimator.set_beyond_bins(args.beyond_bins);
    let views = frames
        .iter()
        .map(|(rgb, w, h)| ImageView::packed(rgb, *w, *h, PixelFormat::Rgb8))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes: Vec<_> = views.iter().map(|v| args.output_size.unwrap_or((v.width(), v.height()))).collect();
    let (depths, timings) = estimator.estimate_sized(&views, &sizes)?;
    println!(
        "{} frame(s) in one batch: {:.1} ms (preprocess {:.1}, encoder {:.1}, decoder {:.1}, resize {:.1})",
        depths.len(),
        timings.total().as_secs_f64() * 1e3,
        timings.preprocess.as_secs_f64() * 1e3,
        timings.encoder.as_secs_f64() * 1e3,
        timings.decoder.as_secs_f64() * 1e3,
        timings.resize.as_secs_f64() * 1e3,
    );
    for (i, depth) in depths.iter().enumerate() {
        let output = &args.output[i];
        let tensor = Tensor::from_slice(&depth.data, (depth.height, depth.width), &Device::Cpu)?;
        tensor.write_npy(output).with_context(|| format!("cannot write {}", output.display()))?;
        let (lo, hi) = finite_range(&depth.data).unwrap_or((0.0, 0.0));
        println!(
            "depth {}x{} written to {} (range {lo:.3} .. {hi:.3} m)",
            depth.width,
            depth.height,
            output.display()
        );
        if let Some(png) = args.colormap.get(i) {
            let pixels = colorize(&depth.data, lo, hi, ColourOrder::Rgb);
            image::save_buffer(png, &pixels, depth.width as u32, depth.height as u32, image::ExtendedColorType::Rgb8)
                .with_context(|| format!("cannot write {}", png.display()))?;
            println!("colormap written to {} (red = {lo:.3} m, blue = {hi:.3} m)", png.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
