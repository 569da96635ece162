//! Differentiable fused ops for training (`kernels/train.cu`): row softmax, LayerNorm, exact GELU and a Linear
//! layer as Candle `CustomOp`s whose backward is a fused kernel (or cuBLAS GEMMs). Composed from Candle's
//! primitive ops, each of these is five to fifteen full-tensor kernels forward and backward — and Candle's
//! backward adds every gradient contribution into a fresh zero tensor, one more full-tensor kernel per graph
//! edge: LeWM's training step spent most of its time there. f32, contiguous inputs, CUDA only.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D,
};
use cudarc::driver::{CudaView, DevicePtr, LaunchConfig, PushKernelArg};

use super::gemm::{self, Raw};
use super::launch::{cuda_only, f32_view as view};
use crate::kernels;

/// Rows of one block in `layer_norm_bwd_params_f32` (its `LN_CHUNK`).
const LN_CHUNK: usize = 128;

/// (rows, cols) of a tensor viewed as rows of its last dim.
fn rows_cols(layout: &Layout) -> candle_core::Result<(usize, usize)> {
    let cols = *layout.dims().last().unwrap_or(&0);
    if cols == 0 || cols > i32::MAX as usize {
        candle_core::bail!("swm training kernels: a last dim of {cols}");
    }
    Ok((layout.shape().elem_count() / cols, cols))
}

