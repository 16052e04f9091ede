//! The library's front door for inference: a model of any family (loaded
//! through [`ModelFamily`]) turns camera frames into metric depth maps of
//! any size, timed per stage. What every family shares lives here: the
//! device, CPU batches split over the cores, preprocessing on the CPU or
//! the device, each map placed in its frame, and the pixels a bin head
//! cannot tell apart marked (REP 117).

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

use crate::device::{cpu_split, DeviceSpec, ModelDType};
use crate::error::{Error, Result};
use crate::image::device_preprocess::DevicePreprocessor;
use crate::image::preprocess::Preprocessor;
use crate::image::ImageView;
use crate::model::input::{InputGeometry, Region};
use crate::model::prompt_bins::{mark_beyond_bins, BeyondBins};

pub use crate::model::family::{DepthNet, ModelFamily, ModelFiles, ModelOverrides};

/// The model behind an estimator: any family's (downcast to reach what
/// only its family offers).
pub type DepthModel = dyn DepthNet;

/// Time spent in each stage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    pub preprocess: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Resize to the output size, clamp, copy back to the host.
    pub resize: Duration,
    /// How many forward passes the batch ran as: 1 for one pass over the
    /// whole batch, more when a CPU batch was split over the cores.
    pub groups: usize,
}

impl StageTimings {
    pub fn total(&self) -> Duration {
        self.preprocess + self.encoder + self.decoder + self.resize
    }
}

/// A row-major depth map in metres (Z along the optical axis).
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

pub struct DepthEstimator {
    net: Box<dyn DepthNet>,
    /// The model's crop, input and output placement.
    geometry: InputGeometry,
    /// Set when preprocessing runs on the model's device (the default on
    /// a GPU); otherwise frames are preprocessed on the CPU, bit-exactly.
    device_preprocessor: Option<DevicePreprocessor>,
    device: Device,
    dtype: DType,
    name: String,
    /// Bin-based heads: how pixels an end class leads come out.
    beyond_bins: BeyondBins,
    /// Split CPU batches over the cores (see [`cpu_split`]).
    split_batches: bool,
}

impl DepthEstimator {
    /// Reads the configs and weights, checks the weights strictly against
    /// the architecture, and builds the model on `device` in `dtype`.
    pub fn load(files: &ModelFiles, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        Self::load_with(files, &ModelOverrides::default(), device, dtype)
    }

    /// [`Self::load`] with some of the model config's settings replaced.
    pub fn load_with(files: &ModelFiles, overrides: &ModelOverrides, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        let family = match overrides.model_type {
            Some(f) => f,
            None => ModelFamily::of_config(&files.config)?,
        };
        let device = device.open()?;
        let net = family.load(files, &overrides.prompts, &device, dtype.0)?;
        Ok(Self::new(net, device, dtype.0))
    }

    /// A model of the architecture `files` describe with random weights
    /// (see [`crate::model::Family::random`]).
    pub fn random(files: &ModelFiles, device: DeviceSpec, dtype: ModelDType) -> Result<Self> {
        let family = ModelFamily::of_config(&files.config)?;
        let device = device.open()?;
        let net = family.random(files, &device, dtype.0)?;
        Ok(Self::new(net, device, dtype.0))
    }

    /// Wraps a built model (its weights must be on `device`).
    pub fn new(net: Box<dyn DepthNet>, device: Device, dtype: DType) -> Self {
        let geometry = net.geometry();
        let device_preprocessor = (!device.is_cpu() && net.device_preprocessing()).then(|| net.input_description().device_preprocessor());
        let name = net.name();
        Self { net, geometry, device_preprocessor, device, dtype, name, beyond_bins: BeyondBins::default(), split_batches: true }
    }

    /// The same estimator under another name (for logs and stats).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Preprocess on the model's device (on by default on a GPU) or on the
    /// CPU (the default there, and bit-exact with Pillow). A crop and a
    /// non-square input (the prompt families) are always prepared on the CPU.
    pub fn set_device_preprocessing(&mut self, on: bool) {
        self.device_preprocessor = (on && self.net.device_preprocessing()).then(|| self.net.input_description().device_preprocessor());
    }

    pub fn device_preprocessing(&self) -> bool {
        self.device_preprocessor.is_some()
    }

    pub fn model(&self) -> &DepthModel {
        self.net.as_ref()
    }

    pub fn family(&self) -> ModelFamily {
        self.net.family()
    }

    /// The frame -> input preparation (non-square for the prompt families).
    pub fn preprocessor(&self) -> &Preprocessor {
        self.geometry.preprocessor()
    }

