//! The training data pipeline against Pillow (tests/reference/
//! make_train_fixtures.py): rotation and nearest resizing pixel for pixel,
//! the crops, and a corrupt or missing file costing one sample.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use clip_depth_ros::data::{read_list, Augment, DataSpec};
use clip_depth_ros::image::pil_geometry::{resize_nearest, rotate_nearest, rotate_rgb_bicubic, Plane};
use clip_depth_ros::image::preprocess::Preprocessor;
use clip_depth_ros::rng::Rng;
use clip_depth_ros::weights::read_safetensors;

fn fixture() -> HashMap<String, Tensor> {
    read_safetensors(Path::new("tests/fixtures/train/pil_geometry.safetensors")).unwrap().0.into_iter().collect()
}

fn u8s(t: &Tensor) -> Vec<u8> {
    t.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

fn ints(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

#[test]
fn rotations_equal_pillows() {
    let f = fixture();
    let (h, w, _) = f["rgb"].dims3().unwrap();
    let rgb = u8s(&f["rgb"]);
    let dep16 = Plane::U16(ints(&f["dep16"]).iter().map(|&v| v as u16).collect());
    let dep8 = Plane::U8(ints(&f["dep8"]).iter().map(|&v| v as u8).collect());
    let angles = f["angles"].to_vec1::<f64>().unwrap();
    for (i, &a) in angles.iter().enumerate() {
        let ours = rotate_rgb_bicubic(&rgb, w, h, a);
        let want = u8s(&f[&format!("rot{i}.rgb")]);
        let differ = ours.iter().zip(&want).filter(|(p, q)| p != q).count();
        assert_eq!(differ, 0, "bicubic RGB rotation by {a}: {differ} values differ from Pillow");
        let Plane::U16(d) = rotate_nearest(&dep16, w, h, a) else { unreachable!() };
        let want: Vec<u16> = ints(&f[&format!("rot{i}.dep16")]).iter().map(|&v| v as u16).collect();
        assert_eq!(d, want, "16-bit nearest rotation by {a}");
        let Plane::U8(d) = rotate_nearest(&dep8, w, h, a) else { unreachable!() };
        let want: Vec<u8> = ints(&f[&format!("rot{i}.dep8")]).iter().map(|&v| v as u8).collect();
        assert_eq!(d, want, "8-bit nearest rotation by {a}");
    }
    let (s, _, _) = f["sq"].dims3().unwrap();
    assert_eq!(rotate_rgb_bicubic(&u8s(&f["sq"]), s, s, 90.0), u8s(&f["sq90"]), "quarter turn of a square image");
}

#[test]
fn nearest_resizes_equal_pillows() {
    let f = fixture();
    let (h, w) = f["depf"].dims2().unwrap();
    let depf = Plane::F32(f["depf"].flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let dep16 = Plane::U16(ints(&f["dep16"]).iter().map(|&v| v as u16).collect());
    for j in 0..4 {
        let size = f[&format!("resize{j}.size")].to_vec1::<i64>().unwrap();
        let (ow, oh) = (size[0] as usize, size[1] as usize);
        let Plane::F32(d) = resize_nearest(&depf, w, h, ow, oh) else { unreachable!() };
        assert_eq!(d, f[&format!("resize{j}.depf")].flatten_all().unwrap().to_vec1::<f32>().unwrap(), "float {ow}x{oh}");
        let Plane::U16(d) = resize_nearest(&dep16, w, h, ow, oh) else { unreachable!() };
        let want: Vec<u16> = ints(&f[&format!("resize{j}.dep16")]).iter().map(|&v| v as u16).collect();
        assert_eq!(d, want, "16-bit {ow}x{oh}");
    }
}

fn spec() -> DataSpec {
    DataSpec {
        dataset: "nyu".into(),
        data_root: "tests/fixtures/train_data".into(),
        gt_root: Some("tests/fixtures/train_data".into()),
        input_height: 48,
        input_width: 64,
        kb_crop: false,
        nyu_crop: false,
        rotate_degree: Some(2.5),
        depth_divisor: 1000.0,
        preprocessor: Preprocessor::new(224, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
    }
}

#[test]
fn training_samples_are_cropped_to_the_input_size_and_augmented_reproducibly() {
    let spec = spec();
    let list = read_list(Path::new("tests/fixtures/train_data/train.txt")).unwrap();
    let plain = spec.load_train(&list[0], 0, Augment::Off, &mut Rng::seed(1)).unwrap();
    assert_eq!((plain.width, plain.height), (64, 48));
    assert_eq!(plain.pixels.len(), 3 * 224 * 224);
    // Off: the origin crop of the 80x60 file, depth in metres.
    let (depth, w, _) = clip_depth_ros::data::sample::read_depth(Path::new("tests/fixtures/train_data/train/room_00_depth.png")).unwrap();
    let Plane::U16(raw) = depth else { panic!("16-bit depth expected") };
    let d = plain.depth.as_ref().unwrap();
    for y in 0..48 {
        for x in 0..64 {
            assert_eq!(d[y * 64 + x], raw[y * w + x] as f32 / 1000.0);
        }
    }
    // Random: the same stream gives the same sample; another stream another.
    let a = spec.load_train(&list[0], 0, Augment::Random, &mut Rng::derive(3, &[2, 0, 0])).unwrap();
    let b = spec.load_train(&list[0], 0, Augment::Random, &mut Rng::derive(3, &[2, 0, 0])).unwrap();
    assert_eq!(a.pixels, b.pixels);
    assert_eq!(a.depth, b.depth);
    let differ = (0..8u64).any(|k| {
        let c = spec.load_train(&list[0], 0, Augment::Random, &mut Rng::derive(3, &[2, 0, k + 1])).unwrap();
        c.pixels != a.pixels
    });
    assert!(differ, "augmentation never changed the sample");
}

#[test]
fn bad_lines_missing_and_corrupt_files_are_errors_naming_the_cause() {
    let spec = spec();
    let list = read_list(Path::new("tests/fixtures/train_data/bad.txt")).unwrap();
    let results: Vec<Result<_, String>> = list.iter().enumerate().map(|(i, e)| spec.load_train(e, i, Augment::Off, &mut Rng::seed(0))).collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("missing_rgb.png"), "{}", errors[0]);
    assert!(errors[1].contains("corrupt_depth.png"), "{}", errors[1]);
    assert!(errors[2].contains("no depth"), "{}", errors[2]);
    assert!(errors[3].contains("focal"), "{}", errors[3]);
}

#[test]
fn the_dataset_crops_cut_where_the_authors_cut() {
    // NYU: the (45, 41, 608, 472) box of a 640x480 frame; KITTI: 352 x 1216
    // at the bottom centre. Checked on synthetic frames whose pixels encode
    // their coordinates.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, w: u32, h: u32| {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x / 256) * 16 + y / 256) as u8]));
        img.save(dir.path().join(format!("{name}.png"))).unwrap();
        let depth = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(w, h, |x, y| image::Luma([(y * 2 + x % 2 + 1) as u16]));
        depth.save(dir.path().join(format!("{name}_d.png"))).unwrap();
    };
    write("nyu", 640, 480);
    write("kitti", 1242, 375);
    let entry = |name: &str| clip_depth_ros::data::ListEntry { line_no: 1, text: format!("{name}.png {name}_d.png 1") };
    let mut s = spec();
    s.data_root = dir.path().into();
    s.gt_root = Some(dir.path().into());
    s.rotate_degree = None;
    s.nyu_crop = true;
    s.input_width = 563;
    s.input_height = 431;
    let sample = s.load_eval(&entry("nyu"), 0).unwrap();
    assert_eq!((sample.width, sample.height), (563, 431));
    assert_eq!(&sample.rgb[..3], &[45, 41, 0], "NYU crop starts at x 45, y 41");
    let mut k = spec();
    k.dataset = "kitti".into();
    k.data_root = dir.path().into();
    k.gt_root = Some(dir.path().into());
    k.kb_crop = true;
    k.input_width = 1216;
    k.input_height = 352;
    let sample = k.load_eval(&entry("kitti"), 0).unwrap();
    // left = round((1242 - 1216) / 2) = 13, top = 375 - 352 = 23.
    assert_eq!(&sample.rgb[..3], &[13, 23, 0]);
    assert_eq!(sample.depth.as_ref().unwrap()[0], (23 * 2 + 1 + 1) as f32 / 1000.0);
}
