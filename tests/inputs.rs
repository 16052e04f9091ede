//! Every pixel layout and row stride a camera may deliver gives the depth
//! of the equivalent packed RGB8 frame; bad buffers are refused with the
//! reason; outputs come at the requested size.

mod common;

use clip_depth_ros::{DepthEstimator, ImageView, PixelFormat};
use common::*;

const SCENES: [&str; 2] = ["scene_640x480.png", "scene_224.png"];

fn estimator() -> DepthEstimator {
    load(&tiny_clip_files("checkpoint.safetensors"))
}

/// The normalised model input of one frame.
fn input(est: &DepthEstimator, view: &ImageView<'_>) -> Vec<f32> {
    est.preprocess(std::slice::from_ref(view)).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn depth(est: &DepthEstimator, view: &ImageView<'_>) -> Vec<f32> {
    let (map, _) = est.estimate(view, None).unwrap();
    assert_eq!((map.width, map.height), (view.width(), view.height()));
    assert_eq!(map.data.len(), view.width() * view.height());
    map.data
}

/// `other` must give the model exactly the input, and so the depth, of `reference`.
fn assert_same(what: &str, est: &DepthEstimator, reference: &ImageView<'_>, other: &ImageView<'_>) {
    assert!(input(est, reference) == input(est, other), "{what}: the model input differs from RGB8");
    let rel = rel_max_diff(&depth(est, other), &depth(est, reference));
    assert!(rel <= 1e-6, "{what}: depth differs from RGB8 by {rel:e}");
}

fn assert_different(what: &str, est: &DepthEstimator, a: &ImageView<'_>, b: &ImageView<'_>) {
    let rel = rel_max_diff(&depth(est, a), &depth(est, b));
    assert!(rel > 1e-3, "{what}: depth did not change (rel {rel:e}): the comparison proves nothing");
}

fn swap_rb(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect()
}

/// Alpha that changes from pixel to pixel and covers 0 and 255.
fn alpha(i: usize, seed: usize) -> u8 {
    ((i * 37 + seed * 101 + (i / 7) * 13) % 256) as u8
}

fn with_alpha(pixels3: &[u8], seed: usize) -> Vec<u8> {
    pixels3.chunks_exact(3).enumerate().flat_map(|(i, p)| [p[0], p[1], p[2], alpha(i, seed)]).collect()
}

/// Rows of `stride` bytes: the packed row, then junk that changes per row
/// and per `seed`; with `short_last` the buffer ends right after the last
/// row's pixels.
fn padded(packed: &[u8], width: usize, height: usize, channels: usize, stride: usize, seed: u8, short_last: bool) -> Vec<u8> {
    let row = width * channels;
    assert!(stride > row);
    let mut out = Vec::with_capacity(stride * height);
    for y in 0..height {
        out.extend_from_slice(&packed[y * row..(y + 1) * row]);
        if !(short_last && y + 1 == height) {
            out.extend((0..stride - row).map(|i| (i as u8).wrapping_mul(31).wrapping_add(y as u8).wrapping_add(seed) | 1));
        }
    }
    out
}

#[test]
fn bgr8_gives_the_depth_of_rgb8() {
    let est = estimator();
    for scene in SCENES {
        let (rgb, w, h) = rgb(scene);
        let bgr = swap_rb(&rgb);
        let reference = ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap();
        let view = ImageView::packed(&bgr, w, h, PixelFormat::Bgr8).unwrap();
        assert_same(&format!("{scene} bgr8"), &est, &reference, &view);
        // The channel order must matter, else the test above is vacuous.
        let misread = ImageView::packed(&rgb, w, h, PixelFormat::Bgr8).unwrap();
        assert_different(&format!("{scene} rgb bytes read as bgr8"), &est, &reference, &misread);
    }
}

#[test]
fn rgba8_and_bgra8_ignore_alpha() {
    let est = estimator();
    for scene in SCENES {
        let (rgb, w, h) = rgb(scene);
        let reference = ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap();
        let bgr = swap_rb(&rgb);
        for seed in [0, 1] {
            let rgba = with_alpha(&rgb, seed);
            let view = ImageView::packed(&rgba, w, h, PixelFormat::Rgba8).unwrap();
            assert_same(&format!("{scene} rgba8 (alpha {seed})"), &est, &reference, &view);
            let bgra = with_alpha(&bgr, seed);
            let view = ImageView::packed(&bgra, w, h, PixelFormat::Bgra8).unwrap();
            assert_same(&format!("{scene} bgra8 (alpha {seed})"), &est, &reference, &view);
        }
        let rgba = with_alpha(&rgb, 0);
        let misread = ImageView::packed(&rgba, w, h, PixelFormat::Bgra8).unwrap();
        assert_different(&format!("{scene} rgba bytes read as bgra8"), &est, &reference, &misread);
    }
}

#[test]
fn mono8_gives_the_depth_of_a_grey_rgb8_image() {
    let est = estimator();
    for scene in SCENES {
        let (rgb, w, h) = rgb(scene);
        let mono: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| ((p[0] as u32 * 77 + p[1] as u32 * 150 + p[2] as u32 * 29) >> 8) as u8)
            .collect();
        let grey: Vec<u8> = mono.iter().flat_map(|&m| [m, m, m]).collect();
        let reference = ImageView::packed(&grey, w, h, PixelFormat::Rgb8).unwrap();
        let view = ImageView::packed(&mono, w, h, PixelFormat::Mono8).unwrap();
        assert_same(&format!("{scene} mono8"), &est, &reference, &view);
        // OpenCV's single-channel name means mono8 too.
        assert_eq!(PixelFormat::from_ros_encoding("8UC1"), Some(PixelFormat::Mono8));
        let colour = ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap();
        assert_different(&format!("{scene} grey vs colour"), &est, &colour, &reference);
    }
}

