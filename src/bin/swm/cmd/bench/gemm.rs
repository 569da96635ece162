//! `swm bench gemm`: the rollout's GEMM shapes under each matmul precision, GPU time per call.

use candle_core::{DType, Tensor};

use swm::device;
use swm::ops::gemm;
use swm::tools::bench::{self, BenchRow};

use super::keep;
use crate::cli::BenchGemmArgs;
use crate::error::CliError;
use crate::precision::Precision;

/// (what, rows, outputs, depth): the PushT-sized predictor at 300 candidates (1- and 3-frame windows), its AdaLN
/// table over 5 action blocks and pred_proj.
const SHAPES: [(&str, usize, usize, usize); 9] = [
    ("qkv", 300, 3072, 192),
    ("qkv window", 900, 3072, 192),
    ("attn out", 300, 192, 1024),
    ("attn out window", 900, 192, 1024),
    ("fc1 / pred_proj fc1", 300, 2048, 192),
    ("fc2 / pred_proj fc2", 300, 192, 2048),
    ("fc2 window", 900, 192, 2048),
    ("AdaLN table", 1500, 6912, 192),
    ("tdmpc2 layer", 512, 512, 512),
];

/// One row per shape and precision.
pub fn run(args: &BenchGemmArgs) -> Result<Vec<BenchRow>, CliError> {
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    outln!("device: {}", device::name(&device).unwrap_or_default());
    let mut rows = Vec::new();
    for (name, m, n, k) in SHAPES {
        let x = Tensor::randn(0f32, 1.0, (m, k), &device)?;
        let w = Tensor::randn(0f32, 0.05, (n, k), &device)?;
        for precision in [Precision::SplitF32, Precision::CublasF32, Precision::Tf32, Precision::Tf32Own] {
            let label = format!("gemm {name} {m}x{n}x{k} {}", precision.label());
            let row = precision.with(|| {
                bench::time(&device, &label, 20, args.iters, || gemm::linear(&x, &w, gemm::Epilogue::None).map(drop))
            })?;
            keep(&mut rows, row)?;
        }
        // cuBLAS's BF16 tensor-core GEMMs: f32 operands rounded inside cuBLAS, and operands already in BF16 (the
        // input's conversion not timed), both with an f32 result.
        let label = format!("gemm {name} {m}x{n}x{k} cuBLAS BF16 products of f32 operands");
        let row = bench::time(&device, &label, 20, args.iters, || {
            gemm::linear_cublas(&x, &w, gemm::CublasCompute::FastBf16).map(drop)
        })?;
        keep(&mut rows, row)?;
        let (xb, wb) = (x.to_dtype(DType::BF16)?, w.to_dtype(DType::BF16)?);
        let label = format!("gemm {name} {m}x{n}x{k} cuBLAS BF16 operands, f32 result");
        let row = bench::time(&device, &label, 20, args.iters, || {
            gemm::linear_cublas(&xb, &wb, gemm::CublasCompute::Exact).map(drop)
        })?;
        keep(&mut rows, row)?;
    }
    Ok(rows)
}
