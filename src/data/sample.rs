//! One sample of the authors' data loader: the colour image and its depth
//! map read from disk, cropped, augmented (training) or resized
//! (evaluation) exactly as their `DataLoadPreprocess` does, and the
//! model input made from it (Pillow's bicubic squash to the input square,
//! normalised).

use crate::kernels::mirror::mirror_rows;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};

use super::file_list::ListEntry;
use crate::image::pil_geometry::{resize_nearest, rotate_nearest, rotate_rgb_bicubic, Plane};
use crate::image::pil_resize::resize_bicubic;
use crate::image::preprocess::Preprocessor;
use crate::image::{ImageView, PackedRgb, PixelFormat};
use crate::rng::Rng;

/// How to read one split of a dataset.
#[derive(Debug, Clone)]
pub struct DataSpec {
    /// `nyu`, `kitti` or another name (lower case).
    pub dataset: String,
    pub data_root: PathBuf,
    /// `None`: no ground truth (images only).
    pub gt_root: Option<PathBuf>,
    /// The size images are brought to (0: evaluation keeps each image's own).
    pub input_height: usize,
    pub input_width: usize,
    /// The KITTI benchmark crop (352 x 1216, bottom centre), KITTI only.
    pub kb_crop: bool,
    /// The NYU border crop (45, 41, 608, 472), NYU only.
    pub nyu_crop: bool,
    /// Random rotation range in degrees (training with augmentation).
    pub rotate_degree: Option<f64>,
    /// Stored depth value -> metres.
    pub depth_divisor: f64,
    pub preprocessor: Preprocessor,
}

/// What the loader does to a training sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Augment {
    /// Rotation, random crop, flip and colour jitter, as the authors.
    Random,
    /// None of them; the crop is taken at the origin. With the file order
    /// kept, a run is deterministic.
    Off,
    /// No rotation or colour jitter; crop at the origin; only the
    /// horizontal flip (the feature cache holds both mirror images).
    FlipOnly,
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// Position in the file list.
    pub index: usize,
    /// Normalised model input (3, S, S).
    pub pixels: Vec<f32>,
    /// The processed image (H, W, 3) the input was made from.
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// Depth (H, W) in metres, when the sample has ground truth.
    pub depth: Option<Vec<f32>>,
    pub focal: f32,
    /// Whether the image was mirrored (training).
    pub flipped: bool,
}


fn open(path: &Path) -> Result<DynamicImage, String> {
    ImageReader::open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("cannot decode {}: {e}", path.display()))
}

/// `Image.open(path).convert('RGB')`.
pub fn read_rgb(path: &Path) -> Result<PackedRgb, String> {
    let img = open(path)?.to_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    Ok(PackedRgb { data: img.into_raw(), width, height })
}

/// A depth file as Pillow opens it: 16-bit PNG (`I;16`) or 8-bit (`L`).
pub fn read_depth(path: &Path) -> Result<(Plane, usize, usize), String> {
    let img = open(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    match img {
        DynamicImage::ImageLuma16(d) => Ok((Plane::U16(d.into_raw()), w, h)),
        DynamicImage::ImageLuma8(d) => Ok((Plane::U8(d.into_raw()), w, h)),
        other => Err(format!("{}: depth must be a single-channel 8- or 16-bit image, not {:?}", path.display(), other.color())),
    }
}

/// `Image.crop(box)`: pixels outside the image are 0.
fn crop_rgb(img: &PackedRgb, left: i64, top: i64, w: usize, h: usize) -> PackedRgb {
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        let sy = top + y as i64;
        if sy < 0 || sy >= img.height as i64 {
            continue;
        }
        for x in 0..w {
            let sx = left + x as i64;
            if sx >= 0 && sx < img.width as i64 {
                let s = (sy as usize * img.width + sx as usize) * 3;
                data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&img.data[s..s + 3]);
            }
        }
    }
    PackedRgb { data, width: w, height: h }
}

fn crop_plane(p: &Plane, pw: usize, ph: usize, left: i64, top: i64, w: usize, h: usize) -> Plane {
    let pick = |i: usize| {
        let (sx, sy) = (left + (i % w) as i64, top + (i / w) as i64);
        ((0..pw as i64).contains(&sx) && (0..ph as i64).contains(&sy)).then(|| sy as usize * pw + sx as usize)
    };
    match p {
        Plane::U8(v) => Plane::U8((0..w * h).map(|i| pick(i).map(|j| v[j]).unwrap_or(0)).collect()),
        Plane::U16(v) => Plane::U16((0..w * h).map(|i| pick(i).map(|j| v[j]).unwrap_or(0)).collect()),
        Plane::F32(v) => Plane::F32((0..w * h).map(|i| pick(i).map(|j| v[j]).unwrap_or(0.0)).collect()),
    }
}

