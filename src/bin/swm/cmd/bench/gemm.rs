//! `swm bench gemm`: the rollout's GEMM shapes under each matmul precision, GPU time per call.

use candle_core::Tensor;

use swm::device;
use swm::ops::gemm;
use swm::tools::bench::{self, BenchRow};

use super::keep;
use crate::cli::BenchGemmArgs;
use crate::error::CliError;
use crate::precision::Precision;

/// (what, rows, outputs, depth): the PushT-sized predictor at 300 candidates (1- and 3-frame windows), its AdaLN
/// table over 5 action blocks and pred_proj.
const SHAPES: [(&str, usize, usize, usize); 8] = [
    ("qkv", 300, 3072, 192),
    ("qkv window", 900, 3072, 192),
    ("attn out", 300, 192, 1024),
    ("attn out window", 900, 192, 1024),
    ("fc1 / pred_proj fc1", 300, 2048, 192),
    ("fc2 / pred_proj fc2", 300, 192, 2048),
    ("fc2 window", 900, 192, 2048),
    ("AdaLN table", 1500, 6912, 192),
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
        for precision in [Precision::SplitF32, Precision::CublasF32, Precision::Tf32] {
            let label = format!("gemm {name} {m}x{n}x{k} {}", precision.label());
            let row = precision.with(|| {
                bench::time(&device, &label, 20, args.iters, || gemm::linear(&x, &w, gemm::Epilogue::None).map(drop))
            })?;
            keep(&mut rows, row)?;
        }
    }
    Ok(rows)
}