fn same(op: &str, a: &Layout, b: &Layout) -> candle_core::Result<()> {
    if a.dims() != b.dims() {
        candle_core::bail!("{op}: shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    Ok(())
}

/// One warp per row, 8 warps per block.
fn warp_rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(8).clamp(1, 1 << 20) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A scalar kernel argument.
enum Scalar {
    I64(i64),
    I32(i32),
    F32(f32),
}

/// Launches `kernel` of `train.cu` and returns its fresh f32 output of `len` values: the kernel takes the
/// `inputs` (`const float*`), the output (`float*`), then the `scalars`, in this order.
fn launch_fresh(
    dev: &CudaDevice,
    kernel: &str,
    inputs: &[CudaView<'_, f32>],
    len: usize,
    scalars: &[Scalar],
    cfg: LaunchConfig,
) -> candle_core::Result<CudaStorage> {
    // SAFETY: every caller's kernel writes all `len` elements before the buffer is read.
    let out = unsafe { dev.alloc::<f32>(len) }?;
    let func = dev.get_or_load_custom_func(kernel, "swm_train", kernels::TRAIN)?;
    let mut b = func.builder();
    for input in inputs {
        b.arg(input);
    }
    b.arg(&out);
    for scalar in scalars {
        match scalar {
            Scalar::I64(v) => b.arg(v),
            Scalar::I32(v) => b.arg(v),
            Scalar::F32(v) => b.arg(v),
        };
    }
    // SAFETY: each caller states its kernel's signature (inputs, output, scalars, in this order) and checks the
    // inputs' sizes against `len` and the scalars.
    unsafe { b.launch(cfg) }.map_err(cuda_err)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// A one-warp-per-row kernel over (rows, cols): `kernel(inputs…, out, long long rows, int cols[, float eps])`.
fn rows_kernel(
    dev: &CudaDevice,
    kernel: &str,
    inputs: &[CudaView<'_, f32>],
    (rows, cols): (usize, usize),
    eps: Option<f32>,
) -> candle_core::Result<CudaStorage> {
    let mut scalars = vec![Scalar::I64(rows as i64), Scalar::I32(cols as i32)];
    scalars.extend(eps.map(Scalar::F32));
    launch_fresh(dev, kernel, inputs, rows * cols, &scalars, warp_rows(rows))
}

/// Launches the element-wise `kernel(inputs…, out, long long n)` of `train.cu`, which moves float4s where its views
/// are 16-byte aligned: one thread per four of the `n` values. Returns its fresh output.
fn launch_quads(
    dev: &CudaDevice,
    kernel: &str,
    inputs: &[CudaView<'_, f32>],
    n: usize,
) -> candle_core::Result<CudaStorage> {
    launch_fresh(dev, kernel, inputs, n, &[Scalar::I64(n as i64)], elements(n.div_ceil(4)))
}

fn elements(n: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(n.clamp(1, 1 << 30) as u32)
}

fn cuda_err(e: cudarc::driver::DriverError) -> candle_core::Error {
    candle_core::Error::Cuda(Box::new(e))
}

/// Softmax over the first `valid` columns of each row (all of them when None), 0 in the rest.
struct Softmax {
    valid: Option<usize>,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "swm-softmax-rows"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        // softmax_rows_f32(const float* x, float* y, long long rows, int cols, int valid); x holds rows·cols,
        // valid ≤ cols.
        let (rows, cols) = rows_cols(xl)?;
        let valid = self.valid.unwrap_or(cols);
        if valid > cols {
            candle_core::bail!("softmax over the first {valid} of {cols} columns");
        }
        let scalars = [Scalar::I64(rows as i64), Scalar::I32(cols as i32), Scalar::I32(valid as i32)];
        let out =
            launch_fresh(x.device(), "softmax_rows_f32", &[view(x, xl)?], rows * cols, &scalars, warp_rows(rows))?;
        Ok((out, xl.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(softmax_backward(y, g)?))
    }
}

struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "swm-softmax-rows-bwd"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(
        &self,
        y: &CudaStorage,
        yl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        // softmax_rows_bwd_f32(const float* y, const float* g, float* dx, long long rows, int cols); y and g hold
        // rows·cols (shapes checked equal).
        same(self.name(), yl, gl)?;
        let dims = rows_cols(yl)?;
        let out = rows_kernel(y.device(), "softmax_rows_bwd_f32", &[view(y, yl)?, view(g, gl)?], dims, None)?;
        Ok((out, yl.shape().clone()))
    }
}

struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "swm-layer-norm"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        gamma: &CudaStorage,
        gl: &Layout,
        beta: &CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, cols) = rows_cols(xl)?;
        if gl.dims() != [cols] || bl.dims() != [cols] {
            candle_core::bail!("swm-layer-norm: γ {:?} and β {:?} for rows of {cols}", gl.dims(), bl.dims());
        }
        // layer_norm_f32(const float* x, const float* gamma, const float* beta, float* y, long long rows, int cols,
        // float eps); x holds rows·cols, γ and β cols (checked above).
        let inputs = [view(x, xl)?, view(gamma, gl)?, view(beta, bl)?];
        let out = rows_kernel(x.device(), "layer_norm_f32", &inputs, (rows, cols), Some(self.eps))?;
        Ok((out, xl.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dgamma, dbeta) = layer_norm_backward(x, g, gamma, self.eps)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

struct LayerNormDx {
    eps: f32,
}

impl CustomOp3 for LayerNormDx {
    fn name(&self) -> &'static str {
        "swm-layer-norm-bwd-dx"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
        gamma: &CudaStorage,
        gml: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        same(self.name(), xl, gl)?;
        let (rows, cols) = rows_cols(xl)?;
        if gml.dims() != [cols] {
            candle_core::bail!("swm-layer-norm-bwd-dx: γ {:?} for rows of {cols}", gml.dims());
        }
        // layer_norm_bwd_dx_f32(const float* x, const float* g, const float* gamma, float* dx, long long rows,
        // int cols, float eps); x and g hold rows·cols, γ cols (checked above).
        let inputs = [view(x, xl)?, view(g, gl)?, view(gamma, gml)?];
        let out = rows_kernel(x.device(), "layer_norm_bwd_dx_f32", &inputs, (rows, cols), Some(self.eps))?;
        Ok((out, xl.shape().clone()))
    }
}

struct LayerNormParams {
    eps: f32,
}

impl CustomOp2 for LayerNormParams {
    fn name(&self) -> &'static str {
        "swm-layer-norm-bwd-params"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        same(self.name(), xl, gl)?;
        let (rows, cols) = rows_cols(xl)?;
        let blocks = rows.div_ceil(LN_CHUNK).max(1);
        if blocks > i32::MAX as usize {
            candle_core::bail!("swm-layer-norm-bwd-params: {rows} rows");
        }
        // layer_norm_bwd_params_f32(const float* x, const float* g, float* partial, long long rows, int cols,
        // int chunk, float eps); x and g hold rows·cols; one block per `chunk` (= LN_CHUNK, its shared arrays'
        // size) rows writes its 2·cols partial sums, so the output holds blocks·2·cols.
        let scalars =
            [Scalar::I64(rows as i64), Scalar::I32(cols as i32), Scalar::I32(LN_CHUNK as i32), Scalar::F32(self.eps)];
        let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let inputs = [view(x, xl)?, view(g, gl)?];
        let out = launch_fresh(x.device(), "layer_norm_bwd_params_f32", &inputs, blocks * 2 * cols, &scalars, cfg)?;
        Ok((out, Shape::from((blocks, 2 * cols))))
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "swm-gelu"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        // gelu_f32(const float* x, float* y, long long n); x holds n.
        let n = xl.shape().elem_count();
        let out = launch_quads(x.device(), "gelu_f32", &[view(x, xl)?], n)?;
        Ok((out, xl.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(gelu_backward(x, g)?))
    }
}

struct GeluBwd;

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "swm-gelu-bwd"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        // gelu_bwd_f32(const float* x, const float* g, float* dx, long long n); x and g hold n (shapes checked
        // equal).
        same(self.name(), xl, gl)?;
        let n = xl.shape().elem_count();
        let inputs = [view(x, xl)?, view(g, gl)?];
        let out = launch_quads(x.device(), "gelu_bwd_f32", &inputs, n)?;
        Ok((out, xl.shape().clone()))
    }
}

/// `x·Wᵀ + b` over the last dim: forward swm's GEMM with the bias in its epilogue (split-K: and its reduction) where
/// [`gemm::linear`] would run it (else a cuBLAS GEMM and an in-place bias kernel); backward `g·W` (swm's GEMM
/// likewise), `gᵀ·x` and `1ᵀ·g` (cuBLAS).
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "swm-linear"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        b: &CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, k) = rows_cols(xl)?;
        let (n, wk) = wl.shape().dims2()?;
        if wk != k || bl.dims() != [n] || !xl.is_contiguous() || !wl.is_contiguous() || !bl.is_contiguous() {
            candle_core::bail!("swm-linear: x {:?}, W {:?}, b {:?}", xl.dims(), wl.dims(), bl.dims());
        }
        let dev = x.device().clone();
        let mut dims = xl.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        // swm's GEMM with the bias in its epilogue where `gemm::linear` would run it (f32: its split-TF32
        // products, f32-class; TF32 mode: its one-wave launches), else cuBLAS and the bias kernel.
        let device = candle_core::Device::Cuda(dev.clone());
        if gemm::runs_own_kernel(rows, n, k, &device) {
            let stream = dev.cuda_stream();
            let raw = |s: &CudaStorage, l: &Layout, len: usize| -> candle_core::Result<Raw> {
                let v = view(s, l)?;
                if v.len() < len {
                    candle_core::bail!("swm-linear: {len} values from a storage of {}", v.len());
                }
                let ptr = v.device_ptr(&stream).0;
                Ok(Raw { ptr, len })
            };
            let (xr, wr, br) = (raw(x, xl, rows * k)?, raw(w, wl, n * k)?, raw(b, bl, n)?);
            // SAFETY: linear_bias_raw writes every element before the buffer is read.
            let y = unsafe { dev.alloc::<f32>(rows * n) }?;
            let out = Raw { ptr: y.device_ptr(&stream).0, len: rows * n };
            // SAFETY: x, w and b address rows·k, n·k and n f32 of their storages from the layouts' offsets (checked
            // just above) and `out` the fresh rows·n buffer `y`, all on this device's stream, which orders their
            // frees after the launch; `y` overlaps nothing.
            unsafe { gemm::linear_bias_raw(&device, xr, wr, br, out, rows, n, k) }.map_err(candle_core::Error::wrap)?;
            return Ok((CudaStorage::wrap_cuda_slice(y, dev), Shape::from(dims)));
        }
        let lhs = Layout::contiguous_with_offset((rows, k), xl.start_offset());
        let mut y = x.matmul(w, (1, rows, n, k), &lhs, &wl.transpose(0, 1)?)?;
        let func = dev.get_or_load_custom_func("bias_add_f32", "swm_train", kernels::TRAIN)?;
        let b_v = view(b, bl)?;
        let (r, c) = (rows as i64, n as i32);
        let out = y.as_cuda_slice_mut::<f32>()?;
        let mut builder = func.builder();
        builder.arg(out).arg(&b_v).arg(&r).arg(&c);
        // SAFETY: bias_add_f32(float* y, const float* b, long long rows, int cols); y is the GEMM's fresh
        // (rows, n) output, b holds n (checked above).
        unsafe { builder.launch(elements(rows * n)) }.map_err(cuda_err)?;
        Ok((y, Shape::from(dims)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = linear_backward(x, w, g)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// A contiguous (d0, d1, d2, d) copy of rows of `d` floats read at `i0·s0 + i1·s1 + i2·s2` from a contiguous input
/// (rows `i2 ≥ valid` written as zeros): `gather_rows_f32`.
struct GatherRows {
    dims: [usize; 3],
    d: usize,
    strides: [usize; 3],
    valid: usize,
}

impl CustomOp1 for GatherRows {
    fn name(&self) -> &'static str {
        "swm-gather-rows"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }
    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let ([d0, d1, d2], d, [s0, s1, s2]) = (self.dims, self.d, self.strides);
        let rows_read = d2.min(self.valid);
        // The last element read must lie in the input (empty outputs read nothing).
        let reach =
            if d0 * d1 * rows_read * d == 0 { 0 } else { (d0 - 1) * s0 + (d1 - 1) * s1 + (rows_read - 1) * s2 + d };
        if reach > xl.shape().elem_count() {
            candle_core::bail!("swm-gather-rows: reads up to {reach} of {:?}", xl.dims());
        }
        let src = view(x, xl)?;
        let aligned = |v: usize| v.is_multiple_of(4);
        // The kernel also checks both pointers' 16-byte alignment.
        let vec4 = aligned(d) && aligned(s0) && aligned(s1) && aligned(s2);
        let len = [d1, d2, d]
            .iter()
            .try_fold(d0, |acc, &v| acc.checked_mul(v))
            .filter(|&len| i64::try_from(len).is_ok() && i32::try_from(d).is_ok())
            .ok_or_else(|| candle_core::Error::Msg(format!("swm-gather-rows: {:?} × {d} is too large", self.dims)))?;
        let units = if vec4 { len / 4 } else { len };
        let scalars = [
            Scalar::I64(d0 as i64),
            Scalar::I64(d1 as i64),
            Scalar::I64(d2 as i64),
            Scalar::I32(d as i32),
            Scalar::I64(s0 as i64),
            Scalar::I64(s1 as i64),
            Scalar::I64(s2 as i64),
            Scalar::I64(self.valid as i64),
            Scalar::I32(i32::from(vec4)),
        ];
        // gather_rows_f32(const float* src, float* dst, long long d0, d1, d2, int d, long long s0, s1, s2,
        // long long valid, int vec4); every read lies in x (checked above), the output holds d0·d1·d2·d.
        let out = launch_fresh(x.device(), "gather_rows_f32", &[src], len, &scalars, elements(units))?;
        Ok((out, Shape::from((d0, d1, d2, d))))
    }
}

/// The attention's head split: (N, T, heads·d) → (N, heads, `to`, d) contiguous, rows T..`to` zero (`to ≥ T`: the
/// tokens padded to a multiple of 4). One coalesced copy; not differentiable (the hand-written backward's tape).
pub fn split_heads(x: &Tensor, heads: usize, to: usize) -> candle_core::Result<Tensor> {
    f32_cuda("split_heads", x)?;
    let (n, t, e) = x.dims3()?;
    if heads == 0 || e % heads != 0 || to < t {
        candle_core::bail!("split_heads: {:?} into {heads} heads over {to} rows", x.dims());
    }
    let d = e / heads;
    let op = GatherRows { dims: [n, heads, to], d, strides: [t * e, d, e], valid: t };
    x.contiguous()?.apply_op1_no_bwd(&op)
}

/// The heads merged back: (N, heads, T', d) → (N, `t`, heads·d) contiguous from the first `t ≤ T'` rows. One
/// coalesced copy; not differentiable.
pub fn merge_heads(x: &Tensor, t: usize) -> candle_core::Result<Tensor> {
    f32_cuda("merge_heads", x)?;
    let (n, heads, tp, d) = x.dims4()?;
    if t > tp {
        candle_core::bail!("merge_heads: the first {t} rows of {:?}", x.dims());
    }
    let op = GatherRows { dims: [n, t, heads], d, strides: [heads * tp * d, d, tp * d], valid: heads };
    x.contiguous()?.apply_op1_no_bwd(&op)?.reshape((n, t, heads * d))
}

fn f32_cuda(what: &str, t: &Tensor) -> candle_core::Result<()> {
    if t.dtype() != DType::F32 || !t.device().is_cuda() {
        candle_core::bail!(
            "{what}: the fused training ops take f32 CUDA tensors, got {:?} on {:?}",
            t.dtype(),
            t.device()
        );
    }
    Ok(())
}

/// Softmax over the last dim, differentiable (`−∞` entries give 0; a row of them gives 0s).
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    f32_cuda("softmax", x)?;
    x.contiguous()?.apply_op1(Softmax { valid: None })
}

