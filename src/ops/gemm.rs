//! f32 matmuls of the hot path (`kernels/gemm.cu`): `x · Wᵀ` with an optional fused bias / bias + GELU epilogue.
//!
//! With the default [`F32Matmul::Split3xTf32`], each operand is split into two TF32 parts and three tensor-core
//! products are summed in f32: f32-class accuracy (max error 1–5× cuBLAS f32's against an f64 reference, ~6e-7
//! relative, GPU-tested; plain TF32 is ~1e-3), faster than cuBLAS's f32 SIMT kernels on the small-row shapes of
//! a rollout (`swm bench gemm`, docs/benchmarks.md). [`F32Matmul::Cublas`] keeps cuBLAS's IEEE f32 GEMMs. TF32
//! mode ([`crate::device::set_tf32`]) runs [`linear`] on this kernel's one-product TF32 variant (10-bit mantissas)
//! for GEMMs whose launch fits one wave of blocks and on cuBLAS's TF32 GEMMs for larger ones; [`F32Matmul::Own`]
//! keeps this kernel for all of them.
//!
//! [`linear_heads`] and [`linear_columns`] run layers side by side in one launch (an ensemble's heads; two MLPs
//! whose hidden layers share an input), on the same kernel with batches and strided operands; in TF32 mode on its
//! one-product variant (operands rounded to TF32), unless [`F32Matmul::Cublas`] is selected. [`batched_matmul`]
//! runs batched products (the training encoder's attention) on the batched kernel in f32 mode.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::launch::{address, cuda, grid, launched, uninit_f32};
use super::{KernelError, Result};
use crate::kernels;

const MODULE: &str = "swm_gemm";
/// Output tile of one block (rows, columns) and the K step, as in `kernels/gemm.cu`.
const TILE_M: usize = 64;
const TILE_N: usize = 64;
const TILE_K: usize = 32;
/// K tiles in flight per block, as in `kernels/gemm.cu`.
const STAGES: usize = 3;
/// Dynamic shared memory per block: A and W tiles of 32 (+ 4 padding) columns per stage, and the bias of the
/// block's output columns.
const SHARED_BYTES: usize = (STAGES * (TILE_M + TILE_N) * (TILE_K + 4) + TILE_N) * 4;

/// Which kernels run swm's f32 matmuls (the rollouts, their heads, the AdaLN table, the training Linear and attention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum F32Matmul {
    /// swm's tensor-core GEMM on operands split into two TF32 parts (three products, f32 accumulation); in TF32
    /// mode its one product of TF32-rounded operands for GEMMs whose launch fits one wave of blocks and for the
    /// strided layouts, cuBLAS's TF32 GEMMs for larger ones.
    #[default]
    Split3xTf32,
    /// cuBLAS's f32 GEMMs (SIMT, IEEE f32 products); in TF32 mode, cuBLAS's TF32 GEMMs.
    Cublas,
    /// swm's kernel throughout: as [`F32Matmul::Split3xTf32`] in f32 mode; in TF32 mode its one-product TF32
    /// variant for every plain GEMM, however large.
    Own,
}

static F32_MATMUL: AtomicU8 = AtomicU8::new(0);

/// Selects the f32 matmul kernels process-wide; applies to work issued (or CUDA graphs captured) afterwards.
pub fn set_f32_matmul(kind: F32Matmul) {
    F32_MATMUL.store(kind as u8, Ordering::Relaxed);
}

/// The f32 matmul kernels in use (see [`set_f32_matmul`]).
pub fn f32_matmul() -> F32Matmul {
    match F32_MATMUL.load(Ordering::Relaxed) {
        0 => F32Matmul::Split3xTf32,
        1 => F32Matmul::Cublas,
        _ => F32Matmul::Own,
    }
}

/// The arithmetic of [`linear_cublas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CublasCompute {
    /// IEEE f32 products (f32 operands) or BF16 products (BF16 operands), f32 accumulation.
    Exact,
    /// f32 operands rounded to TF32 for the tensor cores (`CUBLAS_COMPUTE_32F_FAST_TF32`).
    FastTf32,
    /// f32 operands rounded to BF16 for the tensor cores (`CUBLAS_COMPUTE_32F_FAST_16BF`).
    FastBf16,
}

