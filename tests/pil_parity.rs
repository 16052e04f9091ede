//! Preprocessing against Pillow's own pixels (tests/fixtures/pil, written by
//! tests/reference/make_pil_fixtures.py with Pillow itself): portrait frames,
//! frames with one side or both already at the input size (one resampling
//! pass, or none), upscaling, odd sizes and input sizes other than 224. The
//! CPU path must give Pillow's 8-bit pixels exactly; the device path (run on
//! the CPU device) the same up to the float rounding of the normalisation.

mod common;

use candle_core::Device;
use clip_depth_ros::image::device_preprocess::DevicePreprocessor;
use clip_depth_ros::image::pil_resize::resize_bicubic;
use clip_depth_ros::image::preprocess::Preprocessor;
use clip_depth_ros::{ImageView, PixelFormat};
use common::fixtures;

/// OpenAI CLIP's published normalisation (what the reference applies).
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Float noise of the normalisation; one grey level would be 0.015.
const SAME_PIXELS: f32 = 1e-5;

struct Case {
    name: String,
    frame: (Vec<u8>, usize, usize),
    size: usize,
    /// Pillow's S x S RGB8 pixels.
    pillow: Vec<u8>,
}

fn rgb_png(name: &str) -> (Vec<u8>, usize, usize) {
    let path = fixtures().join("pil").join(name);
    let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    (img.into_raw(), w, h)
}

fn cases() -> Vec<Case> {
    let manifest = std::fs::read_to_string(fixtures().join("pil/cases.json")).expect("tests/fixtures/pil/cases.json");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let cases: Vec<Case> = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let (source, size) = (c["source"].as_str().unwrap(), c["size"].as_u64().unwrap() as usize);
            let frame = rgb_png(source);
            assert_eq!((frame.1 as u64, frame.2 as u64), (c["width"].as_u64().unwrap(), c["height"].as_u64().unwrap()));
            let (pillow, pw, ph) = rgb_png(c["pillow"].as_str().unwrap());
            assert_eq!((pw, ph), (size, size), "{source}");
            Case { name: format!("{source} -> {size}"), frame, size, pillow }
        })
        .collect();
    // The kinds of frame the review asked for must all be there.
    assert!(cases.iter().any(|c| c.frame.2 > c.frame.1), "no portrait frame");
    assert!(cases.iter().any(|c| (c.frame.1, c.frame.2) == (c.size, c.size)), "no frame that needs no resize");
    assert!(cases.iter().any(|c| c.frame.1 == c.size && c.frame.2 != c.size), "no vertical-only resize");
    assert!(cases.iter().any(|c| c.frame.2 == c.size && c.frame.1 != c.size), "no horizontal-only resize");
    assert!(cases.iter().any(|c| c.size != 224), "only one input size");
    cases
}

/// (3, S, S) planes of Pillow's pixels, normalised as the reference does.
fn normalised(pillow: &[u8], size: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * size * size];
    for (i, px) in pillow.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * size * size + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

fn worst_difference(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()))
}

/// The frame as BGR8 with 7 junk bytes after each row.
fn padded_bgr(rgb: &[u8], w: usize) -> Vec<u8> {
    rgb.chunks_exact(w * 3).flat_map(|row| row.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).chain([0xA5; 7])).collect()
}

#[test]
fn cpu_resize_gives_pillows_pixels_exactly() {
    for case in cases() {
        let (rgb, w, h) = &case.frame;
        let view = ImageView::packed(rgb, *w, *h, PixelFormat::Rgb8).unwrap();
        let ours = resize_bicubic(&view, case.size, case.size);
        let differing = ours.iter().zip(&case.pillow).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{}: {differing} bytes differ from Pillow", case.name);
        let planes = Preprocessor::new(case.size, MEAN, STD).process(&view).unwrap();
        let worst = worst_difference(&planes, &normalised(&case.pillow, case.size));
        assert!(worst <= SAME_PIXELS, "{}: model input differs by {worst}", case.name);
    }
}

#[test]
fn device_preprocessing_gives_pillows_pixels() {
    for case in cases() {
        let (rgb, w, h) = &case.frame;
        let pre = DevicePreprocessor::new(case.size, MEAN, STD);
        let want = normalised(&case.pillow, case.size);
        let bgr = padded_bgr(rgb, *w);
        let views = [
            ("rgb8", ImageView::packed(rgb, *w, *h, PixelFormat::Rgb8).unwrap()),
            ("padded bgr8", ImageView::new(&bgr, *w, *h, w * 3 + 7, PixelFormat::Bgr8).unwrap()),
        ];
        for (what, view) in views {
            let ours = pre.process(&view, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let worst = worst_difference(&ours, &want);
            assert!(worst <= SAME_PIXELS, "{} ({what}): pixel values differ from Pillow's by {worst}", case.name);
        }
    }
}