/// Softmax over the first `valid` values of each row of the last dim, 0 in the remaining (padding) columns; not
/// differentiable (the encoder's hand-written backward uses [`softmax_backward`], which keeps the zeros).
pub fn softmax_prefix(x: &Tensor, valid: usize) -> candle_core::Result<Tensor> {
    f32_cuda("softmax", x)?;
    x.contiguous()?.apply_op1_no_bwd(&Softmax { valid: Some(valid) })
}

/// LayerNorm over the last dim with affine `gamma`, `beta` (biased variance, as PyTorch), differentiable in all
/// three.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    f32_cuda("layer_norm", x)?;
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, LayerNorm { eps })
}

/// `x·Wᵀ + b` over the last dim of `x` (any rank), differentiable in all three; `w` is `(out, in)`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    f32_cuda("linear", x)?;
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)
}

/// Exact (erf) GELU, differentiable.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    f32_cuda("gelu", x)?;
    x.contiguous()?.apply_op1(Gelu)
}

/// The backward of [`softmax_last_dim`] from its output `y` and the output's gradient `g`: `y ⊙ (g − Σ g⊙y)`.
pub fn softmax_backward(y: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    f32_cuda("softmax_backward", y)?;
    y.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &SoftmaxBwd)
}

/// The backward of [`layer_norm`] from its input `x`, the output's gradient `g` and `gamma`: `(dx, dγ, dβ)`.
pub fn layer_norm_backward(
    x: &Tensor,
    g: &Tensor,
    gamma: &Tensor,
    eps: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    f32_cuda("layer_norm_backward", x)?;
    let (x, g) = (x.contiguous()?, g.contiguous()?);
    let dx = x.apply_op3_no_bwd(&g, &gamma.contiguous()?, &LayerNormDx { eps })?;
    let cols = x.dim(D::Minus1)?;
    let sums = x.apply_op2_no_bwd(&g, &LayerNormParams { eps })?.sum(0)?;
    Ok((dx, sums.narrow(0, 0, cols)?, sums.narrow(0, cols, cols)?))
}