/// `x · wᵀ` on cuBLAS's `cublasGemmEx` for x (rows, K) and w (N, K), both f32 or both BF16, contiguous on one
/// CUDA device: an f32 (rows, N) result with f32 accumulation, on Candle's stream. `swm bench gemm` times swm's
/// GEMMs against it (cuBLAS's TF32 and BF16 tensor-core paths). Empty operands (no rows, outputs or depth) are an
/// operand error.
pub fn linear_cublas(x: &Tensor, w: &Tensor, compute: CublasCompute) -> Result<Tensor> {
    use cudarc::cublas::sys::{cublasComputeType_t as Compute, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
    let (n, k) = w.dims2()?;
    let (rows, kx) = x.dims2()?;
    let dtype = match (x.dtype(), w.dtype(), compute) {
        (DType::F32, DType::F32, _) => cudaDataType::CUDA_R_32F,
        (DType::BF16, DType::BF16, CublasCompute::Exact) => cudaDataType::CUDA_R_16BF,
        _ => {
            return Err(KernelError::operand(
                "x",
                format!(
                    "{:?} by {:?} with {compute:?}: expected two f32 operands, or two BF16 ones",
                    x.dtype(),
                    w.dtype()
                ),
            ))
        }
    };
    let fits = |v: usize| i32::try_from(v).is_ok();
    if kx != k || rows == 0 || n == 0 || k == 0 || ![rows, n, k].into_iter().all(fits) {
        return Err(KernelError::operand("x", format!("{:?} by a {:?} weight", x.dims(), w.dims())));
    }
    let dev = cuda(x.device())?;
    if !w.device().same_device(x.device()) {
        return Err(KernelError::operand("w", "on another device than x"));
    }
    let out = uninit_f32(dev, (rows, n))?;
    let (xp, wp, op) = (address(x)?, address(w)?, address(&out)?);
    let compute = match compute {
        CublasCompute::Exact => Compute::CUBLAS_COMPUTE_32F,
        CublasCompute::FastTf32 => Compute::CUBLAS_COMPUTE_32F_FAST_TF32,
        CublasCompute::FastBf16 => Compute::CUBLAS_COMPUTE_32F_FAST_16BF,
    };
    let (alpha, beta) = (1f32, 0f32);
    let blas = dev.cublas_handle();
    // Column-major view: outᵀ (N × rows) = w (K × N column-major, transposed) · xᵀ (K × rows column-major).
    // SAFETY: x holds rows·K and w N·K elements of `dtype` (dims and dtypes checked above; `address` refused a
    // non-contiguous tensor and added the view's offset), out rows·N f32 (fresh); the handle issues on Candle's
    // stream, which orders the GEMM after the operands' producers and before readers of out; alpha and beta are
    // f32 as the f32-accumulating compute types take them.
    unsafe {
        cudarc::cublas::result::gemm_ex(
            *blas.handle(),
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
            n as i32,
            rows as i32,
            k as i32,
            (&alpha as *const f32).cast(),
            wp as *const std::ffi::c_void,
            dtype,
            k as i32,
            xp as *const std::ffi::c_void,
            dtype,
            k as i32,
            (&beta as *const f32).cast(),
            op as *mut std::ffi::c_void,
            cudaDataType::CUDA_R_32F,
            n as i32,
            compute,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| KernelError::Cublas(e.to_string()))?;
    Ok(out)
}

/// The kernels' epilogue code of [`Epilogue::Bias`].
const MODE_BIAS: i32 = 1;

/// What is applied to each output element of [`linear`].
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    /// `x · Wᵀ`.
    None,
    /// `x · Wᵀ + b`.
    Bias(&'a Tensor),
    /// `gelu_erf(x · Wᵀ + b)`.
    BiasGelu(&'a Tensor),
    /// `silu(x · Wᵀ + b)`.
    BiasSilu(&'a Tensor),
}

impl Epilogue<'_> {
    fn code(&self) -> i32 {
        match self {
            Epilogue::None => 0,
            Epilogue::Bias(_) => MODE_BIAS,
            Epilogue::BiasGelu(_) => 2,
            Epilogue::BiasSilu(_) => 3,
        }
    }

    /// The same epilogue with another bias (`None`: no bias, and no activation).
    fn with_bias<'b>(&self, bias: Option<&'b Tensor>) -> Epilogue<'b> {
        match (self, bias) {
            (_, None) | (Epilogue::None, _) => Epilogue::None,
            (Epilogue::Bias(_), Some(b)) => Epilogue::Bias(b),
            (Epilogue::BiasGelu(_), Some(b)) => Epilogue::BiasGelu(b),
            (Epilogue::BiasSilu(_), Some(b)) => Epilogue::BiasSilu(b),
        }
    }

    fn bias(&self) -> Option<&Tensor> {
        match self {
            Epilogue::None => None,
            Epilogue::Bias(b) | Epilogue::BiasGelu(b) | Epilogue::BiasSilu(b) => Some(b),
        }
    }
}

/// `x · wᵀ` for x (rows, K), left as its partial sums over K for consumers that add them as they read (see
/// [`Unreduced`]: one head, no bias, (splits, rows, N) back to back): the split-K GEMM without its reduction launch.
/// One partial when the GEMM runs unsplit or on cuBLAS.
pub fn linear_partials(x: &Tensor, w: &Tensor) -> Result<Unreduced> {
    let (n, k) = w.dims2()?;
    let (rows, kx) = x.dims2()?;
    if kx != k {
        return Err(KernelError::operand("x", format!("{:?} cannot multiply a ({n}, {k}) weight", x.dims())));
    }
    if use_tensor_cores(x, w, None, k) && rows > 0 && n > 0 {
        return unreduced(x, 0, w, None, Shape::plain(rows, n, k), 1);
    }
    Unreduced::contiguous(x.matmul(&w.t()?)?, 1)
}

/// `epilogue(x · wᵀ)` for x (…, K) and a Linear weight w (N, K): returns (…, N), contiguous.
///
/// Runs on swm's kernel for contiguous f32 CUDA operands: its split-TF32 products with TF32 mode off (unless
/// [`F32Matmul::Cublas`] is selected), its one-product TF32 variant in TF32 mode (launches of up to one wave of
/// blocks, or any size with [`F32Matmul::Own`]); otherwise on Candle's cuBLAS matmul (f32, or TF32 in TF32 mode)
/// and the same epilogue.
pub fn linear(x: &Tensor, w: &Tensor, epilogue: Epilogue<'_>) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    if x.dim(candle_core::D::Minus1)? != k {
        return Err(KernelError::operand("x", format!("{:?} cannot multiply a ({n}, {k}) weight", x.dims())));
    }
    if let Some(b) = epilogue.bias() {
        if b.dims() != [n] {
            return Err(KernelError::operand("bias", format!("{:?} for {n} outputs", b.dims())));
        }
    }
    let mut out_dims = x.dims().to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = n;
    }
    let rows = x.elem_count() / k.max(1);
    if use_tensor_cores(x, w, epilogue.bias(), k) {
        let y = gemm_3xtf32(&x.reshape((rows, k))?, w, epilogue)?;
        return Ok(y.reshape(out_dims)?);
    }
    let y = x.reshape((rows, k))?.matmul(&w.t()?)?;
    let y = match epilogue {
        Epilogue::None => y,
        Epilogue::Bias(b) => super::bias_act::bias_add(&y, b)?,
        Epilogue::BiasGelu(b) => super::bias_act::bias_gelu(&y, b)?,
        Epilogue::BiasSilu(b) => candle_nn::ops::silu(&y.broadcast_add(b)?)?,
    };
    Ok(y.reshape(out_dims)?)
}

fn use_tensor_cores(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, k: usize) -> bool {
    if k == 0 || !own_kernel(x, w, bias) {
        return false;
    }
    own_shape(x.elem_count() / k, w.elem_count() / k, k, x.device())
}

/// Whether a (rows, n, k) GEMM of f32 operands runs on swm's kernel rather than cuBLAS's, swm's kernel selected.
fn own_shape(rows: usize, n: usize, k: usize, device: &Device) -> bool {
    if k == 0 {
        return false;
    }
    if !crate::device::tf32() || f32_matmul() == F32Matmul::Own {
        return true;
    }
    // TF32 mode, default kernels: GEMMs whose launch (split-K blocks included) fits one wave at four blocks per SM
    // on this kernel's one-product variant (its fused epilogues and partial sums save launches), larger ones on
    // cuBLAS's TF32 GEMMs, whose Hopper kernels run big tiles faster (`swm bench gemm`: AdaLN table 1500 × 6912 ×
    // 192 127 against 150 µs; counting the splits took iCEM 1024 × 5 from 19.0 to 17.4 ms, session 16).
    one_wave(launch_blocks(rows, n, k, device), device)
}

/// Blocks of a plain (rows, n, k) launch: 64 × 64 output tiles times the split-K splits.
fn launch_blocks(rows: usize, n: usize, k: usize, device: &Device) -> usize {
    let tiles = rows.div_ceil(TILE_M).saturating_mul(n.div_ceil(TILE_N));
    tiles.saturating_mul(k.div_ceil(chunk_for(rows, n, k, device)))
}