    /// (width, height) of the model's input.
    pub fn input_dims(&self) -> (usize, usize) {
        self.geometry.input_dims()
    }

    /// The model's name (SPACE-CLIP: the backbone name from the training
    /// config; the prompt families: the family and its backbone).
    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bin-based heads (DepthCLIP, DepthBLIP-2): whether a pixel whose most
    /// likely class is the farthest (nearest) is reported as +Inf (-Inf),
    /// the default, or as the bins' weighted mean. Other models ignore it.
    pub fn set_beyond_bins(&mut self, beyond_bins: BeyondBins) {
        self.beyond_bins = beyond_bins;
    }

    /// Whether a CPU batch may run as groups of frames side by side (the
    /// default; also off for every estimator with
    /// `CLIP_DEPTH_NO_BATCH_SPLIT=1`), or always as one forward pass
    /// ([`StageTimings::groups`] says which ran).
    pub fn set_batch_split(&mut self, on: bool) {
        self.split_batches = on;
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The clamp range of the output, from the model config (the prompt
    /// families: the bins' range unless `min_depth`/`max_depth` are given).
    pub fn depth_range(&self) -> (f32, f32) {
        self.net.depth_range()
    }

    /// The side of a square input the model takes: SPACE-CLIP's input; for
    /// the prompt families the tower's native resolution (see
    /// [`Self::input_dims`] for their own).
    pub fn input_size(&self) -> usize {
        self.net.input_description().image_size
    }

    /// The normalised input batch (B, 3, H, W) in f32 on the CPU (cropped
    /// first when the model has a crop).
    pub fn preprocess(&self, images: &[ImageView<'_>]) -> Result<Tensor> {
        if images.is_empty() {
            return Err(Error::InvalidImage("empty batch".into()));
        }
        let (w, h) = self.input_dims();
        let mut planes = Vec::with_capacity(images.len() * 3 * w * h);
        for image in images {
            self.geometry.pixels_into(image, &mut planes)?;
        }
        Ok(Tensor::from_vec(planes, (images.len(), 3, h, w), &Device::Cpu)?)
    }

    /// Depth for one frame at `width` x `height` (the frame's own size when
    /// `None`), clamped to the configured depth range.
    pub fn estimate(&self, image: &ImageView<'_>, size: Option<(usize, usize)>) -> Result<(DepthMap, StageTimings)> {
        let size = size.unwrap_or((image.width(), image.height()));
        let (mut maps, timings) = self.estimate_batch(std::slice::from_ref(image), size)?;
        Ok((maps.remove(0), timings))
    }

    /// Depth for a batch of frames in one forward pass, all at one output size.
    pub fn estimate_batch(&self, images: &[ImageView<'_>], size: (usize, usize)) -> Result<(Vec<DepthMap>, StageTimings)> {
        self.estimate_sized(images, &vec![size; images.len()])
    }

    /// Depth for a batch of frames in one forward pass, each frame resized
    /// to its own output size (e.g. several cameras of different sizes).
    pub fn estimate_sized(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)]) -> Result<(Vec<DepthMap>, StageTimings)> {
        self.run(images, sizes, Some(self.depth_range()))
    }

    /// As [`Self::estimate_sized`], but the values are the model's own,
    /// not clamped to its depth range: what a range test (REP 117's
    /// too-near / too-far) or an evaluation with median scaling needs.
    pub fn estimate_sized_raw(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)]) -> Result<(Vec<DepthMap>, StageTimings)> {
        self.run(images, sizes, None)
    }

