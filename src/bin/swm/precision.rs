//! The matmul precision a benchmark row runs under.

use swm::device;
use swm::ops::gemm::{self, F32Matmul};

/// The matmul precision of a benchmark row.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// swm's split-TF32 tensor-core GEMM (f32-accurate, the default).
    SplitF32,
    /// cuBLAS's f32 GEMMs.
    CublasF32,
    /// TF32 mode: swm's one-product TF32 kernel for GEMMs whose launch fits one wave of blocks and the strided
    /// layouts (TD-MPC2's heads), cuBLAS's TF32 GEMMs for larger ones.
    Tf32,
    /// TF32 mode on cuBLAS's TF32 GEMMs throughout (the strided layouts as a GEMM per head).
    Tf32Cublas,
    /// TF32 mode on swm's one-product TF32 kernel throughout (plain GEMMs too).
    Tf32Own,
}

impl Precision {
    /// The precision the process runs under now (`--tf32`, `--cublas-f32`).
    pub fn current() -> Self {
        match (device::tf32(), gemm::f32_matmul()) {
            (true, F32Matmul::Split3xTf32) => Self::Tf32,
            (true, F32Matmul::Cublas) => Self::Tf32Cublas,
            (true, F32Matmul::Own) => Self::Tf32Own,
            (false, F32Matmul::Cublas) => Self::CublasF32,
            (false, F32Matmul::Split3xTf32 | F32Matmul::Own) => Self::SplitF32,
        }
    }

    /// The label in row names.
    pub fn label(self) -> &'static str {
        match self {
            Self::SplitF32 => "f32 (split-TF32 GEMM)",
            Self::CublasF32 => "f32 (cuBLAS GEMM)",
            Self::Tf32 => "TF32 GEMMs",
            Self::Tf32Cublas => "TF32 GEMMs (cuBLAS)",
            Self::Tf32Own => "TF32 GEMMs (swm's kernel)",
        }
    }

    /// Runs `work` with this precision selected, restoring the previous one afterwards (also on error).
    pub fn with<T>(self, work: impl FnOnce() -> T) -> T {
        let (tf32, kind) = (device::tf32(), gemm::f32_matmul());
        device::set_tf32(matches!(self, Self::Tf32 | Self::Tf32Cublas | Self::Tf32Own));
        gemm::set_f32_matmul(match self {
            Self::CublasF32 | Self::Tf32Cublas => F32Matmul::Cublas,
            Self::Tf32Own => F32Matmul::Own,
            Self::SplitF32 | Self::Tf32 => F32Matmul::Split3xTf32,
        });
        let out = work();
        device::set_tf32(tf32);
        gemm::set_f32_matmul(kind);
        out
    }
}
