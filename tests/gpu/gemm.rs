//! The f32-accurate tensor-core GEMM (`kernels/gemm.cu`): accuracy against an f64 host reference, next to
//! cuBLAS's f32 GEMM on the same inputs, fused epilogues, edge tiles, split-K and determinism.

use candle_core::Tensor;
use swm::ops::gemm::{
    f32_matmul, linear, linear_columns, linear_heads, linear_partials, set_f32_matmul, Epilogue, F32Matmul,
};

use super::gpu;

/// Deterministic values in [-1, 1).
fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// gelu_erf in f64; erf by its Maclaurin series (exact to ~1e-13 for the |v| < 6 seen here).
fn gelu(v: f64) -> f64 {
    let z = v / std::f64::consts::SQRT_2;
    let (mut term, mut sum) = (z, z);
    for n in 1..120 {
        term *= -z * z / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    0.5 * v * (1.0 + sum * 2.0 / std::f64::consts::PI.sqrt())
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
}

/// Max abs error of `got` against the f64 product of x (m, k) and w (n, k), with the epilogue, and its scale.
fn error(got: &[f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, gelu_on: bool, c: &Case) -> (f64, f64) {
    let (mut err, mut scale) = (0f64, 0f64);
    for i in 0..c.m {
        for j in 0..c.n {
            let mut s = 0f64;
            for l in 0..c.k {
                s += x[i * c.k + l] as f64 * w[j * c.k + l] as f64;
            }
            if let Some(b) = bias {
                s += b[j] as f64;
            }
            if gelu_on {
                s = gelu(s);
            }
            err = err.max((got[i * c.n + j] as f64 - s).abs());
            scale = scale.max(s.abs());
        }
    }
    (err, scale)
}

/// One case's deterministic operands (x in [-1, 1), w in [-0.1, 0.1), bias in [-1, 1)) on the host and the GPU.
struct Operands {
    xs: Vec<f32>,
    ws: Vec<f32>,
    bs: Vec<f32>,
    x: Tensor,
    w: Tensor,
    b: Tensor,
}

impl Operands {
    fn new(c: &Case, seed: u64, device: &candle_core::Device) -> Self {
        let xs = values(c.m * c.k, seed);
        let ws: Vec<f32> = values(c.n * c.k, seed + 1).iter().map(|v| v * 0.1).collect();
        let bs = values(c.n, seed + 2);
        let x = Tensor::from_vec(xs.clone(), (c.m, c.k), device).unwrap();
        let w = Tensor::from_vec(ws.clone(), (c.n, c.k), device).unwrap();
        let b = Tensor::from_vec(bs.clone(), c.n, device).unwrap();
        Self { xs, ws, bs, x, w, b }
    }

    /// The epilogues under test: none, bias, bias + GELU, each with its bias and GELU flag for [`error`].
    fn epilogues(&self) -> [(Epilogue<'_>, Option<&[f32]>, bool); 3] {
        [
            (Epilogue::None, None, false),
            (Epilogue::Bias(&self.b), Some(self.bs.as_slice()), false),
            (Epilogue::BiasGelu(&self.b), Some(self.bs.as_slice()), true),
        ]
    }
}

fn run(kind: F32Matmul, x: &Tensor, w: &Tensor, epilogue: Epilogue<'_>) -> Vec<f32> {
    let before = f32_matmul();
    set_f32_matmul(kind);
    let y = linear(x, w, epilogue);
    set_f32_matmul(before);
    y.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
#[ignore = "needs a CUDA device"]
fn split_tf32_gemm_is_as_accurate_as_cublas_f32() {
    let (_gpu, device) = gpu();
    assert!(!swm::device::tf32(), "TF32 mode must be off for this test");
    // Rollout shapes (rows cut to keep the f64 reference fast), split-K shapes and ragged edge tiles.
    let cases = [
        Case { m: 96, n: 3072, k: 192 },
        Case { m: 300, n: 192, k: 2048 },
        Case { m: 130, n: 192, k: 1024 },
        Case { m: 37, n: 70, k: 44 },
        Case { m: 1, n: 2048, k: 192 },
        Case { m: 1, n: 192, k: 2048 },
        Case { m: 65, n: 9, k: 4 },
        Case { m: 1500, n: 768, k: 10 },
        Case { m: 33, n: 17, k: 75 },
    ];
    for (idx, c) in cases.iter().enumerate() {
        let ops = Operands::new(c, idx as u64 * 3 + 1, &device);
        let Operands { xs, ws, x, w, .. } = &ops;
        for (epilogue, bias, gelu_on) in ops.epilogues() {
            let ours = run(F32Matmul::Split3xTf32, x, w, epilogue);
            let cublas = run(F32Matmul::Cublas, x, w, epilogue);
            let (e_ours, scale) = error(&ours, xs, ws, bias, gelu_on, c);
            let (e_cublas, _) = error(&cublas, xs, ws, bias, gelu_on, c);
            println!(
                "{}x{}x{} {epilogue:?}: max abs error vs f64 — split TF32 {e_ours:.3e}, cuBLAS f32 {e_cublas:.3e} \
                 (scale {scale:.2})",
                c.m, c.n, c.k
            );
            // f32-level: within a small factor of cuBLAS's own f32 rounding, and far below TF32's ~1e-3 relative.
            assert!(
                e_ours <= 4.0 * e_cublas + 2e-7 * scale.max(1.0),
                "{}x{}x{}: {e_ours:e} vs cuBLAS {e_cublas:e}",
                c.m,
                c.n,
                c.k
            );
            let again = run(F32Matmul::Split3xTf32, x, w, epilogue);
            assert!(ours.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()), "not deterministic");
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn tf32_mode_on_swms_kernel_is_as_accurate_as_cublas_tf32() {
    let (_gpu, device) = gpu();
    // Interior tiles on the 8-warp (≤ 2 blocks per SM) and 4-warp kernels, split K, ragged edges (odd widths:
    // single-column stores), and depths off the 16-byte path.
    let cases = [
        Case { m: 300, n: 2048, k: 192 },
        Case { m: 1500, n: 768, k: 192 },
        Case { m: 300, n: 192, k: 2048 },
        Case { m: 37, n: 70, k: 44 },
        Case { m: 65, n: 9, k: 4 },
        Case { m: 33, n: 17, k: 75 },
    ];
    /// Restores the TF32 switch when the test ends, also by a failed assertion.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            swm::device::set_tf32(self.0);
        }
    }
    let _restore = Restore(swm::device::tf32());
    for (idx, c) in cases.iter().enumerate() {
        let ops = Operands::new(c, idx as u64 * 5 + 101, &device);
        let Operands { xs, ws, x, w, .. } = &ops;
        for (epilogue, bias, gelu_on) in ops.epilogues() {
            swm::device::set_tf32(true);
            let ours = run(F32Matmul::Own, x, w, epilogue);
            let again = run(F32Matmul::Own, x, w, epilogue);
            let cublas = run(F32Matmul::Cublas, x, w, epilogue);
            // TF32 mode's default kernels (this kernel for launches of one wave, as all of these cases are;
            // cuBLAS's TF32 GEMMs for larger ones): as accurate. Which kernel a shape takes is the host unit test
            // `tf32_mode_keeps_one_wave_launches_on_this_kernel`'s.
            let routed = run(F32Matmul::Split3xTf32, x, w, epilogue);
            swm::device::set_tf32(false);
            let precise = run(F32Matmul::Split3xTf32, x, w, epilogue);
            let (e_ours, scale) = error(&ours, xs, ws, bias, gelu_on, c);
            let (e_cublas, _) = error(&cublas, xs, ws, bias, gelu_on, c);
            let (e_routed, _) = error(&routed, xs, ws, bias, gelu_on, c);
            let (e_precise, _) = error(&precise, xs, ws, bias, gelu_on, c);
            println!(
                "{}x{}x{} {epilogue:?}: max abs error vs f64 — swm TF32 {e_ours:.3e}, cuBLAS TF32 {e_cublas:.3e}, \
                 f32 mode {e_precise:.3e} (scale {scale:.2})",
                c.m, c.n, c.k
            );
            // TF32-level (10-bit mantissas, rounded to nearest), within a small factor of cuBLAS's TF32 GEMM, and
            // one product: far above the split-TF32 kernel's error on the deep cases.
            assert!(e_ours <= 4.0 * e_cublas + 1e-6 * scale.max(1.0), "{e_ours:e} vs cuBLAS TF32 {e_cublas:e}");
            assert!(e_routed <= 4.0 * e_cublas + 1e-6 * scale.max(1.0), "{e_routed:e} vs cuBLAS TF32 {e_cublas:e}");
            if c.k >= 44 {
                assert!(e_ours > 10.0 * e_precise, "TF32 {e_ours:e} is not above f32 mode's {e_precise:e}");
            }
            assert!(ours.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()), "not deterministic");
        }
    }
    // NaN stays NaN through the TF32 rounding (CUDA's NaN, all mantissa bits set, and a quiet NaN), in both kernels.
    for (bits, m, n) in [(0x7fff_ffffu32, 40, 64), (0x7fc0_0000, 1500, 768), (0x7fff_ffff, 1500, 768)] {
        let c = Case { m, n, k: 64 };
        let mut xs = values(c.m * c.k, 7);
        xs[0] = f32::from_bits(bits);
        let x = Tensor::from_vec(xs, (c.m, c.k), &device).unwrap();
        let w = Tensor::from_vec(values(c.n * c.k, 8), (c.n, c.k), &device).unwrap();
        swm::device::set_tf32(true);
        let y = run(F32Matmul::Own, &x, &w, Epilogue::None);
        assert!(y[..c.n].iter().all(|v| v.is_nan()), "{bits:#x}: row 0 {:?}", &y[..4]);
        assert!(y[c.n..].iter().all(|v| v.is_finite()), "{bits:#x}: NaN outside row 0");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn gemm_takes_batched_inputs_and_rejects_bad_shapes() {
    let (_gpu, device) = gpu();
    let x = Tensor::from_vec(values(2 * 3 * 8, 7), (2, 3, 8), &device).unwrap();
    let w = Tensor::from_vec(values(5 * 8, 8), (5, 8), &device).unwrap();
    let y = linear(&x, &w, Epilogue::None).unwrap();
    assert_eq!(y.dims(), &[2, 3, 5]);
    let want = x.reshape((6, 8)).unwrap().matmul(&w.t().unwrap()).unwrap().reshape((2, 3, 5)).unwrap();
    assert!(super::max_abs_diff(&y, &want) < 1e-5);
    // A non-contiguous input falls back to cuBLAS; an odd K (4-byte tile copies) still runs on the tensor cores.
    let xt = Tensor::from_vec(values(8 * 6, 9), (8, 6), &device).unwrap().t().unwrap();
    let want = xt.contiguous().unwrap().matmul(&w.t().unwrap()).unwrap();
    assert!(super::max_abs_diff(&linear(&xt, &w, Epilogue::None).unwrap(), &want) < 1e-5);
    let w3 = Tensor::from_vec(values(5 * 3, 10), (5, 3), &device).unwrap();
    let x3 = Tensor::from_vec(values(4 * 3, 11), (4, 3), &device).unwrap();
    assert_eq!(linear(&x3, &w3, Epilogue::None).unwrap().dims(), &[4, 5]);
    // A deep, narrow product comes back as several partial sums that add up to the reduced GEMM.
    let xd = Tensor::from_vec(values(300 * 2048, 12), (300, 2048), &device).unwrap();
    let wd = Tensor::from_vec(values(192 * 2048, 13), (192, 2048), &device).unwrap();
    let partials = linear_partials(&xd, &wd).unwrap();
    assert!(partials.splits() > 1, "300x192x2048 should be split over K");
    assert_eq!((partials.rows(), partials.heads(), partials.width()), (300, 1, 192));
    let reduced = linear(&xd, &wd, Epilogue::None).unwrap();
    assert!(super::max_abs_diff(&partials.reduce().unwrap(), &reduced) < 1e-4);
    // Shape errors are typed and name the operand.
    let named = |r: swm::ops::Result<Tensor>, operand: &str| match r {
        Err(swm::ops::KernelError::Operand { operand: name, .. }) => assert_eq!(name, operand),
        other => panic!("expected an Operand error naming `{operand}`, got {other:?}"),
    };
    named(linear(&x3, &w, Epilogue::None), "x");
    let bad_bias = Tensor::zeros(4, candle_core::DType::F32, &device).unwrap();
    named(linear(&x, &w, Epilogue::Bias(&bad_bias)), "bias");
}

#[test]
#[ignore = "needs a CUDA device"]
fn heads_and_column_blocks_are_as_accurate_as_whole_gemms() {
    let (_gpu, device) = gpu();
    assert!(!swm::device::tf32(), "TF32 mode must be off for this test");
    // (rows, heads, n, k): TD-MPC2's ensemble layers (split over K), a reward head's 101 bins, ragged edge tiles,
    // and a K that is not a multiple of 4 (4-byte tile copies).
    for (idx, &(m, heads, n, k)) in
        [(512, 5, 512, 512), (300, 2, 101, 512), (70, 3, 130, 36), (7, 2, 5, 6)].iter().enumerate()
    {
        let seed = 100 + idx as u64 * 4;
        let (width, c) = (heads * k, Case { m, n, k });
        let xs = values(m * width, seed);
        let ws: Vec<f32> = values(heads * n * k, seed + 1).iter().map(|v| v * 0.1).collect();
        let bs = values(heads * n, seed + 2);
        let x = Tensor::from_vec(xs.clone(), (m, width), &device).unwrap();
        let w = Tensor::from_vec(ws.clone(), (heads, n, k), &device).unwrap();
        let b = Tensor::from_vec(bs.clone(), heads * n, &device).unwrap();
        let got = linear_heads(&x, &w, Epilogue::Bias(&b)).unwrap();
        assert_eq!(got.dims(), &[m, heads * n]);
        let got = got.to_vec2::<f32>().unwrap();
        for h in 0..heads {
            // Head h's block of x, its weight and bias, against the f64 product and cuBLAS's f32 GEMM.
            let xh: Vec<f32> = (0..m).flat_map(|i| xs[i * width + h * k..i * width + (h + 1) * k].to_vec()).collect();
            let wh = &ws[h * n * k..(h + 1) * n * k];
            let bh = &bs[h * n..(h + 1) * n];
            let mine: Vec<f32> = got.iter().flat_map(|row| row[h * n..(h + 1) * n].to_vec()).collect();
            let (e_ours, scale) = error(&mine, &xh, wh, Some(bh), false, &c);
            let xt = Tensor::from_vec(xh.clone(), (m, k), &device).unwrap();
            let wt = Tensor::from_vec(wh.to_vec(), (n, k), &device).unwrap();
            let bt = Tensor::from_vec(bh.to_vec(), n, &device).unwrap();
            let cublas = run(F32Matmul::Cublas, &xt, &wt, Epilogue::Bias(&bt));
            let (e_cublas, _) = error(&cublas, &xh, wh, Some(bh), false, &c);
            assert!(
                e_ours <= 4.0 * e_cublas + 2e-7 * scale.max(1.0),
                "{m}x{n}x{k} head {h} of {heads}: {e_ours:e} vs cuBLAS {e_cublas:e}"
            );
            // The same block through `linear_columns` (one weight, a column offset into x).
            let cols = linear_columns(&x, h * k, &wt, Epilogue::BiasGelu(&bt)).unwrap();
            let (e_cols, scale) = error(&cols.flatten_all().unwrap().to_vec1().unwrap(), &xh, wh, Some(bh), true, &c);
            assert!(e_cols <= 4.0 * e_cublas + 2e-7 * scale.max(1.0), "columns {h}: {e_cols:e}");
        }
        let again = linear_heads(&x, &w, Epilogue::Bias(&b)).unwrap().to_vec2::<f32>().unwrap();
        assert!(got.iter().flatten().zip(again.iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    // Shapes that do not line up are typed errors naming the operand.
    let x = Tensor::zeros((4, 10), candle_core::DType::F32, &device).unwrap();
    let w = Tensor::zeros((3, 2, 4), candle_core::DType::F32, &device).unwrap();
    assert!(matches!(linear_heads(&x, &w, Epilogue::None), Err(swm::ops::KernelError::Operand { .. })));
    let w2 = Tensor::zeros((2, 4), candle_core::DType::F32, &device).unwrap();
    assert!(matches!(linear_columns(&x, 7, &w2, Epilogue::None), Err(swm::ops::KernelError::Operand { .. })));
    let b = Tensor::zeros(5, candle_core::DType::F32, &device).unwrap();
    let w = Tensor::zeros((2, 2, 5), candle_core::DType::F32, &device).unwrap();
    assert!(matches!(linear_heads(&x, &w, Epilogue::Bias(&b)), Err(swm::ops::KernelError::Operand { .. })));
}

#[test]
#[ignore = "needs a CUDA device"]
fn tf32_mode_runs_the_heads_on_one_rounded_product_as_accurate_as_cublas_tf32() {
    let (_gpu, device) = gpu();
    let (m, heads, n, k) = (300, 2, 192, 1024);
    let c = Case { m, n, k };
    let xs = values(m * heads * k, 41);
    let ws: Vec<f32> = values(heads * n * k, 42).iter().map(|v| v * 0.1).collect();
    let x = Tensor::from_vec(xs.clone(), (m, heads * k), &device).unwrap();
    let w = Tensor::from_vec(ws.clone(), (heads, n, k), &device).unwrap();
    // Head 1's block, its weight, and the f64 reference's inputs.
    let x1: Vec<f32> = (0..m).flat_map(|i| xs[i * heads * k + k..(i + 1) * heads * k].to_vec()).collect();
    let w1 = &ws[n * k..];
    let x1t = Tensor::from_vec(x1.clone(), (m, k), &device).unwrap();
    let w1t = Tensor::from_vec(w1.to_vec(), (n, k), &device).unwrap();
    let head1 =
        |y: Tensor| -> Vec<f32> { y.to_vec2::<f32>().unwrap().iter().flat_map(|row| row[n..].to_vec()).collect() };
    let precise = head1(linear_heads(&x, &w, Epilogue::None).unwrap());
    let before = swm::device::tf32();
    swm::device::set_tf32(true);
    let ours = head1(linear_heads(&x, &w, Epilogue::None).unwrap());
    let cublas = run(F32Matmul::Cublas, &x1t, &w1t, Epilogue::None);
    swm::device::set_tf32(before);
    let (e_ours, scale) = error(&ours, &x1, w1, None, false, &c);
    let (e_cublas, _) = error(&cublas, &x1, w1, None, false, &c);
    let (e_precise, _) = error(&precise, &x1, w1, None, false, &c);
    println!(
        "TF32 mode: swm heads {e_ours:.3e}, cuBLAS TF32 {e_cublas:.3e}; f32 mode {e_precise:.3e} (scale {scale:.2})"
    );
    // TF32-level error (10-bit mantissas), within a small factor of cuBLAS's TF32 GEMM, and really one product:
    // far above the split-TF32 kernel's error.
    assert!(e_ours <= 4.0 * e_cublas + 1e-6 * scale.max(1.0), "{e_ours:e} vs cuBLAS TF32 {e_cublas:e}");
    assert!(e_ours > 10.0 * e_precise, "TF32 mode {e_ours:e} is not above f32 mode {e_precise:e}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn cublas_gemm_ex_is_as_accurate_as_its_compute_type() {
    use swm::ops::gemm::{linear_cublas, CublasCompute};
    let (_gpu, device) = gpu();
    let c = Case { m: 130, n: 200, k: 192 };
    let (xv, wv) = (values(c.m * c.k, 11), values(c.n * c.k, 12).iter().map(|v| v * 0.1).collect::<Vec<_>>());
    let x = Tensor::from_vec(xv.clone(), (c.m, c.k), &device).unwrap();
    let w = Tensor::from_vec(wv.clone(), (c.n, c.k), &device).unwrap();
    let got = |y: Tensor| {
        assert_eq!(y.dims(), [c.m, c.n]);
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    // Relative to the output scale: f32 ~1e-7, TF32 ~1e-3, BF16 ~1e-2 (8-bit mantissas, f32 accumulation).
    for (compute, bound) in
        [(CublasCompute::Exact, 1e-5), (CublasCompute::FastTf32, 4e-3), (CublasCompute::FastBf16, 2e-2)]
    {
        let (err, scale) = error(&got(linear_cublas(&x, &w, compute).unwrap()), &xv, &wv, None, false, &c);
        assert!(err <= bound * scale, "{compute:?}: error {err:e} at scale {scale:e}");
    }
    let (xb, wb) = (x.to_dtype(candle_core::DType::BF16).unwrap(), w.to_dtype(candle_core::DType::BF16).unwrap());
    let (err, scale) = error(&got(linear_cublas(&xb, &wb, CublasCompute::Exact).unwrap()), &xv, &wv, None, false, &c);
    assert!(err <= 2e-2 * scale, "BF16 operands: error {err:e} at scale {scale:e}");
    // Mixed operand types, a BF16 fast mode on BF16 data and mismatched shapes are typed errors.
    assert!(linear_cublas(&x, &wb, CublasCompute::Exact).is_err());
    assert!(linear_cublas(&xb, &wb, CublasCompute::FastBf16).is_err());
    assert!(linear_cublas(&x.narrow(1, 0, 100).unwrap().contiguous().unwrap(), &w, CublasCompute::Exact).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn batched_matmul_is_as_accurate_as_cublas_f32() {
    use swm::ops::gemm::batched_matmul;
    let (_gpu, device) = gpu();
    assert!(!swm::device::tf32() && f32_matmul() == F32Matmul::Split3xTf32, "swm's kernel in f32 mode for this test");
    // (batches, m, n, d): the training encoder's scores over 257 and 17 tokens, a ragged small case, and a deep
    // one that splits K over blocks.
    for (batches, m, n, d, seed) in [(6, 257, 257, 64, 1u64), (4, 17, 17, 16, 2), (3, 5, 7, 3, 3), (2, 40, 24, 2048, 4)]
    {
        let a = values(batches * m * d, seed);
        let b = values(batches * n * d, seed + 10);
        let at = Tensor::from_vec(a.clone(), (batches, m, d), &device).unwrap();
        let bt = Tensor::from_vec(b.clone(), (batches, n, d), &device).unwrap();
        // a · bᵀ with b passed as the transposed view (the attention's `k.t()`), on swm's kernel and on cuBLAS.
        let got = batched_matmul(&at, &bt.t().unwrap()).unwrap();
        assert_eq!(got.dims(), [batches, m, n]);
        let cublas = at.matmul(&bt.t().unwrap()).unwrap();
        let (got, cublas) = (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), cublas.flatten_all().unwrap());
        let cublas = cublas.to_vec1::<f32>().unwrap();
        let c = Case { m, n, k: d };
        let (mut err, mut err_cublas, mut scale) = (0f64, 0f64, 0f64);
        for i in 0..batches {
            let (xa, wb) = (&a[i * m * d..(i + 1) * m * d], &b[i * n * d..(i + 1) * n * d]);
            let (e, s) = error(&got[i * m * n..(i + 1) * m * n], xa, wb, None, false, &c);
            let (ec, _) = error(&cublas[i * m * n..(i + 1) * m * n], xa, wb, None, false, &c);
            (err, err_cublas, scale) = (err.max(e), err_cublas.max(ec), scale.max(s));
        }
        println!("{batches}x{m}x{n}x{d}: swm {err:.3e}, cuBLAS f32 {err_cublas:.3e} (scale {scale:.2})");
        // f32-level: within a small factor of cuBLAS's own f32 rounding plus the split products' ~2⁻²² relative
        // (the small parts' product is dropped; operands here are in [-1, 1), so a 3-deep product is near-exact on
        // cuBLAS and ~5e-7 off on the split kernel), three orders of magnitude below TF32's ~1e-3.
        assert!(err <= 4.0 * err_cublas + 4e-7 * scale.max(1.0), "{batches}x{m}x{n}x{d}: {err:e} vs {err_cublas:e}");
    }
    // A tracked operand takes Candle's differentiable matmul: the gradient reaches it.
    let a = candle_core::Var::from_tensor(&Tensor::ones((2, 3, 4), candle_core::DType::F32, &device).unwrap()).unwrap();
    let b = Tensor::ones((2, 4, 5), candle_core::DType::F32, &device).unwrap();
    let grads = batched_matmul(a.as_tensor(), &b).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(a.as_tensor()).is_some(), "no gradient through batched_matmul");
    // Mismatched batch dims go to Candle's matmul, which refuses them.
    let a = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &device).unwrap();
    let b = Tensor::zeros((3, 4, 5), candle_core::DType::F32, &device).unwrap();
    assert!(batched_matmul(&a, &b).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn bias_add_is_the_broadcast_add_bit_for_bit() {
    use swm::ops::bias_act::bias_add;
    let (_gpu, device) = gpu();
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
    // A TD-MPC2 Q-ensemble layer, a LeWM window's positions as a bias over rows of q·D, ragged sizes.
    for (rows, cols) in [(512, 2560), (300, 3 * 192), (7, 13), (1, 1)] {
        let y = Tensor::from_vec(values(rows * cols, 40), (rows, cols), &device).unwrap();
        let b = Tensor::from_vec(values(cols, 41), cols, &device).unwrap();
        let got: Vec<u32> = bits(&bias_add(&y, &b).unwrap());
        assert!(got == bits(&y.broadcast_add(&b).unwrap()), "({rows}, {cols})");
    }
    // A strided view takes Candle's broadcast add (same values); a bias of the wrong length is an error.
    let y = Tensor::from_vec(values(6 * 8, 42), (6, 8), &device).unwrap();
    let (view, b) = (y.t().unwrap(), Tensor::from_vec(values(6, 43), 6, &device).unwrap());
    let got: Vec<u32> = bits(&bias_add(&view, &b).unwrap());
    assert!(got == bits(&view.broadcast_add(&b).unwrap()), "strided view");
    assert!(bias_add(&y, &b).is_err());
}