/// Whether a launch of `blocks` blocks fits one wave at four blocks per SM.
fn one_wave(blocks: usize, device: &Device) -> bool {
    blocks <= 4 * multiprocessors(device)
}

/// Streaming multiprocessors of the first device (the split-K heuristic's target).
fn multiprocessors(device: &Device) -> usize {
    static SMS: OnceLock<usize> = OnceLock::new();
    // A host device (the heuristics' unit tests) answers an H200's count without fixing the cached one.
    let Device::Cuda(d) = device else { return 132 };
    *SMS.get_or_init(|| {
        d.cuda_stream()
            .context()
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_or(132, |v| v.max(1) as usize)
    })
}

static SPLIT_K: AtomicU8 = AtomicU8::new(1);

/// Whether swm's GEMM may split K over several blocks (the default; a split GEMM adds a reduction, or its consumer
/// adds the partial sums). Process-wide; applies to work issued (or CUDA graphs captured) afterwards. Off: every
/// block runs the whole K (benchmarks compare the two).
pub fn set_split_k(enabled: bool) {
    SPLIT_K.store(u8::from(enabled), Ordering::Relaxed);
}

/// Whether split-K is on (see [`set_split_k`]).
pub fn split_k() -> bool {
    SPLIT_K.load(Ordering::Relaxed) != 0
}

/// The K chunk of a launch: [`k_chunk`]'s, or the whole K with split-K off.
fn chunk_for(m: usize, n: usize, k: usize, device: &Device) -> usize {
    if split_k() {
        k_chunk(m, n, k, multiprocessors(device))
    } else {
        k.div_ceil(TILE_K) * TILE_K
    }
}

/// K chunk per split so that the grid gives every SM about four blocks, each split keeping ≥ 4 K steps (TD-MPC2's
/// MPPI plan on an H200: 2.48 ms at four blocks per SM, 2.53 at two, 2.56 at one) — or ≥ 2 K steps when splits of 4
/// would leave SMs without a block (a ViT layer's 257-row GEMMs: 15 to 60 tiles over a depth of 192).
fn k_chunk(m: usize, n: usize, k: usize, sms: usize) -> usize {
    let tiles = (m.div_ceil(TILE_M) * n.div_ceil(TILE_N)).max(1);
    let steps = k.div_ceil(TILE_K);
    let deep = (steps / 4).max(1);
    let most = if tiles * deep < sms { (steps / 2).max(1) } else { deep };
    let splits = (4 * sms).div_ceil(tiles).clamp(1, most);
    steps.div_ceil(splits) * TILE_K
}

fn gemm_3xtf32(x: &Tensor, w: &Tensor, epilogue: Epilogue<'_>) -> Result<Tensor> {
    let ((m, k), n) = (x.dims2()?, w.dim(0)?);
    gemm_into(x, 0, w, epilogue, Shape::plain(m, n, k))
}

/// How a launch reads its A operand and writes its result: `batches` GEMMs of (m, k) · (n, k)ᵀ over weights stacked
/// (batches, n, k) and biases (batches, n); batch b reads A at element `b · a_batch` with rows `lda` apart and
/// writes its unsplit result at element `b · o_batch` with rows `ldo` apart.
#[derive(Debug, Clone, Copy)]
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    batches: usize,
    lda: usize,
    a_batch: usize,
    ldo: usize,
    o_batch: usize,
}

impl Shape {
    /// One (m, k) · (n, k)ᵀ with contiguous operands.
    fn plain(m: usize, n: usize, k: usize) -> Self {
        Self { m, n, k, batches: 1, lda: k, a_batch: 0, ldo: n, o_batch: 0 }
    }

    /// The K chunk of its launch: the split heuristic sees every batch's tiles (their blocks share the GPU).
    fn chunk(&self, device: &Device) -> usize {
        chunk_for(self.m, self.n.div_ceil(TILE_N) * TILE_N * self.batches, self.k, device)
    }
}

/// Runs `shape`'s GEMMs with A from `x` at element `a_offset`, into a new (m, ldo)-strided result (see
/// [`run_raw`]).
fn gemm_into(x: &Tensor, a_offset: usize, w: &Tensor, epilogue: Epilogue<'_>, shape: Shape) -> Result<Tensor> {
    let out = uninit_f32(cuda(x.device())?, (shape.m, shape.ldo))?;
    if shape.m == 0 || shape.n == 0 {
        return Ok(out);
    }
    let bias = epilogue.bias().map(Raw::of).transpose()?;
    let a = Raw::of(x)?.skip(a_offset)?;
    run_raw(x.device(), a, Raw::of(w)?, bias, epilogue.code(), Raw::of(&out)?, shape)?;
    Ok(out)
}

/// Runs `shape`'s GEMMs (m, n > 0) on raw operands into `out`: unsplit GEMMs write it directly with the epilogue
/// (`mode`, 0 without a bias); split ones go through a (batches, splits, m, n) scratch and its reduction.
fn run_raw(device: &Device, x: Raw, w: Raw, bias: Option<Raw>, mode: i32, out: Raw, shape: Shape) -> Result<()> {
    let chunk = shape.chunk(device);
    let splits = shape.k.div_ceil(chunk);
    if splits == 1 {
        return launch_raw(device, x, w, bias, mode, out, shape, chunk);
    }
    let partials = uninit_f32(cuda(device)?, (shape.batches, splits, shape.m, shape.n))?;
    let p = Raw::of(&partials)?;
    launch_raw(device, x, w, None, 0, p, shape, chunk)?;
    reduce_raw(device, p, bias, mode, out, shape, splits)
}

/// A contiguous f32 operand on the device by address and length (elements): what the launches read and write.
/// Tensors give theirs through [`Raw::of`]; a `CustomOp` gives its storage's (the training Linear).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw {
    /// Device address of the first element.
    pub ptr: u64,
    /// f32 elements from `ptr` that may be read or written.
    pub len: usize,
}

impl Raw {
    /// A contiguous f32 CUDA tensor's address and length.
    fn of(t: &Tensor) -> Result<Self> {
        Ok(Self { ptr: address(t)?, len: t.elem_count() })
    }

    /// The operand from element `offset` on.
    fn skip(self, offset: usize) -> Result<Self> {
        let len = self
            .len
            .checked_sub(offset)
            .ok_or_else(|| KernelError::operand("gemm", format!("element {offset} of an operand of {}", self.len)))?;
        Ok(Self { ptr: self.ptr + (offset * 4) as u64, len })
    }
}