#[test]
fn row_padding_with_junk_gives_the_same_depth() {
    let est = estimator();
    for scene in SCENES {
        let (rgb, w, h) = rgb(scene);
        let reference = ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap();
        let stride = w * 3 + 13;
        for seed in [0u8, 77] {
            let data = padded(&rgb, w, h, 3, stride, seed, false);
            assert_eq!(data.len(), stride * h);
            let view = ImageView::new(&data, w, h, stride, PixelFormat::Rgb8).unwrap();
            assert_eq!(view.stride(), stride);
            assert!(view.packed_pixels().is_none());
            assert_same(&format!("{scene} rgb8 stride {stride} (junk {seed})"), &est, &reference, &view);
        }
        // Padding on the other layouts too.
        let bgra = with_alpha(&swap_rb(&rgb), 3);
        let stride4 = w * 4 + 13;
        let data = padded(&bgra, w, h, 4, stride4, 5, false);
        let view = ImageView::new(&data, w, h, stride4, PixelFormat::Bgra8).unwrap();
        assert_same(&format!("{scene} bgra8 stride {stride4}"), &est, &reference, &view);
    }
}

#[test]
fn a_last_row_shorter_than_the_stride_is_accepted() {
    let est = estimator();
    for scene in SCENES {
        let (rgb, w, h) = rgb(scene);
        let reference = ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap();
        let stride = w * 3 + 13;
        let data = padded(&rgb, w, h, 3, stride, 9, true);
        assert_eq!(data.len(), stride * (h - 1) + w * 3);
        let view = ImageView::new(&data, w, h, stride, PixelFormat::Rgb8).unwrap();
        assert_same(&format!("{scene} short last row"), &est, &reference, &view);
        // One byte fewer and the last pixel is gone.
        let err = ImageView::new(&data[..data.len() - 1], w, h, stride, PixelFormat::Rgb8).unwrap_err().to_string();
        assert!(err.contains(&format!("needs {}", data.len())), "{err}");
    }
}

