//! The host reference of upstream's image preprocessing (`swm::tools::reference`, issue 12): exact values of the
//! resize on tiny inputs derived by hand, and the whole of LeWM's preprocessing of a committed JPEG against
//! torchvision's own output (`tests/data/media/baseline_420_640x480.ref112.f32`, made by `tools/media/gen.py`).

use swm::tools::reference::{
    antialias_taps, bilinear_taps, normalize_hwc_u8, preprocess_lewm, resize_bilinear, resize_shorter_side,
    resize_shorter_side_with, resized_output_size, Kernel, IMAGENET_MEAN, IMAGENET_STD,
};

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

/// torchvision's `_compute_resized_output_size`: shorter side = size, longer = int(size * long / short).
#[test]
fn output_size_follows_torchvision() {
    // 112 * 640 / 480 = 149.33 -> 149 (truncated, not rounded).
    assert_eq!(resized_output_size(480, 640, 112), (112, 149));
    assert_eq!(resized_output_size(640, 480, 112), (149, 112));
    // 224 * 640 / 480 = 298.67 -> 298: truncation, where rounding would give 299.
    assert_eq!(resized_output_size(480, 640, 224), (224, 298));
    assert_eq!(resized_output_size(224, 224, 224), (224, 224));
    assert_eq!(resized_output_size(100, 100, 37), (37, 37));
    // Upsampling follows the same rule: 3 * 5 / 2 = 7.5 -> 7.
    assert_eq!(resized_output_size(2, 5, 3), (3, 7));
}

/// Same size: torchvision returns the image itself, no interpolation.
#[test]
fn unchanged_size_is_the_identity() {
    // A 3x4 image of distinct values; its shorter side is already 3.
    let x: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32 * 0.37 - 1.0).collect();
    let (y, h, w) = resize_shorter_side(&x, 2, 3, 4, 3);
    assert_eq!((h, w), (3, 4));
    assert_eq!(y, x);
    // A side that keeps its length gets weight 1 on itself (the pass is skipped).
    let (y, h, w) = resize_shorter_side_with(&x, 2, 3, 4, 3, Kernel::Bilinear);
    assert_eq!(((h, w), y), ((3, 4), x));
}

/// 2x downsampling, 4 -> 2: scale 2, support 2 (the triangle is stretched to half-width 2 input pixels).
///   out 0: centre 2·0.5 = 1; taps trunc(1−2+0.5) = trunc(−0.5) = 0 .. trunc(1+2+0.5) = 3, i.e. inputs 0,1,2;
///          distances (x + 0.5 − 1)/2 = −0.25, 0.25, 0.75 -> weights 0.75, 0.75, 0.25 (sum 1.75) -> 3/7, 3/7, 1/7.
///   out 1: centre 3; taps trunc(1.5) = 1 .. min(trunc(5.5), 4) = 4, i.e. inputs 1,2,3;
///          distances −0.75, −0.25, 0.25 -> 0.25, 0.75, 0.75 -> 1/7, 3/7, 3/7.
/// The border truncates the filter (Pillow's behaviour), so a ramp 0,1,2,3 gives 5/7 and 16/7, not 0.5 and 2.5.
#[test]
fn downsample_by_two_matches_hand_weights() {
    let t = antialias_taps(4, 2);
    assert_eq!((t[0].start, t[1].start), (0, 1));
    assert_close(&t[0].weights, &[3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0], 1e-7, "taps 0");
    assert_close(&t[1].weights, &[1.0 / 7.0, 3.0 / 7.0, 3.0 / 7.0], 1e-7, "taps 1");

    // A constant stays constant (weights are normalised).
    let c = vec![0.7f32; 4 * 4];
    let (y, h, w) = resize_shorter_side(&c, 1, 4, 4, 2);
    assert_eq!((h, w), (2, 2));
    assert_close(&y, &[0.7; 4], 1e-6, "constant");

    // value = 10·row + col: separable and linear, so out[r][c] = 10·f[r] + f[c] with f = (5/7, 16/7).
    let ramp: Vec<f32> = (0..4).flat_map(|r| (0..4).map(move |c| (10 * r + c) as f32)).collect();
    let (y, _, _) = resize_shorter_side(&ramp, 1, 4, 4, 2);
    let f = [5.0f32 / 7.0, 16.0 / 7.0];
    let want: Vec<f32> = (0..2).flat_map(|r| (0..2).map(move |c| 10.0 * f[r] + f[c])).collect();
    assert_close(&y, &want, 2e-6, "ramp");

    // Without antialias the 2 taps sit at source (i + 0.5)·2 − 0.5 = 0.5 and 2.5: the plain means 0.5 and 2.5.
    let t = bilinear_taps(4, 2);
    assert_eq!((t[0].start, t[1].start), (0, 2));
    assert_close(&t[0].weights, &[0.5, 0.5], 0.0, "bilinear taps 0");
    let (y, _, _) = resize_shorter_side_with(&ramp, 1, 4, 4, 2, Kernel::Bilinear);
    assert_close(&y, &[5.5, 7.5, 25.5, 27.5], 1e-6, "bilinear ramp");
}