fn resize_rgb(img: &PackedRgb, w: usize, h: usize) -> PackedRgb {
    if (img.width, img.height) == (w, h) {
        return img.clone();
    }
    let view = ImageView::packed(&img.data, img.width, img.height, PixelFormat::Rgb8).expect("packed RGB");
    PackedRgb { data: resize_bicubic(&view, w, h), width: w, height: h }
}

/// Image and depth together through the geometric steps.
struct Pair {
    rgb: PackedRgb,
    depth: Option<(Plane, usize, usize)>,
}

impl Pair {
    fn crop(self, left: i64, top: i64, w: usize, h: usize) -> Pair {
        Pair {
            rgb: crop_rgb(&self.rgb, left, top, w, h),
            depth: self.depth.map(|(p, pw, ph)| (crop_plane(&p, pw, ph, left, top, w, h), w, h)),
        }
    }

    /// The KITTI benchmark crop: 352 x 1216 at the bottom centre, after
    /// growing a smaller image (bicubic / nearest) to fit.
    fn kb_crop(self) -> Pair {
        let (th, tw) = (352usize, 1216usize);
        let (mut w, mut h) = (self.rgb.width, self.rgb.height);
        let mut pair = self;
        if w < tw || h < th {
            let (nw, nh) = (w.max(tw), h.max(th));
            pair = Pair {
                rgb: resize_rgb(&pair.rgb, nw, nh),
                depth: pair.depth.map(|(p, pw, ph)| (resize_nearest(&p, pw, ph, nw, nh), nw, nh)),
            };
            (w, h) = (nw, nh);
        }
        let top = (h - th) as i64;
        let left = ((w - tw) as f64 / 2.0).round_ties_even() as i64;
        pair.crop(left, top, tw, th)
    }

    fn nyu_crop(self) -> Pair {
        self.crop(45, 41, 608 - 45, 472 - 41)
    }
}

/// Reads the sample's files; a missing depth file is an error only when
/// ground truth is required.
fn read_pair(spec: &DataSpec, entry: &ListEntry, need_depth: bool) -> Result<(Pair, f32), String> {
    let paths = entry.paths(&spec.data_root, spec.gt_root.as_deref())?;
    let rgb = read_rgb(&paths.rgb)?;
    let depth = match &paths.depth {
        Some(p) => match read_depth(p) {
            Ok(d) => Some(d),
            Err(e) if need_depth => return Err(e),
            Err(_) => None,
        },
        None if need_depth => return Err("no depth file on the line".into()),
        None => None,
    };
    let mut pair = Pair { rgb, depth };
    if spec.kb_crop && spec.dataset == "kitti" {
        pair = pair.kb_crop();
    }
    if spec.nyu_crop && spec.dataset == "nyu" {
        pair = pair.nyu_crop();
    }
    Ok((pair, paths.focal))
}

fn metres(p: &Plane, divisor: f64) -> Vec<f32> {
    // numpy: float32 values divided by a Python float, in float32.
    let d = divisor as f32;
    p.to_f32().into_iter().map(|v| v / d).collect()
}

impl DataSpec {
    fn finish(&self, index: usize, rgb: PackedRgb, depth: Option<Vec<f32>>, focal: f32, flipped: bool) -> Result<Sample, String> {
        let view = ImageView::packed(&rgb.data, rgb.width, rgb.height, PixelFormat::Rgb8).map_err(|e| e.to_string())?;
        let pixels = self.preprocessor.process(&view).map_err(|e| e.to_string())?;
        Ok(Sample { index, pixels, width: rgb.width, height: rgb.height, rgb: rgb.data, depth, focal, flipped })
    }

