//! `swm::media::nvjpeg` on the device: the committed JPEGs of `tests/data/media`, checked against the manifest
//! written by `tools/media/gen.py` (shapes, subsampling, and the mean RGB of Pillow's decode).
//!
//! Tolerance: JPEG decoders legitimately differ pixel by pixel (IDCT rounding, chroma upsampling: Pillow's
//! libjpeg-turbo interpolates chroma, nvJPEG replicates it by default), by a few levels near edges and by about
//! zero on average. The mean of each channel is compared to Pillow's within [`MEAN_TOLERANCE`] = 1.5 levels (of
//! 255): a conforming decoder lands well inside it (rounding biases are at most half a level; upsampling
//! differences only redistribute chroma near edges), while the mistakes that matter — swapped channels (the
//! images' R and B means differ by ~4.5 levels, G by ~12), a wrong YCbCr matrix or range (several levels), chroma
//! planes misplaced — land outside it. The 17x9 image has too few pixels for the average to cancel edge effects,
//! so it gets [`MEAN_TOLERANCE_TINY`] = 4 levels. Pixel-level checks come from images whose Pillow decodes are
//! identical: the progressive file and the baseline 4:2:0 file (same coefficients), and greyscale (R = G = B).

use std::path::PathBuf;

use candle_core::Tensor;
use serde_json::Value;
use swm::media::nvjpeg::{Backend, Decoder};
use swm::media::MediaError;

use super::gpu;

/// Tolerance of a channel mean against Pillow's, in levels of 255 (see the module docs).
const MEAN_TOLERANCE: f64 = 1.5;
/// The same for images of fewer than 1000 pixels.
const MEAN_TOLERANCE_TINY: f64 = 4.0;

fn media_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| panic!("set CARGO_MANIFEST_DIR to the repository root (the media files live there)"));
    PathBuf::from(root).join("tests/data/media")
}