/// A non-integer factor, 3 -> 2: scale 1.5, support 1.5, 1/scale = 2/3.
///   out 0: centre 0.75; taps trunc(−0.25) = 0 .. trunc(2.75) = 2, inputs 0,1; distances (x + 0.5 − 0.75)·2/3 =
///          −1/6, 1/2 -> 5/6, 1/2 -> 5/8, 3/8.
///   out 1: centre 2.25; taps trunc(1.25) = 1 .. min(trunc(4.25), 3) = 3, inputs 1,2; distances −1/2, 1/6 -> 3/8, 5/8.
/// For the row 0,1,2: 3/8 and 3/8 + 2·5/8 = 13/8.
#[test]
fn downsample_three_to_two_matches_hand_weights() {
    let t = antialias_taps(3, 2);
    assert_eq!((t[0].start, t[1].start), (0, 1));
    assert_close(&t[0].weights, &[5.0 / 8.0, 3.0 / 8.0], 1e-7, "taps 0");
    assert_close(&t[1].weights, &[3.0 / 8.0, 5.0 / 8.0], 1e-7, "taps 1");
    let y = resize_bilinear(&[0.0, 1.0, 2.0], 1, 1, 3, 1, 2, Kernel::Antialias);
    assert_close(&y, &[3.0 / 8.0, 13.0 / 8.0], 1e-6, "row");
}

/// Upsampling 2 -> 4 (scale 0.5): support stays 1, so antialias is plain bilinear with half-pixel centres.
///   out i samples source (i + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25, clamped to [0, 1]: for inputs (0, 1) the
///   values are 0, 0.25, 0.75, 1. Through the AA formula: out 1 has centre 0.75, taps 0..trunc(2.25)=2, distances
///   −0.25, 0.75 -> weights 0.75, 0.25 -> 0.25; out 0 has centre 0.25 and the single tap 0 (trunc(1.75) = 1).
#[test]
fn upsample_is_plain_bilinear() {
    let u = [0.0f32, 0.25, 0.75, 1.0];
    let y = resize_bilinear(&[0.0, 1.0], 1, 1, 2, 1, 4, Kernel::Antialias);
    assert_close(&y, &u, 0.0, "row");
    // value = 2·row + col on a 2x2 image, shorter side 2 -> 4: out[r][c] = 2·u[r] + u[c].
    let x = [0.0f32, 1.0, 2.0, 3.0];
    let (y, h, w) = resize_shorter_side(&x, 1, 2, 2, 4);
    assert_eq!((h, w), (4, 4));
    let want: Vec<f32> = (0..4).flat_map(|r| (0..4).map(move |c| 2.0 * u[r] + u[c])).collect();
    assert_close(&y, &want, 1e-6, "2x2 -> 4x4");
    // Both kernels agree when upsampling, also at a non-integer factor (3 -> 7).
    let row: Vec<f32> = [0.3f32, -1.2, 2.5].repeat(2);
    let a = resize_bilinear(&row, 2, 1, 3, 1, 7, Kernel::Antialias);
    let b = resize_bilinear(&row, 2, 1, 3, 1, 7, Kernel::Bilinear);
    assert_close(&a, &b, 1e-6, "aa vs bilinear, upsampling");
}