/// Checks that `shape`'s launch in K chunks of `chunk` stays inside its operands (lengths in f32 elements): A from
/// element `a_offset` of `x_len`, `w_len` weights, an output of `out_len` and a bias of `bias_len`.
fn check_launch(
    shape: Shape,
    chunk: usize,
    (x_len, a_offset): (usize, usize),
    w_len: usize,
    out_len: usize,
    bias_len: Option<usize>,
) -> Result<()> {
    let Shape { m, n, k, batches, lda, a_batch, ldo, o_batch } = shape;
    if m == 0 || n == 0 || k == 0 || batches == 0 || chunk == 0 {
        return Err(KernelError::operand("gemm", format!("an empty launch ({shape:?}, K chunk {chunk})")));
    }
    let splits = k.div_ceil(chunk);
    if lda < k || ldo < n || (batches > 1 && o_batch < n) {
        return Err(KernelError::operand("gemm", format!("overlapping rows or batches in {shape:?}")));
    }
    let last_a = (batches - 1) * a_batch + (m - 1) * lda + k;
    let weights = batches * n * k;
    let results = if splits == 1 { (batches - 1) * o_batch + (m - 1) * ldo + n } else { batches * splits * m * n };
    if a_offset + last_a > x_len || w_len != weights || out_len < results {
        return Err(KernelError::operand(
            "gemm",
            format!("A of {x_len} at {a_offset}, {w_len} weights, an output of {out_len} for {shape:?}"),
        ));
    }
    if let Some(len) = bias_len.filter(|&len| len != batches * n) {
        return Err(KernelError::operand("bias", format!("{len} values for {batches} × {n} outputs")));
    }
    Ok(())
}

/// Launches the GEMM kernel for `shape` (plain or strided, split-TF32 or TF32) in K chunks of `chunk` into `out`
/// ((batches, splits, m, n) partials when split, the strided result with the epilogue when not).
fn launch(
    x: &Tensor,
    a_offset: usize,
    w: &Tensor,
    epilogue: Epilogue<'_>,
    out: &Tensor,
    shape: Shape,
    chunk: usize,
) -> Result<()> {
    let bias = epilogue.bias();
    check_launch(
        shape,
        chunk,
        (x.elem_count(), a_offset),
        w.elem_count(),
        out.elem_count(),
        bias.map(Tensor::elem_count),
    )?;
    cuda(x.device())?;
    let a = Raw::of(x)?.skip(a_offset)?;
    let bias = bias.map(Raw::of).transpose()?;
    launch_raw(x.device(), a, Raw::of(w)?, bias, epilogue.code(), Raw::of(out)?, shape, chunk)
}

/// [`launch`] on raw operands (A from its first element); `mode` is the epilogue's code (0 without a bias).
#[allow(clippy::too_many_arguments)]
fn launch_raw(
    device: &Device,
    x: Raw,
    w: Raw,
    bias: Option<Raw>,
    mode: i32,
    out: Raw,
    shape: Shape,
    chunk: usize,
) -> Result<()> {
    check_launch(shape, chunk, (x.len, 0), w.len, out.len, bias.map(|b| b.len))?;
    if mode > 0 && bias.is_none() {
        return Err(KernelError::operand("bias", "an epilogue with a bias needs one"));
    }
    let Shape { m, n, k, batches, lda, a_batch, ldo, o_batch } = shape;
    let splits = k.div_ceil(chunk);
    let int = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| KernelError::operand("gemm", format!("{what} {v} exceeds the kernel's int range")))
    };
    let (m32, n32, k32, c32) = (int(m, "rows")?, int(n, "outputs")?, int(k, "depth")?, int(chunk, "K chunk")?);
    let (s32, lda32, ldo32, ob32) =
        (int(splits, "splits")?, int(lda, "lda")?, int(ldo, "ldo")?, int(o_batch, "output batch offset")?);
    let dev = cuda(device)?;
    let (xp, wp, op) = (x.ptr, w.ptr, out.ptr);
    let bp = bias.map_or(0, |b| b.ptr);
    let aligned = |v: usize| v.is_multiple_of(4);
    let vec4 =
        i32::from(aligned(k) && aligned(lda) && aligned(a_batch) && xp.is_multiple_of(16) && wp.is_multiple_of(16));
    let ab64 = a_batch as i64;
    // The plain kernel (one batch, packed rows) is compiled apart from the strided one, as it was before batches
    // existed: the small GEMMs' speed depends on its exact code. TF32 mode: one product of TF32-rounded operands.
    let plain = batches == 1 && lda == k && ldo == n;
    let grid = (n.div_ceil(TILE_N), m.div_ceil(TILE_M), batches * splits);
    // Plain grids of at most two blocks per SM run eight warps a block (32 × 16 warp tiles): twice the warps on
    // the SMs, each with half the dependent products.
    let wide = plain && grid.0 * grid.1 * grid.2 <= 2 * multiprocessors(device);
    let name = match (plain, wide, crate::device::tf32()) {
        (true, false, false) => "gemm_3xtf32_f32",
        (true, true, false) => "gemm_3xtf32_f32_w8",
        (false, _, false) => "gemm_3xtf32_strided_f32",
        (true, false, true) => "gemm_tf32_f32",
        (true, true, true) => "gemm_tf32_f32_w8",
        (false, _, true) => "gemm_tf32_strided_f32",
    };
    let f = dev.get_or_load_custom_func(name, MODULE, kernels::GEMM)?;
    let shared = CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
    launched(f.set_attribute(shared, SHARED_BYTES as i32))?;
    let mut b = f.builder();
    b.arg(&xp).arg(&wp).arg(&bp).arg(&op).arg(&m32).arg(&n32).arg(&k32).arg(&c32).arg(&mode).arg(&vec4);
    if !plain {
        b.arg(&s32).arg(&lda32).arg(&ab64).arg(&ldo32).arg(&ob32);
    }
    let cfg = LaunchConfig {
        grid_dim: (grid.0 as u32, grid.1 as u32, grid.2 as u32),
        block_dim: (if wide { 256 } else { 128 }, 1, 1),
        shared_mem_bytes: SHARED_BYTES as u32,
    };
    // SAFETY: matches gemm_{3xtf32,tf32}_f32[_w8](a, w, bias, out, m, n, k, k_chunk, mode, vec4) for a plain shape
    // (one batch, lda = k, ldo = n: the kernel takes splits = gridDim.z; the _w8 kernels with 256 threads, the
    // others with 128, as compiled) and gemm_{3xtf32,tf32}_strided_f32(…, splits, lda, a_batch, ldo, o_batch)
    // otherwise; SHARED_BYTES is the kernels' dynamic shared memory (the stages and the bias tile); every A row
    // read lies in x (checked above against its length), the weights hold batches·n·k f32 and the bias
    // batches·n when mode > 0 (checked), the output holds every write (checked: the strided result when unsplit,
    // batches·splits·m·n partials when split; splits·k_chunk ≥ k > 0, so every block has a K tile); vec4 only
    // when every 16-byte copy stays aligned.
    launched(unsafe { b.launch(cfg) })
}

