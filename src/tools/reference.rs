//! Host reference of upstream's image preprocessing (docs/spec/lewm.md §8), to check the fused CUDA kernels of the
//! media path against. Plain Rust on the CPU, written for clarity rather than speed; the runtime never calls it.
//!
//! Upstream (the official package, through `torchvision.transforms.v2`) turns an RGB `u8` frame into the model's
//! input in this order:
//!
//! 1. HWC `u8` to CHW `f32`, scaled to [0, 1] (`to_dtype(float32, scale=True)`);
//! 2. per-channel ImageNet normalisation `(x − mean) / std`;
//! 3. `Resize(size)`: the shorter side becomes `size` (the longer one `⌊size·long/short⌋`), interpolated by
//!    `F.interpolate(mode="bilinear", antialias=True, align_corners=False)`.
//!
//! [`normalize_hwc_u8`] is step 1 + 2, [`resize_shorter_side`] step 3 and [`preprocess_lewm`] all three.
//!
//! # How faithful
//!
//! The arithmetic follows PyTorch's CPU kernels for `float32` tensors operation by operation, in `f32` where they
//! use `float` and in `f64` where C++'s promotion rules make them use `double`, so that the index ranges of the
//! filters (which depend on truncations) are the same, and the values agree to a few ulps (PyTorch's build may
//! contract a multiply-add into an FMA, which Rust does not do).
//!
//! * Scaling: torchvision multiplies by the `f32` of `1/255` (`image.to(float32).mul_(1.0 / 255)`), then
//!   subtracts the `f32` mean and divides by the `f32` std (`image.sub_(mean).div_(std)`).
//! * Output size (torchvision's `_compute_resized_output_size`): `new_long = int(size * long / short)`, a float
//!   division truncated toward zero; a square image keeps both sides at `size`. When the size does not change, the
//!   image is returned as it is (no interpolation at all).
//! * Interpolation (ATen `cpu/UpSampleKernel.cpp`, `separable_upsample_generic_Nd_kernel_impl` with
//!   `HelperInterpLinear`): separable, the width (last, contiguous dimension) first and then the height, each pass
//!   skipped when that side does not change. Per output index `i` of a side going from `in_size` to `out_size`:
//!   `scale = in_size / out_size` (`f32`); `support = scale` when `scale ≥ 1` (downsampling: the triangle is
//!   stretched by the factor) and `1` otherwise; `centre = scale · (i + ½)`; the taps run from
//!   `xmin = max(trunc(centre − support + ½), 0)` to `min(trunc(centre + support + ½), in_size)` (exclusive);
//!   tap `x` gets weight `max(0, 1 − |(x − centre + ½) / max(scale, 1)|)`, and the weights are divided by their sum.
//!   This is Pillow's bilinear resampling filter. When upsampling it reduces to plain bilinear interpolation with
//!   half-pixel centres, clamped at the borders (antialias changes nothing there).
//! * The sums run tap by tap in `f32`, starting from the first tap, as PyTorch's `interpolate_aa_single_dim`.

/// ImageNet per-channel mean (RGB), as upstream normalises with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation (RGB), as upstream normalises with.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// HWC `u8` RGB pixels to CHW `f32`, each value `(x/255 − mean_c)/std_c` (steps 1 and 2 of LeWM's preprocessing).
///
/// As torchvision computes it in `float32`: `x · f32(1/255)`, then `− mean_c`, then `/ std_c`, each rounded to
/// `f32` (the product may differ by one ulp from a true division by 255).
///
/// # Panics
/// When `rgb.len() != height * width * 3`.
pub fn normalize_hwc_u8(rgb: &[u8], height: usize, width: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = height.checked_mul(width).expect("height * width overflows");
    assert_eq!(
        rgb.len(),
        plane.checked_mul(3).expect("image size overflows"),
        "rgb must hold height * width * 3 bytes"
    );
    let inv255 = (1.0f64 / 255.0) as f32;
    let mut out = vec![0f32; 3 * plane];
    for (p, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + p] = (f32::from(px[c]) * inv255 - mean[c]) / std[c];
        }
    }
    out
}

pub use crate::ops::resize::{antialias_taps, resized_output_size, Taps};

/// PyTorch's plain (not antialiased) bilinear taps, `align_corners=False`, for a side going from `in_size` to
/// `out_size` (`compute_source_index_and_lambda`): source `max(scale · (i + ½) − ½, 0)`, its floor and the next index
/// (clamped to the last), weights `1 − λ` and `λ`. Two taps whatever the factor, so downsampling aliases. For
/// upsampling these are the same weights as [`antialias_taps`]. Used as a control: the wrong kernel must be caught.
///
/// # Panics
/// When either size is 0.
pub fn bilinear_taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    assert!(in_size > 0 && out_size > 0, "sizes must be positive");
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            if in_size == out_size {
                return Taps { start: i, weights: vec![1.0] };
            }
            let real = ((f64::from(scale) * (i as f64 + 0.5) - 0.5) as f32).max(0.0);
            let i0 = real as usize;
            let lambda1 = (real - i0 as f32).clamp(0.0, 1.0);
            if i0 + 1 < in_size {
                Taps { start: i0, weights: vec![1.0 - lambda1, lambda1] }
            } else {
                Taps { start: i0.min(in_size - 1), weights: vec![1.0] }
            }
        })
        .collect()
}