/// Normalisation: (x/255 − mean)/std per channel, HWC in, CHW out.
#[test]
fn normalize_is_chw_imagenet() {
    // 1x2 pixels: (0, 128, 255) and (255, 0, 51).
    let y = normalize_hwc_u8(&[0, 128, 255, 255, 0, 51], 1, 2, IMAGENET_MEAN, IMAGENET_STD);
    let n = |v: f32, c: usize| (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    let want = [n(0.0, 0), n(255.0, 0), n(128.0, 1), n(0.0, 1), n(255.0, 2), n(51.0, 2)];
    assert_close(&y, &want, 1e-6, "normalize");
    assert!((y[0] + 0.485 / 0.229).abs() < 1e-6 && (y[1] - 0.515 / 0.229).abs() < 1e-6);
}

/// A file of `tests/data/media`, found at run time through `CARGO_MANIFEST_DIR`.
fn media(name: &str) -> std::path::PathBuf {
    super::repo_root().join("tests/data/media").join(name)
}

/// RGB HWC `u8` of a committed JPEG (zune-jpeg), with its height and width.
fn decode_rgb(name: &str) -> (Vec<u8>, usize, usize) {
    let bytes = std::fs::read(media(name)).expect("committed JPEG");
    let mut dec = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(bytes));
    let rgb = dec.decode().expect("decodes");
    let info = dec.info().expect("headers read");
    let (h, w) = (usize::from(info.height), usize::from(info.width));
    assert_eq!(rgb.len(), h * w * 3, "RGB output");
    (rgb, h, w)
}

/// Little-endian f32 of a committed reference.
fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(media(name)).expect("committed reference");
    assert_eq!(bytes.len() % 4, 0);
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// (max |a − b|, mean |a − b|).
fn diff(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut max, mut sum) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = f64::from((x - y).abs());
        max = max.max(d);
        sum += d;
    }
    (max, sum / a.len() as f64)
}

/// One level of an 8-bit channel in normalised units, for the channel with the smallest std (the largest step).
const LEVEL: f64 = 1.0 / (255.0 * 0.224);