/// The manifest's JPEG entries (`kind` `jpeg` or `jpeg-corrupt`), in file order.
fn jpeg_entries() -> Vec<Value> {
    let text = std::fs::read_to_string(media_dir().join("manifest.json")).expect("tests/data/media/manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest.json parses");
    let files = manifest["files"].as_array().expect("manifest.files").clone();
    let jpegs: Vec<Value> =
        files.into_iter().filter(|f| f["kind"].as_str().is_some_and(|k| k.starts_with("jpeg"))).collect();
    assert!(jpegs.len() >= 9, "expected the nine JPEG fixtures, found {}", jpegs.len());
    jpegs
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(media_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Per-channel mean of a U8 `(H, W, 3)` tensor, summed exactly on the host.
fn mean_rgb(t: &Tensor) -> [f64; 3] {
    let px = t.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let mut sum = [0u64; 3];
    for (i, v) in px.iter().enumerate() {
        sum[i % 3] += u64::from(*v);
    }
    let n = (px.len() / 3) as f64;
    sum.map(|s| s as f64 / n)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> u8 {
    let (a, b) = (a.flatten_all().unwrap().to_vec1::<u8>().unwrap(), b.flatten_all().unwrap().to_vec1::<u8>().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// Checks one `expect: ok` image decoded by `decoder` against its manifest entry; returns the mean differences.
fn check_ok(decoder: &mut Decoder, entry: &Value, rgb: &Tensor) -> [f64; 3] {
    let name = entry["name"].as_str().unwrap();
    let (w, h) = (entry["width"].as_u64().unwrap() as usize, entry["height"].as_u64().unwrap() as usize);
    assert_eq!(rgb.dims(), &[h, w, 3], "{name}: shape");
    assert_eq!(rgb.dtype(), candle_core::DType::U8, "{name}: dtype");
    assert!(rgb.device().same_device(decoder.device()), "{name}: device");
    let want: Vec<f64> = entry["decoded"]["mean_rgb"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let got = mean_rgb(rgb);
    let tol = if w * h < 1000 { MEAN_TOLERANCE_TINY } else { MEAN_TOLERANCE };
    let diff = [got[0] - want[0], got[1] - want[1], got[2] - want[2]];
    assert!(
        diff.iter().all(|d| d.abs() <= tol),
        "{name} ({} backend): mean RGB {got:.3?}, Pillow {want:.3?} (tolerance {tol})",
        decoder.backend()
    );
    if entry["subsampling"].as_str() == Some("4:0:0") {
        let px = rgb.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        assert!(px.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]), "{name}: greyscale must give R = G = B");
    }
    diff
}

/// Every `expect: ok` JPEG decodes to the manifest's shape and (within the tolerance) Pillow's mean RGB, with the
/// default and the hardware backend; `corrupt_*` files give typed errors and leave the decoder working (the next
/// good image decodes); the progressive file either decodes on the hardware backend or is refused as
/// `Unsupported` and then decodes with the default backend.
#[test]
#[ignore = "needs a CUDA device"]
fn nvjpeg_decodes_the_committed_jpegs_like_pillow() {
    let (_gpu, device) = gpu();
    let entries = jpeg_entries();
    let baseline = entries.iter().find(|e| e["name"] == "baseline_420_640x480.jpg").expect("baseline entry");
    let mut fallback = Decoder::new(&device, Backend::Default).unwrap();
    for backend in [Backend::Default, Backend::Hardware] {
        let mut decoder = Decoder::new(&device, backend).unwrap();
        println!("requested {backend}, obtained {}", decoder.backend());
        for entry in &entries {
            let name = entry["name"].as_str().unwrap();
            let bytes = read(name);
            match entry["expect"].as_str().unwrap() {
                "ok" => {
                    let info = decoder.image_info(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(
                        (info.width as u64, info.height as u64),
                        (entry["width"].as_u64().unwrap(), entry["height"].as_u64().unwrap()),
                        "{name}: image_info size"
                    );
                    assert_eq!(Some(info.subsampling.name()), entry["subsampling"].as_str(), "{name}: subsampling");
                    let want_components = if info.subsampling.name() == "4:0:0" { 1 } else { 3 };
                    assert_eq!(info.components, want_components, "{name}: components");
                    let (rgb, by) = match decoder.decode_rgb(&bytes) {
                        Ok(rgb) => (rgb, decoder.backend()),
                        Err(MediaError::Unsupported { backend: Backend::Hardware, reason })
                            if entry["progressive"] == true =>
                        {
                            println!("{name}: hardware backend refuses it ({reason}); default backend instead");
                            (fallback.decode_rgb(&bytes).unwrap(), fallback.backend())
                        }
                        Err(e) => panic!("{name} ({} backend): {e}", decoder.backend()),
                    };
                    let diff =
                        check_ok(if by == decoder.backend() { &mut decoder } else { &mut fallback }, entry, &rgb);
                    println!(
                        "{name:32} {by:>8}: mean RGB − Pillow = [{:+.3}, {:+.3}, {:+.3}]",
                        diff[0], diff[1], diff[2]
                    );
                }
                "error" => {
                    let err = match decoder.decode_rgb(&bytes) {
                        Ok(t) => panic!("{name}: decoded to {:?} instead of failing", t.dims()),
                        Err(e) => e,
                    };
                    println!("{name:32} {:>8}: {err}", decoder.backend());
                    assert!(err.is_bad_input(), "{name}: expected a bad-input error, got {err:?}");
                    if name.contains("png") {
                        assert!(matches!(err, MediaError::NotJpeg { .. }), "{name}: {err:?}");
                    }
                    // The decoder still works.
                    let rgb = decoder.decode_rgb(&read("baseline_420_640x480.jpg")).unwrap();
                    check_ok(&mut decoder, baseline, &rgb);
                }
                other => panic!("{name}: unknown expectation {other}"),
            }
        }
    }
}

/// Pixel-level agreement where the reference is exact: Pillow decodes the progressive and the baseline 4:2:0
/// file (the same coefficients) to identical pixels, and so must nvJPEG, up to a few levels of IDCT rounding; and the
/// hardware backend agrees with the default one (reported, and within a few levels).
#[test]
#[ignore = "needs a CUDA device"]
fn progressive_and_baseline_decode_to_the_same_pixels() {
    let (_gpu, device) = gpu();
    let mut default = Decoder::new(&device, Backend::Default).unwrap();
    let baseline = default.decode_rgb(&read("baseline_420_640x480.jpg")).unwrap();
    let progressive = default.decode_rgb(&read("progressive_420_640x480.jpg")).unwrap();
    let d = max_abs_diff(&baseline, &progressive);
    println!("default backend: baseline vs progressive max |diff| = {d}");
    // nvJPEG's progressive path (H200, CUDA 13.0) differs from its baseline path by up to 3 levels on this image
    // (measured 2026-12-03): a different IDCT/upsampling implementation, not a misread coefficient (which would be
    // tens of levels). Pillow's libjpeg gives 0.
    assert!(d <= 4, "baseline and progressive decodes differ by up to {d} levels");

    let mut hardware = Decoder::new(&device, Backend::Hardware).unwrap();
    for name in ["baseline_420_640x480.jpg", "baseline_444_640x480.jpg", "baseline_422_320x240.jpg"] {
        let a = default.decode_rgb(&read(name)).unwrap();
        let b = hardware.decode_rgb(&read(name)).unwrap();
        let d = max_abs_diff(&a, &b);
        println!("{name}: default vs {} backend max |diff| = {d}", hardware.backend());
        assert!(d <= 16, "{name}: backends differ by up to {d} levels");
    }
}

/// The input bytes are not needed once `decode_rgb` returns: overwriting them at once (before anything waits
/// for the GPU) leaves the decoded image unchanged. Also decodes many frames in a row without a host wait, and
/// the tensors stay distinct.
#[test]
#[ignore = "needs a CUDA device"]
fn decode_needs_the_input_only_during_the_call() {
    let (_gpu, device) = gpu();
    for backend in [Backend::Default, Backend::Hardware] {
        let mut decoder = Decoder::new(&device, backend).unwrap();
        let reference = decoder.decode_rgb(&read("baseline_444_640x480.jpg")).unwrap();
        let mut outputs = Vec::new();
        for i in 0..8 {
            let name = if i % 2 == 0 { "baseline_444_640x480.jpg" } else { "baseline_420_640x480.jpg" };
            let mut bytes = read(name);
            outputs.push((name, decoder.decode_rgb(&bytes).unwrap()));
            bytes.iter_mut().for_each(|b| *b = 0);
            drop(bytes);
        }
        let other = decoder.decode_rgb(&read("baseline_420_640x480.jpg")).unwrap();
        for (name, t) in &outputs {
            let want = if *name == "baseline_444_640x480.jpg" { &reference } else { &other };
            assert_eq!(max_abs_diff(t, want), 0, "{name} ({} backend): input reused after the call", decoder.backend());
        }
    }
}

/// The JPEG path the sessions use: nvJPEG's planar components finished by the fused kernel. On every committed
/// JPEG and both backends, the kernel's pixels (an identity resize with a normalisation that leaves 0..255 levels)
/// equal the host reference `swm::ops::jpeg_rgb` of libjpeg-turbo's upsampling and colour conversion on the same
/// planes exactly, and land within half a level of Pillow's mean (libjpeg-turbo: the only remaining difference is
/// the IDCT's rounding). Whether the result is bit-exact with Pillow's decode is printed.
#[test]
#[ignore = "needs a CUDA device"]
fn planar_decode_and_the_kernel_reproduce_libjpeg_turbo() {
    use swm::ops::{frame_to_model, jpeg_rgb, ImageNormalization, JpegSampling, PixelFormat, ResizeTable};
    let (_gpu, device) = gpu();
    let levels = ImageNormalization { mean: [0.0; 3], std: [1.0 / 255.0; 3] };
    let mut fallback = Decoder::new(&device, Backend::Default).unwrap();
    for backend in [Backend::Default, Backend::Hardware] {
        let mut decoder = Decoder::new(&device, backend).unwrap();
        for entry in jpeg_entries().iter().filter(|e| e["expect"] == "ok") {
            let name = entry["name"].as_str().unwrap();
            let bytes = read(name);
            let (planes, layout, by) = match decoder.decode_planar(&bytes) {
                Ok((p, l)) => (p, l, decoder.backend()),
                Err(MediaError::Unsupported { .. }) => {
                    let (p, l) = fallback.decode_planar(&bytes).unwrap();
                    (p, l, fallback.backend())
                }
                Err(e) => panic!("{name} ({backend}): {e}"),
            };
            let want_sampling = match entry["subsampling"].as_str().unwrap() {
                "4:0:0" => JpegSampling::Gray,
                "4:4:4" => JpegSampling::S444,
                "4:2:2" => JpegSampling::S422,
                "4:2:0" => JpegSampling::S420,
                other => panic!("{name}: no planar format expected for {other}"),
            };
            assert_eq!(layout.format, PixelFormat::Jpeg(want_sampling), "{name}");
            let (w, h) = (layout.width, layout.height);
            assert_eq!((w as u64, h as u64), (entry["width"].as_u64().unwrap(), entry["height"].as_u64().unwrap()));
            let host_planes = planes.to_vec1::<u8>().unwrap();
            let reference = jpeg_rgb(&host_planes, &layout).unwrap();
            let identity = ResizeTable::shorter_side(h, w, h.min(w), &device).unwrap();
            let out = frame_to_model(&planes, &layout, &identity, &levels).unwrap();
            let ours = out.squeeze(0).unwrap().permute((1, 2, 0)).unwrap().flatten_all().unwrap();
            let ours = ours.to_vec1::<f32>().unwrap();
            let off = ours.iter().zip(&reference).map(|(a, b)| (a - f32::from(*b)).abs()).fold(0.0f32, f32::max);
            assert!(off < 0.01, "{name} ({by}): kernel vs host libjpeg reference differ by {off} levels");
            let rgb = Tensor::from_vec(reference.clone(), (h, w, 3), &candle_core::Device::Cpu).unwrap();
            let got = mean_rgb(&rgb);
            let want: Vec<f64> =
                entry["decoded"]["mean_rgb"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let bit_exact = super::nvdec::sha256_hex(&reference) == entry["decoded"]["sha256"].as_str().unwrap();
            println!("{name} ({by}): mean {got:.3?}, Pillow {want:.3?}, bit-exact with Pillow: {bit_exact}");
            let tol = if w * h < 1000 { 1.0 } else { 0.5 };
            assert!((0..3).all(|c| (got[c] - want[c]).abs() <= tol), "{name} ({by}): mean {got:?} vs {want:?}");
        }
    }
}

/// End to end and bit for bit: the flat-block JPEGs of `tests/data/media/flat_blocks` (every IDCT exact, see
/// `tools/media/flat_blocks.py`) decode on both backends to exactly the drawn planes, and the kernel turns them
/// into exactly Pillow's pixels.
#[test]
#[ignore = "needs a CUDA device"]
fn flat_block_jpegs_decode_to_pillow_s_pixels_exactly() {
    use swm::ops::{frame_to_model, ImageNormalization, ResizeTable};
    let (_gpu, device) = gpu();
    let levels = ImageNormalization { mean: [0.0; 3], std: [1.0 / 255.0; 3] };
    let dir = media_dir().join("flat_blocks");
    for backend in [Backend::Default, Backend::Hardware] {
        let mut decoder = Decoder::new(&device, backend).unwrap();
        for name in ["444", "422", "420"] {
            let file = |ext: &str| std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
            let (planes, layout) = decoder.decode_planar(&file("jpg")).unwrap();
            assert_eq!(planes.to_vec1::<u8>().unwrap(), file("planes"), "{name} ({backend}): planes");
            let table = ResizeTable::shorter_side(32, 48, 32, &device).unwrap();
            let out = frame_to_model(&planes, &layout, &table, &levels).unwrap();
            let ours = out.squeeze(0).unwrap().permute((1, 2, 0)).unwrap().flatten_all().unwrap();
            let pillow = file("rgb");
            let off = ours
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .zip(&pillow)
                .map(|(a, b)| (a - f32::from(*b)).abs())
                .fold(0.0f32, f32::max);
            assert!(off < 0.01, "{name} ({backend}): {off} levels from Pillow's decode");
        }
    }
}

/// A history's JPEGs go to the hardware engines as one batch: every image of a mixed batch (sizes and samplings)
/// comes out exactly as when decoded alone, a batch with a greyscale file is decoded file by file, a batch size
/// change re-initialises the batch, and a progressive file in the batch is `Unsupported` (the session then
/// decodes file by file with the fallback) with the decoder still usable.
#[test]
#[ignore = "needs a CUDA device"]
fn planar_batches_decode_like_single_images() {
    let (_gpu, device) = gpu();
    let mut decoder = Decoder::new(&device, Backend::Hardware).unwrap();
    let names =
        ["baseline_420_640x480.jpg", "baseline_444_640x480.jpg", "odd_420_223x127.jpg", "baseline_422_320x240.jpg"];
    let files: Vec<Vec<u8>> = names.iter().map(|n| read(n)).collect();
    let singles: Vec<_> = files
        .iter()
        .map(|f| {
            let (t, l) = decoder.decode_planar(f).unwrap();
            (t.to_vec1::<u8>().unwrap(), l)
        })
        .collect();
    for batch in [&files[..], &files[..2], &files[1..]] {
        let refs: Vec<&[u8]> = batch.iter().map(|f| f.as_slice()).collect();
        let first = files.iter().position(|f| *f == batch[0]).unwrap();
        let decoded = decoder.decode_planar_batch(&refs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.len(), batch.len());
        for (i, (t, l)) in decoded.iter().enumerate() {
            let (want, want_layout) = &singles[first + i];
            assert_eq!(l, want_layout, "{}", names[first + i]);
            assert!(
                &t.to_vec1::<u8>().unwrap() == want,
                "{}: batch decode differs from the single decode",
                names[first + i]
            );
        }
    }
    let gray = read("gray_320x240.jpg");
    let mixed = decoder.decode_planar_batch(&[&files[0], &gray]).unwrap();
    assert_eq!(mixed[1].1.format, swm::ops::PixelFormat::Jpeg(swm::ops::JpegSampling::Gray));
    assert_eq!(mixed[0].0.to_vec1::<u8>().unwrap(), singles[0].0);
    if decoder.backend() == Backend::Hardware {
        let progressive = read("progressive_420_640x480.jpg");
        let err = decoder.decode_planar_batch(&[&files[0], &progressive]).unwrap_err();
        assert!(matches!(err, MediaError::Unsupported { .. }), "{err}");
    }
    let again = decoder.decode_planar_batch(&[&files[0], &files[2]]).unwrap();
    assert_eq!(again[1].0.to_vec1::<u8>().unwrap(), singles[2].0, "the decoder works after a refused batch");
}