    /// A training sample (`_preprocess_train`): crops, rotation, random
    /// crop to the input size, flip and colour jitter, drawn from `rng`.
    pub fn load_train(&self, entry: &ListEntry, index: usize, augment: Augment, rng: &mut Rng) -> Result<Sample, String> {
        let (mut pair, focal) = read_pair(self, entry, true)?;
        if let (Augment::Random, Some(degree)) = (augment, self.rotate_degree) {
            let angle = (rng.uniform() - 0.5) * 2.0 * degree;
            let (w, h) = (pair.rgb.width, pair.rgb.height);
            pair.rgb.data = rotate_rgb_bicubic(&pair.rgb.data, w, h, angle);
            pair.depth = pair.depth.map(|(p, pw, ph)| (rotate_nearest(&p, pw, ph, angle), pw, ph));
        }
        let (plane, dw, dh) = pair.depth.take().ok_or("no depth")?;
        if (dw, dh) != (pair.rgb.width, pair.rgb.height) {
            return Err(format!("depth is {dw}x{dh} but the image is {}x{}", pair.rgb.width, pair.rgb.height));
        }
        let (th, tw) = (self.input_height, self.input_width);
        let (mut rgb, mut depth) = if pair.rgb.width < tw || pair.rgb.height < th {
            // Too small to crop: resized to the input size instead.
            let plane = Plane::F32(metres(&plane, self.depth_divisor));
            let Plane::F32(d) = resize_nearest(&plane, dw, dh, tw, th) else { unreachable!("f32 in, f32 out") };
            (resize_rgb(&pair.rgb, tw, th), d)
        } else {
            let (x, y) = if augment == Augment::Random {
                (rng.below_inclusive((pair.rgb.width - tw) as u64) as i64, rng.below_inclusive((pair.rgb.height - th) as u64) as i64)
            } else {
                (0, 0)
            };
            let cropped = Pair { rgb: pair.rgb, depth: Some((plane, dw, dh)) }.crop(x, y, tw, th);
            let (p, _, _) = cropped.depth.expect("depth kept");
            (cropped.rgb, metres(&p, self.depth_divisor))
        };
        let flip = match augment {
            Augment::Random | Augment::FlipOnly => rng.uniform() > 0.5,
            Augment::Off => false,
        };
        if flip {
            rgb = flip_rgb(&rgb);
            depth = flip_plane(&depth, tw);
        }
        if augment == Augment::Random && rng.uniform() > 0.5 {
            rgb = jitter(&rgb, rng);
        }
        self.finish(index, rgb, Some(depth), focal, flip)
    }

    /// An evaluation sample (`_preprocess_eval_test`): crops, then the
    /// image resized to the input size when it differs (bicubic, depth
    /// nearest). Depth is optional.
    pub fn load_eval(&self, entry: &ListEntry, index: usize) -> Result<Sample, String> {
        let (pair, focal) = read_pair(self, entry, false)?;
        // An input size of 0 keeps each image's own size.
        let (tw, th) = if self.input_width == 0 || self.input_height == 0 {
            (pair.rgb.width, pair.rgb.height)
        } else {
            (self.input_width, self.input_height)
        };
        let resize = (pair.rgb.width, pair.rgb.height) != (tw, th);
        let depth = match pair.depth {
            Some((p, pw, ph)) => {
                let d = metres(&p, self.depth_divisor);
                if resize {
                    let Plane::F32(d) = resize_nearest(&Plane::F32(d), pw, ph, tw, th) else { unreachable!("f32 in, f32 out") };
                    Some(d)
                } else if (pw, ph) == (tw, th) {
                    Some(d)
                } else {
                    return Err(format!("depth is {pw}x{ph} but the image is {tw}x{th}"));
                }
            }
            None => None,
        };
        let rgb = resize_rgb(&pair.rgb, tw, th);
        self.finish(index, rgb, depth, focal, false)
    }

    /// The sample with its image mirrored, model input remade (for the
    /// feature cache's mirror entry).
    pub fn mirrored(&self, s: &Sample) -> Result<Sample, String> {
        let rgb = flip_rgb(&PackedRgb { data: s.rgb.clone(), width: s.width, height: s.height });
        let depth = s.depth.as_ref().map(|d| flip_plane(d, s.width));
        self.finish(s.index, rgb, depth, s.focal, !s.flipped)
    }
}

/// The image mirrored along its width.
pub fn flip_rgb(img: &PackedRgb) -> PackedRgb {
    PackedRgb { data: mirror_rows(&img.data, img.width, 3), width: img.width, height: img.height }
}

/// A row-major plane (depth, mask) mirrored along its width.
pub fn flip_plane(d: &[f32], width: usize) -> Vec<f32> {
    mirror_rows(d, width, 1)
}

/// The authors' colour jitter on [0, 1] floats: gamma, brightness and one
/// factor per channel, each in U(0.9, 1.1), clipped, then back to 8 bits
/// by truncation (`(x * 255).astype(uint8)`).
fn jitter(img: &PackedRgb, rng: &mut Rng) -> PackedRgb {
    let gamma = rng.uniform_range(0.9, 1.1) as f32;
    let brightness = rng.uniform_range(0.9, 1.1) as f32;
    let colours = [rng.uniform_range(0.9, 1.1), rng.uniform_range(0.9, 1.1), rng.uniform_range(0.9, 1.1)];
    let data = img
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let x = (v as f32 / 255.0).powf(gamma) * brightness;
            // A float32 array scaled by a float64 factor: computed in f64, stored in f32.
            let x = ((x as f64) * colours[i % 3]) as f32;
            (x.clamp(0.0, 1.0) * 255.0) as u8
        })
        .collect();
    PackedRgb { data, width: img.width, height: img.height }
}
