//! torchvision's `Resize` geometry and PyTorch's antialiased bilinear filter taps, as the fused preprocessing
//! kernel applies them ([`super::preprocess`]): output size of `Resize(size)` (shorter side to `size`) and, per
//! output index of a side, the first input index and the normalised weights (`F.interpolate(mode="bilinear",
//! antialias=True, align_corners=False)`, ATen's `_compute_indices_min_size_weights_aa`). Host code, run once per
//! frame geometry; checked against torchvision's output in `tests/host/preprocess_reference.rs`.

/// The `(height, width)` that torchvision v2 `Resize(size)` (an int, or a one-element list, without `max_size`)
/// gives an image of `height × width`: the shorter side becomes `size`, the longer one `⌊size · long / short⌋`
/// (Python's `int(size * long / short)`: a float64 division, truncated); when both sides are equal both become
/// `size`.
///
/// # Panics
/// When a side or `size` is 0.
pub fn resized_output_size(height: usize, width: usize, size: usize) -> (usize, usize) {
    assert!(height > 0 && width > 0 && size > 0, "sides and size must be positive");
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // size * long fits an f64 exactly for any real image (< 2^53), as Python's int product does.
    let new_long = ((size as f64 * long as f64) / short as f64) as usize;
    if width <= height {
        (new_long, size)
    } else {
        (size, new_long)
    }
}

/// The taps of one output index along one side: the first input index and one weight per input index from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    /// First input index read.
    pub start: usize,
    /// Weights of inputs `start, start + 1, …` (they sum to 1 up to rounding).
    pub weights: Vec<f32>,
}

/// PyTorch's antialiased bilinear taps (`_compute_indices_min_size_weights_aa` with the triangle filter) for a
/// side going from `in_size` to `out_size`, one [`Taps`] per output index. Mixed `f32`/`f64` as in ATen, where
/// `scalar_t` is `float` and literals such as `0.5` are `double`.
///
/// # Panics
/// When either size is 0.
pub fn antialias_taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    assert!(in_size > 0 && out_size > 0, "sizes must be positive");
    // area_pixel_compute_scale<float>: static_cast<float>(input_size) / output_size, a float division.
    let scale = in_size as f32 / out_size as f32;
    // support = interp_size(2) * 0.5 * scale when downsampling, else 1; stored as float.
    let support: f32 = if scale >= 1.0 { scale } else { 1.0 };
    let max_taps = (support.ceil() as i64) * 2 + 1;
    let invscale: f32 = if scale >= 1.0 { (1.0 / f64::from(scale)) as f32 } else { 1.0 };
    let in_size_i = in_size as i64;
    (0..out_size)
        .map(|i| {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            // (int64_t)(float - float + 0.5): the + 0.5 is done in double, the cast truncates toward zero.
            let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
            let xmax = ((f64::from(center + support) + 0.5) as i64).min(in_size_i);
            let xsize = (xmax - xmin).clamp(0, max_taps);
            let mut weights: Vec<f32> = (0..xsize)
                .map(|j| {
                    // (j + xmin - center + 0.5) * invscale: int64 - float is float, then double, then float.
                    let d = (j + xmin) as f32 - center;
                    let x = ((f64::from(d) + 0.5) * f64::from(invscale)) as f32;
                    triangle(x)
                })
                .collect();
            let total: f32 = weights.iter().fold(0.0f32, |acc, &w| acc + w);
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            Taps { start: xmin as usize, weights }
        })
        .collect()
}

/// The bilinear ("triangle") filter of Pillow and PyTorch: `1 − |x|` on (−1, 1), else 0.
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// The taps of a whole frame geometry on the device, in the layout the fused preprocessing kernel reads: built
/// once per (source size, model size) and reused for every frame of that size.
#[derive(Debug, Clone)]
pub struct ResizeTable {
    source: (usize, usize),
    output: (usize, usize),
    kx: usize,
    ky: usize,
    /// `[x_start (out_w) | x_weight (out_w·kx) | y_start (out_h) | y_weight (out_h·ky)]`, f32 on the device.
    table: candle_core::Tensor,
}

/// Largest frame side accepted (16K video).
pub const MAX_SIDE: usize = 16_384;

impl ResizeTable {
    /// The table for frames of `height × width` resized as `Resize(size)` does (shorter side to `size`).
    pub fn shorter_side(height: usize, width: usize, size: usize, device: &candle_core::Device) -> super::Result<Self> {
        check_side("frame height", height)?;
        check_side("frame width", width)?;
        check_side("model image size", size)?;
        let (out_h, out_w) = resized_output_size(height, width, size);
        Self::exact(height, width, out_h, out_w, device)
    }