/// LeWM's preprocessing of `baseline_420_640x480.jpg` against torchvision's output on Pillow's decode.
///
/// The reference itself is exact: fed Pillow's own decode (whose sha256 the manifest records), `preprocess_lewm`
/// matches the committed file to 4.8e-7 (2 ulps at the largest values). What remains here is the decoders': zune-jpeg
/// and libjpeg-turbo differ on 9 % of the values, by 1-2 levels (a few by 3-5: IDCT rounding and the chroma
/// upsampling of this 4:2:0 file), 0.14 level on average. The antialiased 640x480 -> 149x112 resize averages each
/// output over about 4.3 x 4.3 input pixels (~30 taps), so per output value, measured: max |Δ| 1.28 levels, mean
/// |Δ| 0.11 level, where 1 level = 1/(255·0.224) = 0.0175 (the widest step of the three channels). Tolerances:
/// * max |Δ| ≤ 2 levels (0.035): a bigger error would need most of an output's taps off by several levels in the
///   same direction, i.e. a decoder or kernel fault rather than rounding;
/// * mean |Δ| ≤ 0.25 level (0.0044): the decoders' per-value mean (0.14 level) hardly grows through a filter of
///   normalised non-negative weights; 0.25 leaves room for another zune-jpeg release's IDCT.
///
/// The control, the same pipeline without antialias (2-tap bilinear, which aliases the checkerboard, noise and
/// 1-pixel lines of the picture), must fail both by a wide margin, so the test does tell the kernels apart.
/// (Resizing before normalising is no control: the filter is linear with weights summing to 1 and the
/// normalisation is affine per channel, so both orders agree to ~1e-6.)
#[test]
fn lewm_preprocessing_matches_torchvision() {
    let (rgb, h, w) = decode_rgb("baseline_420_640x480.jpg");
    assert_eq!((h, w), (480, 640));
    // Pillow's decode has this mean per channel (tests/data/media/manifest.json, "decoded"); ours must be close.
    let want_mean = [117.2663, 105.6156, 121.7987];
    for (c, want) in want_mean.iter().enumerate() {
        let mean = rgb.iter().skip(c).step_by(3).map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64;
        assert!((mean - want).abs() < 0.5, "channel {c} mean {mean} vs Pillow's {want}");
    }

    let reference = read_f32("baseline_420_640x480.ref112.f32");
    let (got, oh, ow) = preprocess_lewm(&rgb, h, w, 112);
    assert_eq!((3, oh, ow), (3, 112, 149), "shape");
    assert_eq!(got.len(), reference.len(), "the reference is (3, 112, 149)");
    let (max, mean) = diff(&got, &reference);
    eprintln!(
        "preprocess_lewm vs torchvision: max |Δ| {max:.6} ({:.2} levels), mean |Δ| {mean:.6} ({:.3} levels)",
        max / LEVEL,
        mean / LEVEL
    );
    let (max_tol, mean_tol) = (2.0 * LEVEL, 0.25 * LEVEL);
    assert!(max <= max_tol, "max |Δ| {max} > {max_tol}");
    assert!(mean <= mean_tol, "mean |Δ| {mean} > {mean_tol}");

    // Control: no antialias.
    let x = normalize_hwc_u8(&rgb, h, w, IMAGENET_MEAN, IMAGENET_STD);
    let (plain, ph, pw) = resize_shorter_side_with(&x, 3, h, w, 112, Kernel::Bilinear);
    assert_eq!((ph, pw), (112, 149));
    let (pmax, pmean) = diff(&plain, &reference);
    eprintln!(
        "control, no antialias: max |Δ| {pmax:.6} ({:.2} levels), mean |Δ| {pmean:.6} ({:.3} levels)",
        pmax / LEVEL,
        pmean / LEVEL
    );
    assert!(pmax > 5.0 * max_tol && pmean > 5.0 * mean_tol, "the control must fail clearly");
}

/// libjpeg-turbo's chroma upsampling and colour conversion, bit for bit: JPEGs whose components are flat over
/// every 8x8 block (so every IDCT gives back the drawn planes exactly; `tools/media/flat_blocks.py`) decode in
/// Pillow to exactly what `swm::ops::jpeg_rgb` — the host twin of the fused kernel's JPEG formats — makes of
/// those planes, for 4:4:4, 4:2:2 and 4:2:0 (a replicating upsampler is off by tens of levels at block edges).
#[test]
fn jpeg_planes_become_pillow_s_pixels_exactly() {
    use swm::ops::{jpeg_rgb, FrameLayout, JpegSampling, PixelFormat};
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("tests/data/media/flat_blocks");
    for (name, sampling) in [("444", JpegSampling::S444), ("422", JpegSampling::S422), ("420", JpegSampling::S420)] {
        let planes = std::fs::read(dir.join(format!("{name}.planes"))).unwrap();
        let pillow = std::fs::read(dir.join(format!("{name}.rgb"))).unwrap();
        let layout = FrameLayout::packed(PixelFormat::Jpeg(sampling), 48, 32);
        assert_eq!(planes.len(), layout.required_bytes(), "{name}");
        let ours = jpeg_rgb(&planes, &layout).unwrap();
        let differing = ours.iter().zip(&pillow).filter(|(a, b)| a != b).count();
        let max = ours.iter().zip(&pillow).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert_eq!(differing, 0, "{name}: {differing} values differ from Pillow's, by up to {max} levels");
    }
}