/// The backward of [`gelu_erf`] from its input `x` and the output's gradient `g`.
pub fn gelu_backward(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    f32_cuda("gelu_backward", x)?;
    x.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &GeluBwd)
}

/// The backward of [`linear`] from its input `x`, weight `w` `(out, in)` and the output's gradient `g`:
/// `(g·W, gᵀ·x, 1ᵀ·g)` as three GEMMs: `g·W` on [`gemm::linear`] (swm's kernel where it runs), the others
/// Candle matmuls (any device).
pub fn linear_backward(x: &Tensor, w: &Tensor, g: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (n, k) = w.dims2()?;
    let rows = x.elem_count() / k;
    let g2 = g.reshape((rows, n))?;
    // g·W = g·(Wᵀ)ᵀ: swm's GEMM over the transposed weight (small) where it runs, cuBLAS elsewhere.
    let dx = gemm::linear(&g2.contiguous()?, &w.t()?.contiguous()?, gemm::Epilogue::None)
        .map_err(candle_core::Error::wrap)?
        .reshape(x.shape())?;
    let dw = g2.t()?.matmul(&x.reshape((rows, k))?)?;
    let db = Tensor::ones((1, rows), g.dtype(), g.device())?.matmul(&g2)?.reshape(n)?;
    Ok((dx, dw, db))
}