/// Sums `shape`'s (batches, splits, m, n) partials into `out` (rows `ldo` apart) with the epilogue (`mode`, 0
/// without a bias).
fn reduce_raw(
    device: &Device,
    partials: Raw,
    bias: Option<Raw>,
    mode: i32,
    out: Raw,
    shape: Shape,
    splits: usize,
) -> Result<()> {
    let Shape { m, n, batches, ldo, o_batch, .. } = shape;
    if partials.len != batches * splits * m * n || out.len < (batches - 1) * o_batch + (m - 1) * ldo + n {
        return Err(KernelError::operand(
            "partials",
            format!("{} partial sums into an output of {} for {shape:?}", partials.len, out.len),
        ));
    }
    if mode > 0 && bias.is_none_or(|b| b.len != batches * n) {
        return Err(KernelError::operand("bias", format!("an epilogue's bias for {batches} × {n} outputs")));
    }
    let dev = cuda(device)?;
    let (pp, op) = (partials.ptr, out.ptr);
    let bp = bias.map_or(0, |b| b.ptr);
    let (m64, n32, s32) = (m as i64, n as i32, splits as i32);
    let (b32, ldo32, ob32) = (batches as i32, ldo as i32, o_batch as i32);
    let f = dev.get_or_load_custom_func("gemm_splitk_reduce_f32", MODULE, kernels::GEMM)?;
    let mut b = f.builder();
    b.arg(&pp).arg(&bp).arg(&op).arg(&m64).arg(&n32).arg(&s32).arg(&mode).arg(&b32).arg(&ldo32).arg(&ob32);
    // SAFETY: matches gemm_splitk_reduce_f32(partial, bias, out, m, n, splits, mode, batches, ldo, o_batch);
    // partial holds batches·splits·m·n f32 and out every strided write, the bias batches·n when mode > 0 (all
    // checked above).
    launched(unsafe { b.launch(grid(batches * m * n)) })
}

/// Whether [`linear`] would run a (rows, n, k) GEMM of contiguous f32 operands on `device` on swm's kernel (else on
/// cuBLAS): the question a `CustomOp` asks before [`linear_bias_raw`].
pub(crate) fn runs_own_kernel(rows: usize, n: usize, k: usize, device: &Device) -> bool {
    f32_matmul() != F32Matmul::Cublas && matches!(device, Device::Cuda(_)) && own_shape(rows, n, k, device)
}

/// `x · wᵀ + b` on swm's kernel for raw contiguous operands — x (rows, k), w (n, k), b (n) — into `out` (rows, n).
/// For `CustomOp`s, which hold storages rather than tensors (the training Linear's forward); ask
/// [`runs_own_kernel`] first.
///
/// # Safety
/// Each operand's `ptr` must address `len` f32 on `device`, allocated on Candle's stream of that device and alive
/// until the launched work has run (stream order: Candle's buffers are freed on the same stream); `out` must not
/// overlap the inputs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn linear_bias_raw(
    device: &Device,
    x: Raw,
    w: Raw,
    b: Raw,
    out: Raw,
    rows: usize,
    n: usize,
    k: usize,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    run_raw(device, x, w, Some(b), MODE_BIAS, out, Shape::plain(rows, n, k))
}

/// `a · b` for f32 operands (…, m, k) and (…, k, n) with the same leading (batch) dims: (…, m, n), contiguous.
///
/// Runs on swm's strided kernel (split-TF32 products: f32-class) with TF32 mode off and swm's kernel selected, for
/// CUDA operands: `a` made contiguous, `b` as its transpose made contiguous (no copy when `b` is a transposed view
/// of a contiguous tensor, as `k.t()` for attention scores). Not differentiable there: operands that track
/// gradients, TF32 mode, empty operands and shapes past the kernel's int and grid limits take Candle's matmul
/// (cuBLAS f32, or TF32 in TF32 mode). The training encoder's Q·Kᵀ and G·Vᵀ over 257 tokens,
/// which cuBLAS runs on SIMT `align1` kernels.
pub fn batched_matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ad, bd) = (a.dims(), b.dims());
    let rank = ad.len();
    // Tracked operands take Candle's differentiable matmul: this kernel's output has no backward.
    let own = !crate::device::tf32()
        && f32_matmul() != F32Matmul::Cublas
        && matches!(a.device(), Device::Cuda(_))
        && a.device().same_device(b.device())
        && !a.track_op()
        && !b.track_op()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && rank >= 2
        && bd.len() == rank
        && ad[..rank - 2] == bd[..rank - 2]
        && ad[rank - 1] == bd[rank - 2];
    if !own {
        return Ok(a.matmul(b)?);
    }
    let (m, k, n) = (ad[rank - 2], ad[rank - 1], bd[rank - 1]);
    let batches: usize = ad[..rank - 2].iter().product();
    let mut out_dims = ad.to_vec();
    out_dims[rank - 1] = n;
    if batches == 0 || m == 0 || n == 0 || k == 0 {
        return Ok(a.matmul(b)?);
    }
    let shape = Shape { m, n, k, batches, lda: k, a_batch: m * k, ldo: n, o_batch: m * n };
    let chunk = shape.chunk(a.device());
    let splits = k.div_ceil(chunk);
    // The kernel's int arguments and grid limits (rows in blocks of 64 along y, batches × splits along z).
    let fits = |v: usize| v <= i32::MAX as usize;
    if batches * splits > MAX_GRID_Z || m.div_ceil(TILE_M) > MAX_GRID_Z || !fits(m * n) || !fits(m * k) || !fits(n * k)
    {
        return Ok(a.matmul(b)?);
    }
    let out = uninit_f32(cuda(a.device())?, out_dims)?;
    let x = a.contiguous()?;
    let w = b.transpose(rank - 2, rank - 1)?.contiguous()?;
    run_raw(a.device(), Raw::of(&x)?, Raw::of(&w)?, None, 0, Raw::of(&out)?, shape)?;
    Ok(out)
}

/// The most blocks a launch's grid has along y (row tiles) or z (batches × splits).
const MAX_GRID_Z: usize = 65_535;

