//! Fused Linear epilogues (`kernels/bias_act.cu`): `gelu(x·Wᵀ + b)` and `r + (x·Wᵀ + b)` with the bias add folded
//! into the activation / residual kernel, saving one launch each on the latency-bound encoder.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaDevice, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::Linear;
use cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};

use super::launch::{cuda_only, f32_view as view};
use crate::kernels;

/// Launches `kernel(inputs…, out, rows, cols)` from `kernels/bias_act.cu` over rows·cols elements and returns `out`.
///
/// Every kernel of that file takes its inputs as `const float*` (each rows·cols floats, except the bias of cols
/// floats), then the output pointer and `long long rows, cols`, and grid-strides over rows·cols.
fn launch(
    kernel: &str,
    dev: &CudaDevice,
    inputs: &[CudaView<'_, f32>],
    rows: usize,
    cols: usize,
) -> candle_core::Result<CudaStorage> {
    // SAFETY: every element is written by the kernel below before the tensor is read.
    let out = unsafe { dev.alloc::<f32>(rows * cols)? };
    let func = dev.get_or_load_custom_func(kernel, "swm_bias_act", kernels::BIAS_ACT)?;
    let (r, c) = (rows as i64, cols as i64);
    let mut builder = func.builder();
    for input in inputs {
        builder.arg(input);
    }
    builder.arg(&out).arg(&r).arg(&c);
    let cfg = LaunchConfig::for_num_elems((rows * cols).min(1 << 30) as u32);
    // SAFETY: the argument list follows the signature shared by the kernels of bias_act.cu (see above); callers
    // check that the inputs have the element counts the kernel reads.
    unsafe { builder.launch(cfg) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

fn check(op: &str, y: &Layout, b: &Layout) -> candle_core::Result<(usize, usize)> {
    let cols = *y.dims().last().unwrap_or(&0);
    if !y.is_contiguous() || !b.is_contiguous() || b.dims() != [cols] || cols == 0 {
        candle_core::bail!(
            "{op}: expected contiguous (…, {cols}) input and ({cols},) bias, got {:?} and {:?}",
            y.dims(),
            b.dims()
        );
    }
    Ok((y.shape().elem_count() / cols, cols))
}

struct BiasGelu;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "swm-bias-gelu"
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
        b: &CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, cols) = check(self.name(), yl, bl)?;
        let out = launch("bias_gelu_f32", y.device(), &[view(y, yl)?, view(b, bl)?], rows, cols)?;
        Ok((out, yl.shape().clone()))
    }
}

struct BiasResidual;

impl CustomOp3 for BiasResidual {
    fn name(&self) -> &'static str {
        "swm-bias-residual"
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
        y: &CudaStorage,
        yl: &Layout,
        b: &CudaStorage,
        bl: &Layout,
        r: &CudaStorage,
        rl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, cols) = check(self.name(), yl, bl)?;
        if !rl.is_contiguous() || rl.dims() != yl.dims() {
            candle_core::bail!("swm-bias-residual: residual {:?} does not match {:?}", rl.dims(), yl.dims());
        }
        let out = launch("bias_residual_f32", y.device(), &[view(y, yl)?, view(b, bl)?, view(r, rl)?], rows, cols)?;
        Ok((out, yl.shape().clone()))
    }
}

/// `x·Wᵀ` of a Linear without its bias (contiguous output).
fn matmul_no_bias(linear: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    Linear::new(linear.weight().clone(), None).forward(x)?.contiguous()
}

fn bias_of(linear: &Linear) -> candle_core::Result<&Tensor> {
    linear.bias().ok_or_else(|| candle_core::Error::Msg("fused epilogue needs a Linear with bias".into()))
}

/// `gelu_erf(linear(x))` with the bias add fused into the GELU kernel (f32 only).
pub fn linear_gelu(linear: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() != DType::F32 {
        return linear.forward(x)?.gelu_erf();
    }
    bias_gelu(&matmul_no_bias(linear, x)?, bias_of(linear)?)
}

/// `gelu_erf(y + b)` for y (…, cols) and b (cols,) in one kernel (f32; other dtypes use Candle ops).
pub fn bias_gelu(y: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if y.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return y.broadcast_add(b)?.gelu_erf();
    }
    y.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &BiasGelu)
}

/// `residual + linear(x)` with the bias add fused into the residual kernel (f32 only).
pub fn linear_residual(linear: &Linear, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() != DType::F32 {
        return residual + linear.forward(x)?;
    }
    matmul_no_bias(linear, x)?.apply_op3_no_bwd(bias_of(linear)?, &residual.contiguous()?, &BiasResidual)
}