/// Which kernel [`resize_bilinear`] interpolates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `antialias=True`: [`antialias_taps`], what upstream uses.
    Antialias,
    /// `antialias=False`: [`bilinear_taps`], two taps per output (a control; aliases when downsampling).
    Bilinear,
}

fn taps(kernel: Kernel, in_size: usize, out_size: usize) -> Vec<Taps> {
    match kernel {
        Kernel::Antialias => antialias_taps(in_size, out_size),
        Kernel::Bilinear => bilinear_taps(in_size, out_size),
    }
}

/// `sum_j src[(start + j) * stride] * w_j`, accumulated in `f32` from the first tap on.
fn apply(src: &[f32], stride: usize, t: &Taps) -> f32 {
    let mut acc = 0.0f32;
    for (j, &w) in t.weights.iter().enumerate() {
        let v = src[(t.start + j) * stride] * w;
        acc = if j == 0 { v } else { acc + v };
    }
    acc
}

/// Resizes a CHW `f32` image (`channels` planes of `height × width`) to `out_height × out_width`, as
/// `F.interpolate(mode="bilinear", align_corners=False, antialias=…)` does on a CPU `float32` tensor: the width
/// pass first, then the height pass, each skipped when that side is unchanged (so same-size input comes back as a
/// copy).
///
/// # Panics
/// When a size is 0 or `chw.len() != channels * height * width`.
pub fn resize_bilinear(
    chw: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    kernel: Kernel,
) -> Vec<f32> {
    assert!(height > 0 && width > 0 && out_height > 0 && out_width > 0, "sizes must be positive");
    assert_eq!(chw.len(), channels * height * width, "chw must hold channels * height * width values");
    let mut cur = chw.to_vec();
    let mut cur_w = width;
    if out_width != width {
        let tx = taps(kernel, width, out_width);
        let mut next = vec![0f32; channels * height * out_width];
        for (src_row, dst_row) in cur.chunks_exact(width).zip(next.chunks_exact_mut(out_width)) {
            for (d, t) in dst_row.iter_mut().zip(&tx) {
                *d = apply(src_row, 1, t);
            }
        }
        cur = next;
        cur_w = out_width;
    }
    if out_height != height {
        let ty = taps(kernel, height, out_height);
        let mut next = vec![0f32; channels * out_height * cur_w];
        for (src_plane, dst_plane) in cur.chunks_exact(height * cur_w).zip(next.chunks_exact_mut(out_height * cur_w)) {
            for (oy, t) in ty.iter().enumerate() {
                for x in 0..cur_w {
                    dst_plane[oy * cur_w + x] = apply(&src_plane[x..], cur_w, t);
                }
            }
        }
        cur = next;
    }
    cur
}

/// torchvision v2 `Resize(size, interpolation=BILINEAR, antialias=True)` of a CHW `f32` image: the shorter side
/// becomes `size` ([`resized_output_size`]), antialiased bilinear ([`resize_bilinear`] with
/// [`Kernel::Antialias`]). Returns the image and its new `(height, width)`; an image whose size does not change is
/// returned unchanged.
///
/// # Panics
/// When a side or `size` is 0, or `chw.len() != channels * height * width`.
pub fn resize_shorter_side(
    chw: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    size: usize,
) -> (Vec<f32>, usize, usize) {
    resize_shorter_side_with(chw, channels, height, width, size, Kernel::Antialias)
}

/// [`resize_shorter_side`] with a chosen [`Kernel`] (the non-antialiased one is a control for tests).
///
/// # Panics
/// As [`resize_shorter_side`].
pub fn resize_shorter_side_with(
    chw: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    size: usize,
    kernel: Kernel,
) -> (Vec<f32>, usize, usize) {
    let (out_h, out_w) = resized_output_size(height, width, size);
    assert_eq!(chw.len(), channels * height * width, "chw must hold channels * height * width values");
    if (out_h, out_w) == (height, width) {
        return (chw.to_vec(), height, width);
    }
    (resize_bilinear(chw, channels, height, width, out_h, out_w, kernel), out_h, out_w)
}

/// LeWM's preprocessing of one HWC `u8` RGB frame (docs/spec/lewm.md §8): scale to [0, 1], ImageNet
/// normalisation, then the shorter side resized to `size` (antialiased bilinear). Returns CHW `f32` (RGB) and the
/// new `(height, width)`.
///
/// # Panics
/// When `rgb.len() != h * w * 3` or a side or `size` is 0.
pub fn preprocess_lewm(rgb: &[u8], h: usize, w: usize, size: usize) -> (Vec<f32>, usize, usize) {
    let x = normalize_hwc_u8(rgb, h, w, IMAGENET_MEAN, IMAGENET_STD);
    resize_shorter_side(&x, 3, h, w, size)
}