/// Heads side by side: x (rows, heads·k) holds each head's input as a column block; head h multiplies its block
/// by `w[h]` (w: (heads, n, k)) with bias `b[h]` (the epilogue's bias: heads·n values) and writes column block h of
/// the (rows, heads·n) result — one launch for an ensemble layer. On swm's kernel (split-TF32, or one TF32
/// product in TF32 mode) for contiguous f32 CUDA operands; elsewhere (cuBLAS selected, host or non-contiguous
/// tensors) as a cuBLAS matmul per head.
pub fn linear_heads(x: &Tensor, w: &Tensor, epilogue: Epilogue<'_>) -> Result<Tensor> {
    let (heads, n, k) = w.dims3()?;
    let (rows, width) = x.dims2()?;
    if width != heads * k {
        return Err(KernelError::operand("x", format!("{:?} for {heads} heads of a ({n}, {k}) weight", x.dims())));
    }
    if own_kernel(x, w, epilogue.bias()) && heads > 0 && k > 0 {
        let shape = Shape { m: rows, n, k, batches: heads, lda: width, a_batch: k, ldo: heads * n, o_batch: n };
        return gemm_into(x, 0, w, epilogue, shape);
    }
    let bias = epilogue.bias().map(|b| b.reshape((heads, n))).transpose()?;
    let outs = (0..heads)
        .map(|h| {
            let xh = x.narrow(1, h * k, k)?.contiguous()?;
            let bh = bias.as_ref().map(|b| b.get(h)).transpose()?;
            linear(&xh, &w.get(h)?, epilogue.with_bias(bh.as_ref()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&outs, 1)?)
}

/// `epilogue(x[:, from..from + k] · wᵀ)` for x (rows, width) and w (n, k): a column block of a wider activation
/// (two MLPs' hidden layers computed side by side) without copying it out. Runs where [`linear_heads`] runs.
pub fn linear_columns(x: &Tensor, from: usize, w: &Tensor, epilogue: Epilogue<'_>) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let (rows, width) = x.dims2()?;
    if from + k > width {
        return Err(KernelError::operand("x", format!("{:?}: columns {from}..{} out of range", x.dims(), from + k)));
    }
    if own_kernel(x, w, epilogue.bias()) && k > 0 {
        let shape = Shape { m: rows, n, k, batches: 1, lda: width, a_batch: 0, ldo: n, o_batch: 0 };
        return gemm_into(x, from, w, epilogue, shape);
    }
    linear(&x.narrow(1, from, k)?.contiguous()?, w, epilogue)
}

/// A linear layer's (rows, heads·width) output, possibly left as split-K partial sums plus a bias for a consumer
/// kernel that adds them as it reads (in split order, then the bias: the values the reduction kernel would write).
/// Head h of row i sums `splits` values at `partials[h·head_stride + i·row_stride + s·split_stride + c]`, c < width.
#[derive(Debug, Clone)]
pub struct Unreduced {
    /// The partial sums (or the whole output, `splits` = 1).
    pub(crate) partials: Tensor,
    /// The bias still to add (heads·width values); None when the GEMM applied it.
    pub(crate) bias: Option<Tensor>,
    pub(crate) rows: usize,
    pub(crate) heads: usize,
    pub(crate) width: usize,
    pub(crate) splits: usize,
    /// Element strides of a split, a head and a row.
    pub(crate) split_stride: usize,
    pub(crate) head_stride: usize,
    pub(crate) row_stride: usize,
}

impl Unreduced {
    /// A whole contiguous (rows, heads·width) output: one partial sum, no bias.
    pub fn contiguous(y: Tensor, heads: usize) -> Result<Self> {
        if !y.is_contiguous() || heads == 0 || !y.dims2()?.1.is_multiple_of(heads) {
            return Err(KernelError::operand("y", format!("{:?} as {heads} contiguous heads", y.dims())));
        }
        Self::whole(y, heads)
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Heads side by side in a row.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Columns per head.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Partial sums per value (1: the output is whole).
    pub fn splits(&self) -> usize {
        self.splits
    }

    /// Whether the bias is still to add (by the consumer kernel, or [`Unreduced::reduce`]).
    pub fn bias_pending(&self) -> bool {
        self.bias.is_some()
    }

    /// Checks what a consumer kernel reads of `heads` heads of `width` values: f32 partials (and bias) on one
    /// device, contiguous, every read inside them (extent computed without overflow).
    pub(crate) fn check(&self, heads: usize, width: usize) -> Result<()> {
        let f32 = |t: &Tensor| t.dtype() == DType::F32 && t.is_contiguous();
        let bias_ok = self.bias.as_ref().is_none_or(|b| {
            f32(b) && b.elem_count() == heads * width && b.device().same_device(self.partials.device())
        });
        let extent = (|| {
            let last = |count: usize, stride: usize| count.checked_sub(1)?.checked_mul(stride);
            last(self.heads, self.head_stride)?
                .checked_add(last(self.rows.max(1), self.row_stride)?)?
                .checked_add(last(self.splits, self.split_stride)?)?
                .checked_add(self.width)
        })();
        let inside = self.rows == 0 || extent.is_some_and(|e| e <= self.partials.elem_count());
        if self.heads != heads || self.width != width || self.splits == 0 || !f32(&self.partials) || !bias_ok || !inside
        {
            return Err(KernelError::operand(
                "unreduced",
                format!(
                    "{:?} ({:?}) as {} rows of {} heads × {} in {} splits: expected {heads} heads × {width} f32",
                    self.partials.dims(),
                    self.partials.dtype(),
                    self.rows,
                    self.heads,
                    self.width,
                    self.splits
                ),
            ));
        }
        Ok(())
    }

    /// Checks a one-head result of `rows` × `width` packed as (splits, rows, width) back to back with no bias left:
    /// what the residual kernels read (their own bias is a separate operand).
    pub(crate) fn check_packed(&self, rows: usize, width: usize) -> Result<()> {
        self.check(1, width)?;
        let packed = self.row_stride == width && (self.splits == 1 || self.split_stride == rows * width);
        if self.rows != rows || !packed || self.bias.is_some() {
            return Err(KernelError::operand(
                "y",
                format!(
                    "{:?} as {} rows of {} in {} splits: expected {rows} packed rows of {width}, no bias",
                    self.partials.dims(),
                    self.rows,
                    self.width,
                    self.splits
                ),
            ));
        }
        Ok(())
    }

    fn whole(y: Tensor, heads: usize) -> Result<Self> {
        let (rows, all) = y.dims2()?;
        let width = all / heads.max(1);
        Ok(Self {
            partials: y,
            bias: None,
            rows,
            heads,
            width,
            splits: 1,
            split_stride: 0,
            head_stride: width,
            row_stride: all,
        })
    }

    /// The summed (rows, heads·width) output, with Candle's sum (its order, within f32 rounding of the reduction
    /// kernel's) and bias add when split: for the paths that want the values (parity), not the hot path's consumers.
    pub fn reduce(&self) -> Result<Tensor> {
        let y = if self.splits == 1 {
            self.partials.clone()
        } else if self.head_stride == self.width {
            // Column blocks of one split GEMM: (splits, rows, heads·width).
            self.partials.reshape((self.splits, self.rows, self.heads * self.width))?.sum(0)?
        } else {
            // Batched heads: (heads, splits, rows, width) → (rows, heads·width).
            let p = self.partials.reshape((self.heads, self.splits, self.rows, self.width))?.sum(1)?;
            p.transpose(0, 1)?.contiguous()?.reshape((self.rows, self.heads * self.width))?
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// `x · wᵀ + bias` for x (rows, K) and w (heads·width, K), as `heads` column blocks of width, left unreduced when
/// split over K (see [`Unreduced`]). Where [`linear`] runs it on cuBLAS (TF32 mode's larger GEMMs), the product is
/// whole and its bias left to the consumer.
pub fn linear_unreduced(x: &Tensor, w: &Tensor, bias: &Tensor, heads: usize) -> Result<Unreduced> {
    let (n, k) = w.dims2()?;
    let (rows, kx) = x.dims2()?;
    if kx != k || heads == 0 || !n.is_multiple_of(heads) || bias.dims() != [n] {
        return Err(KernelError::operand(
            "x",
            format!("{:?} by a {:?} weight with bias {:?} as {heads} heads", x.dims(), w.dims(), bias.dims()),
        ));
    }
    if rows == 0 || n == 0 || !own_kernel(x, w, Some(bias)) {
        return Unreduced::whole(linear(x, w, Epilogue::Bias(bias))?, heads);
    }
    if !use_tensor_cores(x, w, Some(bias), k) {
        // TF32 mode's larger GEMMs run on cuBLAS, which has no bias epilogue: the consumer adds the bias as it
        // reads (the same f32 add), instead of a broadcast add over the whole output (20 µs for TD-MPC2's
        // 512 × 2560 Q-ensemble layer, more than the GEMM).
        let mut y = Unreduced::whole(linear(x, w, Epilogue::None)?, heads)?;
        y.bias = Some(bias.clone());
        return Ok(y);
    }
    unreduced(x, 0, w, Some(bias), Shape::plain(rows, n, k), heads)
}

/// [`linear_heads`] left unreduced when split over K (see [`Unreduced`]).
pub fn linear_heads_unreduced(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Unreduced> {
    let (heads, n, k) = w.dims3()?;
    let (rows, width) = x.dims2()?;
    if width != heads * k || bias.dims() != [heads * n] {
        return Err(KernelError::operand(
            "x",
            format!("{:?} with bias {:?} for {heads} heads of a ({n}, {k}) weight", x.dims(), bias.dims()),
        ));
    }
    if !own_kernel(x, w, Some(bias)) || heads == 0 || k == 0 || rows == 0 || n == 0 {
        return Unreduced::whole(linear_heads(x, w, Epilogue::Bias(bias))?, heads);
    }
    let shape = Shape { m: rows, n, k, batches: heads, lda: width, a_batch: k, ldo: heads * n, o_batch: n };
    unreduced(x, 0, w, Some(bias), shape, heads)
}

/// [`linear_columns`] left unreduced when split over K (see [`Unreduced`]).
pub fn linear_columns_unreduced(x: &Tensor, from: usize, w: &Tensor, bias: &Tensor) -> Result<Unreduced> {
    let (n, k) = w.dims2()?;
    let (rows, width) = x.dims2()?;
    if from + k > width || bias.dims() != [n] {
        return Err(KernelError::operand(
            "x",
            format!("{:?}: columns {from}..{} with bias {:?}", x.dims(), from + k, bias.dims()),
        ));
    }
    if !own_kernel(x, w, Some(bias)) || k == 0 || rows == 0 || n == 0 {
        return Unreduced::whole(linear_columns(x, from, w, Epilogue::Bias(bias))?, 1);
    }
    let shape = Shape { m: rows, n, k, batches: 1, lda: width, a_batch: 0, ldo: n, o_batch: 0 };
    unreduced(x, from, w, Some(bias), shape, 1)
}

/// Runs `shape`'s GEMMs (m, n > 0): unsplit, the whole output with the bias applied; split, the partial sums
/// ((batches, splits, m, n), or (splits, m, n) of column blocks for one batch) and the bias still to add.
fn unreduced(
    x: &Tensor,
    a_offset: usize,
    w: &Tensor,
    bias: Option<&Tensor>,
    shape: Shape,
    heads: usize,
) -> Result<Unreduced> {
    let dev = cuda(x.device())?;
    let chunk = shape.chunk(x.device());
    let splits = shape.k.div_ceil(chunk);
    let (m, n, batches) = (shape.m, shape.n, shape.batches);
    if splits == 1 {
        let out = uninit_f32(dev, (m, shape.ldo))?;
        launch(x, a_offset, w, bias.map_or(Epilogue::None, Epilogue::Bias), &out, shape, chunk)?;
        return Unreduced::whole(out, heads);
    }
    let partials = uninit_f32(dev, batches * splits * m * n)?;
    launch(x, a_offset, w, Epilogue::None, &partials, shape, chunk)?;
    let (width, head_stride) = if batches == 1 { (n / heads, n / heads) } else { (n, splits * m * n) };
    Ok(Unreduced {
        partials,
        bias: bias.cloned(),
        rows: m,
        heads,
        width,
        splits,
        split_stride: m * n,
        head_stride,
        row_stride: n,
    })
}

/// Whether a matmul runs on swm's kernel: contiguous f32 CUDA operands and swm's kernel selected.
fn own_kernel(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> bool {
    let f32s = x.dtype() == DType::F32 && w.dtype() == DType::F32 && bias.is_none_or(|b| b.dtype() == DType::F32);
    let contiguous = x.is_contiguous() && w.is_contiguous() && bias.is_none_or(|b| b.is_contiguous());
    f32_matmul() != F32Matmul::Cublas && f32s && contiguous && matches!(x.device(), Device::Cuda(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_mode_keeps_one_wave_launches_on_this_kernel() {
        // 132 SMs (the host default): 528 blocks of 64 × 64.
        let cpu = Device::Cpu;
        let fits = |m, n, k| one_wave(launch_blocks(m, n, k, &cpu), &cpu);
        assert!(fits(300, 3072, 192)); // 240 blocks: the rollout's QKV
        assert!(fits(900, 2048, 192)); // 480: fc1 over a full window
        assert!(fits(900, 192, 2048)); // 45 tiles × 11 splits: fc2 over a full window
        assert!(fits(512, 512, 512)); // TD-MPC2's layers, 64 tiles × 4 splits
        assert!(!fits(900, 3072, 192)); // 720
        assert!(!fits(1500, 6912, 192)); // the AdaLN table
        assert!(!fits(3072, 192, 2048)); // 144 tiles × 4 splits: a 1024-candidate window's fc2

        // Splits count per row tile: 2 × 50 tiles × 6 splits = 600 blocks, though 100 · 6 rows would be 500.
        assert_eq!(launch_blocks(100, 3200, 2048, &cpu), 600);
        assert!(!fits(100, 3200, 2048));
        assert_eq!(launch_blocks(0, 5, 64, &cpu), 0);
        assert!(fits(0, 5, 64));
    }

    #[test]
    fn split_k_fills_the_gpu_and_covers_k() {
        for (m, n, k) in [(300, 192, 2048), (900, 192, 1024), (300, 3072, 192), (1, 2048, 192), (7, 5, 4)] {
            let chunk = k_chunk(m, n, k, 132);
            let splits = k.div_ceil(chunk);
            assert_eq!(chunk % TILE_K, 0);
            assert!(splits * chunk >= k && (splits - 1) * chunk < k, "{m}x{n}x{k}: {splits} x {chunk}");
            let tiles = m.div_ceil(TILE_M) * n.div_ceil(TILE_N);
            let min_steps = if tiles * (k.div_ceil(TILE_K) / 4).max(1) < 132 { 2 } else { 4 };
            assert!(chunk >= min_steps * TILE_K || splits == 1, "{m}x{n}x{k}: chunk {chunk}");
        }
        // Grids that splits of 4 steps leave short of one block per SM split down to 2 steps: a ViT layer's
        // 257 × 192 × 192 output projection (15 tiles) in 3 splits, not 1.
        assert_eq!(192usize.div_ceil(k_chunk(257, 192, 192, 132)), 3);
        assert_eq!(768usize.div_ceil(k_chunk(257, 192, 768, 132)), 12);
        // The narrow 2048-deep projections are split to give 132 SMs about four blocks each.
        assert_eq!(2048usize.div_ceil(k_chunk(300, 192, 2048, 132)), 16);
        // (15 tiles in 8 splits of 4 steps would leave 12 SMs idle: 16 splits of 2.)
        assert_eq!(1024usize.div_ceil(k_chunk(300, 192, 1024, 132)), 16);
        assert_eq!(2048usize.div_ceil(k_chunk(900, 192, 2048, 132)), 11);
        assert_eq!(192usize.div_ceil(k_chunk(300, 3072, 192, 132)), 1);
    }

    #[test]
    fn residual_kernels_take_only_packed_bias_free_partials() {
        let dev = Device::Cpu;
        // A host matmul comes back whole: one packed partial, no bias.
        let x = Tensor::randn(0f32, 1.0, (6, 8), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (5, 8), &dev).unwrap();
        let y = linear_partials(&x, &w).unwrap();
        assert_eq!((y.rows(), y.heads(), y.width(), y.splits()), (6, 1, 5, 1));
        y.check_packed(6, 5).unwrap();
        assert!(y.check_packed(5, 5).is_err() && y.check_packed(6, 4).is_err());
        // Split partials back to back pass; a bias still to add, or rows of two heads, do not.
        let split = Unreduced {
            partials: Tensor::zeros(3 * 6 * 5, DType::F32, &dev).unwrap(),
            bias: None,
            rows: 6,
            heads: 1,
            width: 5,
            splits: 3,
            split_stride: 30,
            head_stride: 5,
            row_stride: 5,
        };
        split.check_packed(6, 5).unwrap();
        let biased = Unreduced { bias: Some(Tensor::zeros(5, DType::F32, &dev).unwrap()), ..split.clone() };
        assert!(biased.check_packed(6, 5).is_err());
        let wide = Unreduced { row_stride: 10, ..split };
        assert!(wide.check_packed(6, 5).is_err());
    }

    #[test]
    fn split_k_off_runs_the_whole_depth_in_one_chunk() {
        // The only test that touches the switch; restored before any assertion can fail.
        let (on, off) = {
            let on = chunk_for(300, 192, 2048, &Device::Cpu);
            set_split_k(false);
            let off = (chunk_for(300, 192, 2048, &Device::Cpu), chunk_for(7, 5, 4, &Device::Cpu));
            set_split_k(true);
            (on, off)
        };
        assert_eq!(2048usize.div_ceil(on), 16);
        assert_eq!(off, (2048, TILE_K));
        assert!(split_k());
    }

    #[test]
    fn batched_matmul_off_the_device_is_candle_s_matmul() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, (2, 3, 6, 4), &dev).unwrap();
        let got = batched_matmul(&a, &b.t().unwrap()).unwrap();
        let want = a.matmul(&b.t().unwrap()).unwrap();
        assert_eq!(got.dims(), [2, 3, 5, 6]);
        let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        // Mismatched operands are Candle's error, not a panic.
        assert!(batched_matmul(&a, &b).is_err());
    }

    #[test]
    fn launches_refuse_overlapping_strides_and_short_operands_before_touching_a_device() {
        let t = |n: usize| Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
        let (x, w, out) = (t(4 * 8), t(2 * 3 * 8), t(4 * 6));
        let good = Shape { m: 4, n: 3, k: 8, batches: 2, lda: 16, a_batch: 8, ldo: 6, o_batch: 3 };
        // A host tensor passes the checks and is refused only as a device: the refusals below are the checks'.
        let operand = |r: Result<()>| match r {
            Err(KernelError::Operand { operand, .. }) => operand,
            other => panic!("expected an operand error, got {other:?}"),
        };
        assert_eq!(operand(launch(&t(4 * 16), 0, &w, Epilogue::None, &out, good, 32)), "device");
        let refused = |shape: Shape, x: &Tensor, out: &Tensor| {
            operand(launch(x, 0, &w, Epilogue::None, out, shape, 32)) == "gemm"
        };
        // Rows of A closer than K, output rows or batches that overlap.
        assert!(refused(Shape { lda: 4, ..good }, &t(4 * 16), &out));
        assert!(refused(Shape { ldo: 2, ..good }, &t(4 * 16), &out));
        assert!(refused(Shape { o_batch: 1, ..good }, &t(4 * 16), &out));
        // A shorter than its last row, an output shorter than its last write, a bias of another length.
        assert!(refused(good, &x, &out));
        assert!(refused(good, &t(4 * 16), &t(4 * 6 - 1)));
        let bias = t(5);
        assert_eq!(operand(launch(&t(4 * 16), 0, &w, Epilogue::Bias(&bias), &out, good, 32)), "bias");
        // Empty launches (no rows, outputs, depth or batches) and a zero K chunk are refused before any arithmetic
        // on them.
        for empty in
            [Shape { m: 0, ..good }, Shape { n: 0, ..good }, Shape { k: 0, ..good }, Shape { batches: 0, ..good }]
        {
            assert!(refused(empty, &t(4 * 16), &out), "{empty:?}");
        }
        assert_eq!(operand(launch(&t(4 * 16), 0, &w, Epilogue::None, &out, good, 0)), "gemm");
    }
}
