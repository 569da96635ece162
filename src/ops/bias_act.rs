//! Fused Linear epilogues (`kernels/bias_act.cu`): `y + b`, `gelu(y + b)` and `r + (y + b)` for a matmul result y,
//! the bias add folded into the activation / residual kernel (one launch fewer each on the latency-bound encoder).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaDevice, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};

use super::gemm::Unreduced;
use super::launch::{cuda_only, f32_view as view};
use crate::kernels;

/// Launches `kernel(inputs…, out, rows, cols[, splits])` from `kernels/bias_act.cu` over rows·cols elements and
/// returns `out`.
///
/// Every kernel of that file takes its inputs as `const float*` (each rows·cols floats, except the bias of cols
/// floats and bias_residual's `splits` partial sums of rows·cols), then the output pointer and `long long rows,
/// cols` (and bias_residual `int splits`), and grid-strides over rows·cols.
fn launch(
    kernel: &str,
    dev: &CudaDevice,
    inputs: &[CudaView<'_, f32>],
    rows: usize,
    cols: usize,
    splits: Option<i32>,
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
    if let Some(s) = &splits {
        builder.arg(s);
    }
    let cfg = LaunchConfig::for_num_elems((rows * cols).clamp(1, 1 << 30) as u32);
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

/// A bias epilogue over rows of a contiguous y (…, cols) and b (cols,): one `bias_act.cu` kernel taking
/// (y, b, out, rows, cols).
struct BiasRows {
    name: &'static str,
    kernel: &'static str,
}

/// `y + b`: Candle's broadcast add computes the same sums but indexes every element through its broadcast strides
/// (20 µs where this takes a few on TD-MPC2's 512 × 2560 Q-ensemble layer).
const BIAS_ADD: BiasRows = BiasRows { name: "swm-bias-add", kernel: "bias_add_f32" };
/// `gelu_erf(y + b)`.
const BIAS_GELU: BiasRows = BiasRows { name: "swm-bias-gelu", kernel: "bias_gelu_f32" };

impl CustomOp2 for BiasRows {
    fn name(&self) -> &'static str {
        self.name
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
        let (rows, cols) = check(self.name, yl, bl)?;
        let out = launch(self.kernel, y.device(), &[view(y, yl)?, view(b, bl)?], rows, cols, None)?;
        Ok((out, yl.shape().clone()))
    }
}

/// `r + (Σ_s y[s] + b)` over `splits` partial sums y, each rows·cols values back to back; the output is shaped as
/// r. (The callers check what y's elements mean; this checks that the kernel's reads stay inside it.)
struct BiasResidual {
    splits: usize,
}

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
        let (rows, cols) = check(self.name(), rl, bl)?;
        if !yl.is_contiguous() || yl.shape().elem_count() != self.splits * rows * cols {
            candle_core::bail!(
                "swm-bias-residual: {:?} is not {} partial sums for the residual {:?}",
                yl.dims(),
                self.splits,
                rl.dims()
            );
        }
        let inputs = [view(y, yl)?, view(b, bl)?, view(r, rl)?];
        let out = launch("bias_residual_f32", y.device(), &inputs, rows, cols, Some(self.splits as i32))?;
        Ok((out, rl.shape().clone()))
    }
}

/// `y + b` for a contiguous f32 y (…, cols) on a CUDA device and b (cols,) in one kernel; other dtypes, devices,
/// strided views and empty tensors take Candle's broadcast add (which reads views in place).
pub fn bias_add(y: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let kernel = y.dtype() == DType::F32
        && b.dtype() == DType::F32
        && y.is_contiguous()
        && y.elem_count() > 0
        && matches!(y.device(), candle_core::Device::Cuda(_));
    if !kernel {
        return y.broadcast_add(b);
    }
    y.apply_op2_no_bwd(&b.contiguous()?, &BIAS_ADD)
}

/// `gelu_erf(y + b)` for y (…, cols) and b (cols,) in one kernel (f32; other dtypes use Candle ops).
pub fn bias_gelu(y: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if y.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return y.broadcast_add(b)?.gelu_erf();
    }
    y.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &BIAS_GELU)
}

/// `residual + (y + b)` for y (…, cols), b (cols,) and a residual shaped as y, in one kernel (f32; other dtypes use
/// Candle ops).
pub fn bias_residual(y: &Tensor, b: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
    if y.dtype() != DType::F32 || b.dtype() != DType::F32 || residual.dtype() != DType::F32 {
        return residual + y.broadcast_add(b)?;
    }
    if y.dims() != residual.dims() {
        candle_core::bail!("swm-bias-residual: {:?} added to a residual {:?}", y.dims(), residual.dims());
    }
    y.contiguous()?.apply_op3_no_bwd(&b.contiguous()?, &residual.contiguous()?, &BiasResidual { splits: 1 })
}

/// [`bias_residual`] on a matmul left as split-K partial sums (`gemm::linear_partials`): the partials (rows × cols
/// each, rows·cols the residual's elements) are added in split order as they are read, the result shaped as the
/// residual.
pub fn bias_residual_partials(y: &Unreduced, b: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
    let cols = residual.dim(candle_core::D::Minus1)?;
    let rows = residual.elem_count() / cols.max(1);
    let f32s = [&y.partials, b, residual].iter().all(|t| t.dtype() == DType::F32);
    if !f32s {
        let sum = y.reduce().map_err(candle_core::Error::wrap)?;
        return residual + sum.reshape(residual.shape())?.broadcast_add(b)?;
    }
    y.check_packed(rows, cols).map_err(candle_core::Error::wrap)?;
    let op = BiasResidual { splits: y.splits() };
    y.partials.apply_op3_no_bwd(&b.contiguous()?, &residual.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_add_off_the_device_is_candle_s_broadcast_add() {
        let cpu = candle_core::Device::Cpu;
        let y = Tensor::arange(0f32, 12.0, &cpu).unwrap().reshape((3, 4)).unwrap();
        let b = Tensor::new(&[0.5f32, -1.0, 2.0, 0.25], &cpu).unwrap();
        let want = y.broadcast_add(&b).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(bias_add(&y, &b).unwrap().to_vec2::<f32>().unwrap(), want);
        // A strided view and an empty tensor take the same path; a bias of the wrong length is an error there too.
        let t = y.t().unwrap();
        let b3 = Tensor::new(&[1f32, 2.0, 3.0], &cpu).unwrap();
        assert_eq!(
            bias_add(&t, &b3).unwrap().to_vec2::<f32>().unwrap(),
            t.broadcast_add(&b3).unwrap().to_vec2::<f32>().unwrap()
        );
        let empty = Tensor::zeros((0, 4), DType::F32, &cpu).unwrap();
        assert_eq!(bias_add(&empty, &b).unwrap().dims(), &[0, 4]);
        assert!(bias_add(&y, &b3).is_err());
    }
}