#[test]
fn a_mixed_batch_gives_each_frame_the_depth_of_its_rgb8_twin() {
    let mut est = estimator();
    // One forward pass over the batch (not the CPU's split into single frames).
    est.set_batch_split(false);
    let (a, aw, ah) = rgb("scene_640x480.png");
    let (b, bw, bh) = rgb("scene_224.png");
    let a_bgra = with_alpha(&swap_rb(&a), 2);
    let b_padded = padded(&b, bw, bh, 3, bw * 3 + 13, 4, true);
    let views = [
        ImageView::packed(&a_bgra, aw, ah, PixelFormat::Bgra8).unwrap(),
        ImageView::new(&b_padded, bw, bh, bw * 3 + 13, PixelFormat::Rgb8).unwrap(),
    ];
    let (maps, timings) = est.estimate_batch(&views, (320, 240)).unwrap();
    assert_eq!((maps.len(), timings.groups), (2, 1));
    let ra = est.estimate(&ImageView::packed(&a, aw, ah, PixelFormat::Rgb8).unwrap(), Some((320, 240))).unwrap().0;
    let rb = est.estimate(&ImageView::packed(&b, bw, bh, PixelFormat::Rgb8).unwrap(), Some((320, 240))).unwrap().0;
    assert!(rel_max_diff(&maps[0].data, &ra.data) <= 1e-5);
    assert!(rel_max_diff(&maps[1].data, &rb.data) <= 1e-5);
    assert!(rel_max_diff(&maps[0].data, &maps[1].data) > 1e-2, "two scenes gave the same depth");
}

/// On the CPU a batch runs as groups of frames side by side (one per core):
/// five frames of two scenes, each at its own output size, come back in
/// order, each with the depth it gets alone.
#[test]
fn a_batch_split_over_the_cores_keeps_order_and_depth() {
    let est = estimator();
    let (a, aw, ah) = rgb("scene_640x480.png");
    let (b, bw, bh) = rgb("scene_224.png");
    let va = ImageView::packed(&a, aw, ah, PixelFormat::Rgb8).unwrap();
    let vb = ImageView::packed(&b, bw, bh, PixelFormat::Rgb8).unwrap();
    let views = [va.clone(), vb.clone(), vb.clone(), va.clone(), vb.clone()];
    let sizes = [(64, 48), (32, 32), (40, 30), (80, 60), (16, 16)];
    let threads = candle_core::utils::get_num_threads();
    let groups = clip_depth_ros::device::cpu_split::plan(views.len(), threads);
    assert_eq!(groups.is_some(), threads >= 2, "split on a machine with several cores");
    let (maps, timings) = est.estimate_sized(&views, &sizes).unwrap();
    assert_eq!((maps.len(), timings.groups), (5, groups.map_or(1, |g| g.len())));
    for (i, ((view, &size), map)) in views.iter().zip(&sizes).zip(&maps).enumerate() {
        assert_eq!((map.width, map.height), size, "frame {i}");
        let alone = est.estimate(view, Some(size)).unwrap().0;
        assert!(rel_max_diff(&map.data, &alone.data) <= 1e-5, "frame {i}");
    }
}

// ---------------------------------------------------------------- ImageView checks