    fn run(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)], clamp: Option<(f32, f32)>) -> Result<(Vec<DepthMap>, StageTimings)> {
        if sizes.len() != images.len() {
            return Err(Error::InvalidImage(format!("{} images but {} output sizes", images.len(), sizes.len())));
        }
        if let Some((w, h)) = sizes.iter().find(|(w, h)| *w == 0 || *h == 0) {
            return Err(Error::InvalidImage(format!("output size {w}x{h} is empty")));
        }
        if self.device.is_cpu() && self.split_batches {
            if let Some(groups) = cpu_split::plan(images.len(), candle_core::utils::get_num_threads()) {
                return self.run_side_by_side(images, sizes, clamp, &groups);
            }
        }
        self.run_whole(images, sizes, clamp)
    }

    /// A CPU batch as groups of frames run at once, each on its own share
    /// of the cores (see [`cpu_split`]); the maps in order, each stage's
    /// time the longest group's.
    fn run_side_by_side(
        &self,
        images: &[ImageView<'_>],
        sizes: &[(usize, usize)],
        clamp: Option<(f32, f32)>,
        groups: &[std::ops::Range<usize>],
    ) -> Result<(Vec<DepthMap>, StageTimings)> {
        let pools = cpu_split::pools(groups.len(), candle_core::utils::get_num_threads()).map_err(Error::Device)?;
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .iter()
                .zip(pools.iter())
                .map(|(r, pool)| {
                    let (images, sizes) = (&images[r.clone()], &sizes[r.clone()]);
                    s.spawn(move || pool.install(|| self.run_whole(images, sizes, clamp)))
                })
                .collect();
            // A panic in a group is the caller's, as it would be in one pass.
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect::<Vec<_>>()
        });
        let mut maps = Vec::with_capacity(images.len());
        let mut timings = StageTimings::default();
        for result in results {
            let (m, t) = result?;
            maps.extend(m);
            timings.preprocess = timings.preprocess.max(t.preprocess);
            timings.encoder = timings.encoder.max(t.encoder);
            timings.decoder = timings.decoder.max(t.decoder);
            timings.resize = timings.resize.max(t.resize);
        }
        timings.groups = groups.len();
        Ok((maps, timings))
    }

    /// One forward pass over the whole batch.
    fn run_whole(&self, images: &[ImageView<'_>], sizes: &[(usize, usize)], clamp: Option<(f32, f32)>) -> Result<(Vec<DepthMap>, StageTimings)> {
        let mut timings = StageTimings { groups: 1, ..Default::default() };
        let t = Instant::now();
        let pixels = match &self.device_preprocessor {
            Some(on_device) if !images.is_empty() => on_device.process_batch(images, &self.device)?,
            _ => self.preprocess(images)?.to_device(&self.device)?,
        };
        let pixels = pixels.to_dtype(self.dtype)?;
        self.sync()?;
        timings.preprocess = t.elapsed();

        let t = Instant::now();
        let encoded = self.net.encode(&pixels)?;
        self.sync()?;
        timings.encoder = t.elapsed();

        let t = Instant::now();
        let grid = self.net.decode(&encoded)?;
        self.sync()?;
        timings.decoder = t.elapsed();

        // The maps come to the host once; each is resized into its frame's
        // crop region (the whole output without a crop), NaN elsewhere.
        let t = Instant::now();
        let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (_, _, gh, gw) = grid.depth.dims4()?;
        let host = to_host(&grid.depth)?;
        let edges = match (&grid.edge, self.beyond_bins) {
            (Some(edge), BeyondBins::Mark) => Some(to_host(edge)?),
            _ => None,
        };
        let unbounded = (f32::NEG_INFINITY, f32::INFINITY);
        let maps = host
            .chunks_exact(gh * gw)
            .enumerate()
            .zip(images.iter().zip(sizes))
            .map(|((i, map), (image, &(width, height)))| {
                let region = self.geometry.region((image.width(), image.height()), (width, height));
                let mut data = self.geometry.place(map, (gw, gh), (width, height), region, (lo, hi));
                if let Some(edges) = &edges {
                    let edge = &edges[i * gh * gw..(i + 1) * gh * gw];
                    mark_beyond_bins(&mut data, &self.geometry.place(edge, (gw, gh), (width, height), region, unbounded));
                }
                DepthMap { width, height, data }
            })
            .collect();
        timings.resize = t.elapsed();
        Ok((maps, timings))
    }

    /// Depth from already normalised pixels (B, 3, H, W) in f32, each map
    /// resized to `size` (width, height) as a whole (no crop placement);
    /// clamped to the depth range when `clamp`. For evaluation, which feeds
    /// the loader's exact input (the prompt families: any size their tower
    /// takes).
    pub fn depth_from_pixels(&self, pixels: &Tensor, size: (usize, usize), clamp: bool) -> Result<Vec<DepthMap>> {
        let pixels = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        let depth = self.net.forward(&pixels)?;
        let range = if clamp { self.depth_range() } else { (f32::NEG_INFINITY, f32::INFINITY) };
        let (_, _, sh, sw) = depth.dims4()?;
        let whole = Region { left: 0, top: 0, width: size.0, height: size.1 };
        Ok(to_host(&depth)?
            .chunks_exact(sh * sw)
            .map(|map| DepthMap { width: size.0, height: size.1, data: self.geometry.place(map, (sw, sh), size, whole, range) })
            .collect())
    }

    fn sync(&self) -> Result<()> {
        if !self.device.is_cpu() {
            self.device.synchronize()?;
        }
        Ok(())
    }
}

fn to_host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}