    /// The table for frames of `height × width` resized to exactly `out_height × out_width`.
    pub fn exact(
        height: usize,
        width: usize,
        out_height: usize,
        out_width: usize,
        device: &candle_core::Device,
    ) -> super::Result<Self> {
        for (what, v) in [
            ("frame height", height),
            ("frame width", width),
            ("output height", out_height),
            ("output width", out_width),
        ] {
            check_side(what, v)?;
        }
        let tx = antialias_taps(width, out_width);
        let ty = antialias_taps(height, out_height);
        let kx = tx.iter().map(|t| t.weights.len()).max().unwrap_or(1).max(1);
        let ky = ty.iter().map(|t| t.weights.len()).max().unwrap_or(1).max(1);
        let mut table = Vec::with_capacity(out_width * (kx + 1) + out_height * (ky + 1));
        for (taps, k) in [(&tx, kx), (&ty, ky)] {
            table.extend(taps.iter().map(|t| t.start as f32));
            for t in taps {
                table.extend(t.weights.iter().copied().chain(std::iter::repeat(0.0)).take(k));
            }
        }
        let table = candle_core::Tensor::from_vec(table, table_len(out_width, kx, out_height, ky), device)?;
        Ok(Self { source: (height, width), output: (out_height, out_width), kx, ky, table })
    }

    /// The source frame size `(height, width)` it was built for.
    pub fn source(&self) -> (usize, usize) {
        self.source
    }

    /// The output size `(height, width)`.
    pub fn output(&self) -> (usize, usize) {
        self.output
    }

    /// Taps per output index along the width and the height.
    pub fn taps(&self) -> (usize, usize) {
        (self.kx, self.ky)
    }

    /// The device table.
    pub(crate) fn table(&self) -> &candle_core::Tensor {
        &self.table
    }
}

fn table_len(out_w: usize, kx: usize, out_h: usize, ky: usize) -> usize {
    out_w * (kx + 1) + out_h * (ky + 1)
}

fn check_side(what: &str, v: usize) -> super::Result<()> {
    if v == 0 || v > MAX_SIDE {
        return Err(super::KernelError::operand(what.to_string(), format!("{v} is not in 1..={MAX_SIDE}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_downscale_taps_are_normalised_and_in_range() {
        for (i, o) in [(224, 224), (640, 298), (480, 224), (1920, 398), (100, 300)] {
            let taps = antialias_taps(i, o);
            assert_eq!(taps.len(), o);
            for t in &taps {
                let sum: f32 = t.weights.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{i}->{o}: {sum}");
                assert!(t.start + t.weights.iter().rposition(|w| *w != 0.0).unwrap_or(0) < i);
            }
        }
        assert!(antialias_taps(224, 224).iter().enumerate().all(|(k, t)| t.start == k && t.weights[0] == 1.0));
        assert_eq!(resized_output_size(480, 640, 224), (224, 298));
        assert_eq!(resized_output_size(1080, 1920, 224), (224, 398));
    }
}

/// PyTorch's bicubic interpolation of one side (`F.interpolate(mode="bicubic", align_corners=False)` with an output
/// `size`, as Hugging Face's ViT resizes its position table) as an `out_size × in_size` row-major matrix: row `o`
/// holds the weights of the four taps around `scale·(o + ½) − ½` (`scale = in/out` in `f32`), cubic convolution with
/// `A = −0.75`, taps beyond the edges clamped onto the first/last input (their weights add up there).
pub fn bicubic_matrix(in_size: usize, out_size: usize) -> Vec<f32> {
    const A: f32 = -0.75;
    let scale = in_size as f32 / out_size.max(1) as f32;
    let mut m = vec![0f32; out_size * in_size];
    for o in 0..out_size {
        let real = scale * (o as f32 + 0.5) - 0.5;
        let base = real.floor();
        let t = real - base;
        let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
        let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
        let w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, wk) in w.iter().enumerate() {
            let i = (base as i64 - 1 + k as i64).clamp(0, in_size as i64 - 1) as usize;
            m[o * in_size + i] += wk;
        }
    }
    m
}

#[cfg(test)]
mod bicubic_tests {
    use super::bicubic_matrix;

    #[test]
    fn bicubic_rows_sum_to_one_and_same_size_is_the_identity() {
        let id = bicubic_matrix(16, 16);
        for o in 0..16 {
            for i in 0..16 {
                assert!((id[o * 16 + i] - f32::from(u8::from(o == i))).abs() < 1e-6);
            }
        }
        for (i, o) in [(16, 21), (16, 9), (14, 16)] {
            let m = bicubic_matrix(i, o);
            for row in m.chunks(i) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        // 4 -> 2: output 0 samples at 0.5 between inputs 0 and 1, taps −1 (clamped onto 0), 0, 1, 2 with the
        // A = −0.75 weights at t = ½: [−0.09375, 0.59375, 0.59375, −0.09375].
        let m = bicubic_matrix(4, 2);
        let want = [0.5, 0.59375, -0.09375, 0.0];
        assert!(m[..4].iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6), "{:?}", &m[..4]);
    }
}
