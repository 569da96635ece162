//! Fused Linear epilogues (`kernels/bias_act.cu`): `gelu(x·Wᵀ + b)` and `r + (x·Wᵀ + b)` with the bias add folded
//! into the activation / residual kernel, saving one launch each on the latency-bound encoder.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::Linear;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::kernels;

fn launch_config(n: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(n.min(1 << 30) as u32)
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
        candle_core::bail!("swm kernels run on CUDA only")
    }
    fn cuda_fwd(
        &self,
        y: &CudaStorage,
        yl: &Layout,
        b: &CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, cols) = check(self.name(), yl, bl)?;
        let dev = y.device().clone();
        let ys = y.as_cuda_slice::<f32>()?.slice(yl.start_offset()..);
        let bs = b.as_cuda_slice::<f32>()?.slice(bl.start_offset()..);
        // SAFETY: every element is written by the kernel below before the tensor is read.
        let out = unsafe { dev.alloc::<f32>(rows * cols)? };
        let func = dev.get_or_load_custom_func("bias_gelu_f32", "swm_bias_act", kernels::BIAS_ACT)?;
        let (r, c) = (rows as i64, cols as i64);
        let mut launch = func.builder();
        launch.arg(&ys).arg(&bs).arg(&out).arg(&r).arg(&c);
        // SAFETY: argument list matches `bias_gelu_f32(const float*, const float*, float*, long long, long long)`;
        // `ys`/`out` hold rows·cols floats and `bs` cols floats (checked above); the kernel grid-strides.
        unsafe { launch.launch(launch_config(rows * cols)) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), yl.shape().clone()))
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
        candle_core::bail!("swm kernels run on CUDA only")
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
        let dev = y.device().clone();
        let ys = y.as_cuda_slice::<f32>()?.slice(yl.start_offset()..);
        let bs = b.as_cuda_slice::<f32>()?.slice(bl.start_offset()..);
        let rs = r.as_cuda_slice::<f32>()?.slice(rl.start_offset()..);
        // SAFETY: every element is written by the kernel below before the tensor is read.
        let out = unsafe { dev.alloc::<f32>(rows * cols)? };
        let func = dev.get_or_load_custom_func("bias_residual_f32", "swm_bias_act", kernels::BIAS_ACT)?;
        let (nr, nc) = (rows as i64, cols as i64);
        let mut launch = func.builder();
        launch.arg(&ys).arg(&bs).arg(&rs).arg(&out).arg(&nr).arg(&nc);
        // SAFETY: argument list matches `bias_residual_f32(const float*, const float*, const float*, float*,
        // long long, long long)`; `ys`, `rs`, `out` hold rows·cols floats and `bs` cols floats (checked above).
        unsafe { launch.launch(launch_config(rows * cols)) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), yl.shape().clone()))
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
    matmul_no_bias(linear, x)?.apply_op2_no_bwd(bias_of(linear)?, &BiasGelu)
}

/// `residual + linear(x)` with the bias add fused into the residual kernel (f32 only).
pub fn linear_residual(linear: &Linear, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() != DType::F32 {
        return residual + linear.forward(x)?;
    }
    matmul_no_bias(linear, x)?.apply_op3_no_bwd(bias_of(linear)?, &residual.contiguous()?, &BiasResidual)
}