fn view_error(data: &[u8], w: usize, h: usize, stride: usize, format: PixelFormat) -> String {
    match ImageView::new(data, w, h, stride, format) {
        Ok(_) => panic!("{w}x{h} stride {stride} with {} bytes accepted", data.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn image_view_refuses_bad_buffers_with_the_reason() {
    let data = vec![0u8; 1000];
    for (w, h) in [(0, 10), (10, 0), (0, 0)] {
        let err = view_error(&data, w, h, 30, PixelFormat::Rgb8);
        assert!(err.contains("zero size"), "{err}");
        assert!(err.contains(&format!("{w}x{h}")), "{err}");
    }
    let err = view_error(&data, 10, 10, 29, PixelFormat::Rgb8);
    assert!(err.contains("stride 29"), "{err}");
    assert!(err.contains("width 10 * 3 bytes = 30"), "{err}");
    let err = view_error(&data, 10, 10, 39, PixelFormat::Rgba8);
    assert!(err.contains("stride 39") && err.contains("* 4 bytes = 40"), "{err}");
    let err = view_error(&data[..299], 10, 10, 30, PixelFormat::Rgb8);
    assert!(err.contains("299 bytes"), "{err}");
    assert!(err.contains("needs 300"), "{err}");
    let err = view_error(&data[..99], 10, 10, 10, PixelFormat::Mono8);
    assert!(err.contains("99 bytes") && err.contains("needs 100"), "{err}");
    // A stride so large the size overflows is an error, not a panic.
    let err = view_error(&data, 10, 10, usize::MAX / 2, PixelFormat::Rgb8);
    assert!(err.contains("overflow"), "{err}");

    // The boundaries themselves are fine.
    assert!(ImageView::new(&data[..300], 10, 10, 30, PixelFormat::Rgb8).is_ok());
    assert!(ImageView::new(&data[..30 * 9 + 30], 10, 10, 30, PixelFormat::Rgb8).is_ok());
    assert!(ImageView::new(&data[..100], 10, 10, 10, PixelFormat::Mono8).is_ok());
}

// ---------------------------------------------------------------- output sizes

#[test]
fn depth_comes_at_the_requested_output_size() {
    let est = estimator();
    let (min_d, max_d) = est.depth_range();
    let (rgb, w, h) = rgb("scene_640x480.png");
    let view = ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap();
    let full = est.estimate(&view, None).unwrap().0;
    assert_eq!((full.width, full.height), (640, 480));
    let half = est.estimate(&view, Some((320, 240))).unwrap().0;
    assert_eq!((half.width, half.height, half.data.len()), (320, 240, 320 * 240));
    // `estimate` is the model's own output clamped to [min_depth, max_depth]
    // (the CLI's convention), and this scene does reach past the range, so
    // the clamp is really exercised.
    let raw = est.estimate_sized_raw(&[view], &[(320, 240)]).unwrap().0.remove(0);
    assert!(raw.data.iter().any(|&d| d < min_d || d > max_d), "the raw depth never leaves the range");
    let clamped: Vec<f32> = raw.data.iter().map(|d| d.clamp(min_d, max_d)).collect();
    assert!(half.data == clamped, "estimate is not the clamped raw output");
    // Row-major (H, W): each half-size pixel is close to the mean of its
    // 2x2 block at full size (a transposed or scrambled map is not).
    let block_mean: Vec<f32> = (0..240)
        .flat_map(|y| (0..320).map(move |x| (y, x)))
        .map(|(y, x)| {
            let at = |yy: usize, xx: usize| full.data[yy * 640 + xx];
            (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4.0
        })
        .collect();
    let mean_abs = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    let close = mean_abs(&half.data, &block_mean);
    let mut flipped = half.data.clone();
    flipped.reverse();
    let far = mean_abs(&flipped, &block_mean);
    assert!(close * 10.0 < far, "320x240 is not the 640x480 depth at half size ({close} vs {far} for a flipped map)");

    for (ow, oh) in [(100, 37), (1, 1), (7, 640)] {
        let map = est.estimate(&view, Some((ow, oh))).unwrap().0;
        assert_eq!((map.width, map.height, map.data.len()), (ow, oh, ow * oh));
    }
    assert!(est.estimate(&view, Some((0, 240))).is_err());
    assert!(est.estimate(&view, Some((320, 0))).is_err());
}

#[test]
fn a_one_pixel_image_works() {
    let est = estimator();
    for (format, px) in [
        (PixelFormat::Rgb8, &[200u8, 30, 90][..]),
        (PixelFormat::Bgr8, &[90, 30, 200][..]),
        (PixelFormat::Rgba8, &[200, 30, 90, 7][..]),
        (PixelFormat::Mono8, &[128][..]),
    ] {
        let view = ImageView::packed(px, 1, 1, format).unwrap();
        let map = est.estimate(&view, None).unwrap().0;
        assert_eq!((map.width, map.height, map.data.len()), (1, 1, 1));
        assert!(map.data[0].is_finite(), "{format:?}: {}", map.data[0]);
        let map = est.estimate(&view, Some((64, 48))).unwrap().0;
        assert_eq!(map.data.len(), 64 * 48);
    }
    let rgb = ImageView::packed(&[200u8, 30, 90], 1, 1, PixelFormat::Rgb8).unwrap();
    let bgr = ImageView::packed(&[90u8, 30, 200], 1, 1, PixelFormat::Bgr8).unwrap();
    assert_eq!(depth(&est, &rgb), depth(&est, &bgr));
}
