//! Launchers for the planner kernels (`kernels/noise.cu`, `kernels/topk.cu`, `kernels/planner.cu`); the Philox
//! noise is also the TD-MPC2 actor prior's.
//!
//! The planner owns every buffer these kernels touch as a contiguous Candle CUDA tensor allocated once; kernels
//! read and write them through their device addresses on Candle's stream, so the work is ordered with the
//! scorer's Candle ops and can be captured into a CUDA graph.

use candle_core::{CudaDevice, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::launch::{address, grid, launched, warps};
use super::{KernelError, Result};
use crate::kernels;

/// Fills `out` (f32, n elements) with N(0, 1) noise for draw `state[0]` under key `seed`, then advances the draw.
pub(crate) fn normal_noise(dev: &CudaDevice, out: &Tensor, seed: u64, state: &Tensor) -> Result<()> {
    let n = out.elem_count() as i64;
    let (out_ptr, state_ptr) = (address(out)?, address(state)?);
    let fill = dev.get_or_load_custom_func("philox_normal_f32", "swm_noise", kernels::NOISE)?;
    let mut b = fill.builder();
    b.arg(&out_ptr).arg(&n).arg(&seed).arg(&state_ptr);
    // SAFETY: argument list = philox_normal_f32(float*, long long, unsigned long long, const long long*); `out`
    // holds n f32 and `state` at least one i64, both owned by the caller for the duration of the work.
    launched(unsafe { b.launch(grid(out.elem_count().div_ceil(4))) })?;
    let advance = dev.get_or_load_custom_func("advance_draw", "swm_noise", kernels::NOISE)?;
    let mut b = advance.builder();
    b.arg(&state_ptr);
    // SAFETY: advance_draw(long long*) bumps state[0] with one thread.
    launched(unsafe { b.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 }) })
}

/// iCEM colouring: `white` (rows, H) → `out` (B, N, H, Da) through the (H, H) matrix `m`.
pub(crate) fn colour_noise(
    dev: &CudaDevice,
    white: &Tensor,
    m: &Tensor,
    out: &Tensor,
    h: usize,
    da: usize,
) -> Result<()> {
    let rows = (white.elem_count() / h) as i64;
    let (w, mm, o) = (address(white)?, address(m)?, address(out)?);
    let (h32, da32) = (h as i32, da as i32);
    let f = dev.get_or_load_custom_func("colour_noise_f32", "swm_noise", kernels::NOISE)?;
    let mut b = f.builder();
    b.arg(&w).arg(&mm).arg(&o).arg(&rows).arg(&h32).arg(&da32);
    // SAFETY: colour_noise_f32(const float*, const float*, float*, long long, int, int); white and out hold
    // rows·H f32, m holds H·H, H ≤ 64 (checked by the config).
    launched(unsafe { b.launch(grid(rows as usize)) })
}

/// Most costs per row [`topk`] ranks (`SWM_TOPK_MAX` in `kernels/topk.cu`).
const TOPK_MAX: usize = 4096;
/// Threads per block of `topk_rows_f32` (`SWM_TOPK_THREADS`).
const TOPK_THREADS: usize = 64;

/// The k lowest costs of each row of `cost` (rows, n), ascending, into `index` (u32) and `value`.
pub(crate) fn topk(dev: &CudaDevice, cost: &Tensor, k: usize, index: &Tensor, value: &Tensor) -> Result<()> {
    let (rows, n) = cost.dims2()?;
    if n > TOPK_MAX || k > n || rows > 65535 || index.elem_count() < rows * k || value.elem_count() < rows * k {
        return Err(KernelError::operand(
            "cost",
            format!(
                "top {k} of {:?} into {:?} / {:?}: at most {TOPK_MAX} costs in ≤ 65535 rows",
                cost.dims(),
                index.dims(),
                value.dims()
            ),
        ));
    }
    let (c, i, v) = (address(cost)?, address(index)?, address(value)?);
    let (n32, k32) = (n as i32, k as i32);
    let f = dev.get_or_load_custom_func("topk_rows_f32", "swm_topk", kernels::TOPK)?;
    let mut b = f.builder();
    b.arg(&c).arg(&n32).arg(&k32).arg(&i).arg(&v);
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(TOPK_THREADS).max(1) as u32, rows as u32, 1),
        block_dim: (TOPK_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: topk_rows_f32(const float*, int, int, int*, float*) with SWM_TOPK_THREADS-thread blocks and one grid
    // row per cost row; cost holds rows·n f32 with n ≤ SWM_TOPK_MAX (the shared row), index and value ≥ rows·k
    // (k ≤ n: each rank below k is written once; all checked above).
    launched(unsafe { b.launch(cfg) })
}

/// Distribution reset at the start of a plan (see `kernels/planner.cu`): mean[b, t] = warm[b, t + shift] (0 past
/// the end, or everywhere without `warm`), std = `var_scale`; clears the carried-elite count and, when
/// `reset_draw`, the draw counter.
pub(crate) struct InitDistribution<'a> {
    pub mean: &'a Tensor,
    pub std: &'a Tensor,
    pub warm: Option<&'a Tensor>,
    pub shift: usize,
    pub var_scale: f32,
    pub state: &'a Tensor,
    pub reset_draw: bool,
}

impl InitDistribution<'_> {
    pub(crate) fn launch(&self, dev: &CudaDevice) -> Result<()> {
        let (b, h, da) = self.mean.dims3()?;
        let (m, s, st) = (address(self.mean)?, address(self.std)?, address(self.state)?);
        let w = self.warm.map(address).transpose()?.unwrap_or(0);
        let (b64, h32, da32, shift32) = (b as i64, h as i32, da as i32, self.shift as i32);
        let reset = self.reset_draw as i32;
        let f = dev.get_or_load_custom_func("init_distribution_f32", "swm_planner", kernels::PLANNER)?;
        let mut lb = f.builder();
        lb.arg(&m).arg(&s).arg(&w).arg(&b64).arg(&h32).arg(&da32).arg(&shift32).arg(&self.var_scale);
        lb.arg(&st).arg(&reset);
        // SAFETY: init_distribution_f32(float*, float*, const float*, long long, int, int, int, float, long long*,
        // int); mean, std and warm (or null) hold B·H·Da f32, state 2 i64.
        launched(unsafe { lb.launch(grid(b * da)) })
    }
}

/// Candidate composition (see `kernels/planner.cu`): mean at 0, previous elites at 1..=state[1], noise elsewhere.
pub(crate) struct Compose<'a> {
    pub eps: &'a Tensor,
    pub mean: &'a Tensor,
    pub std: &'a Tensor,
    /// Previous elites (B, K, H, Da) and K, for iCEM's carry-over.
    pub prev: Option<(&'a Tensor, usize)>,
    pub state: &'a Tensor,
    /// Per-Da bounds.
    pub bounds: Option<(&'a Tensor, &'a Tensor)>,
    pub out: &'a Tensor,
}

impl Compose<'_> {
    pub(crate) fn launch(&self, dev: &CudaDevice) -> Result<()> {
        let (b, n, h, da) = self.out.dims4()?;
        let j = h * da;
        let (eps, mean, std, state, out) =
            (address(self.eps)?, address(self.mean)?, address(self.std)?, address(self.state)?, address(self.out)?);
        let (prev, prev_k) = match self.prev {
            Some((t, k)) => (address(t)?, k as i32),
            None => (0, 0),
        };
        let (low, high) = match self.bounds {
            Some((l, h)) => (address(l)?, address(h)?),
            None => (0, 0),
        };
        let (b64, n64, j32, da32) = (b as i64, n as i64, j as i32, da as i32);
        let f = dev.get_or_load_custom_func("compose_candidates_f32", "swm_planner", kernels::PLANNER)?;
        let mut lb = f.builder();
        lb.arg(&eps).arg(&mean).arg(&std).arg(&prev).arg(&prev_k).arg(&state).arg(&low).arg(&high).arg(&out);
        lb.arg(&b64).arg(&n64).arg(&j32).arg(&da32);
        // SAFETY: compose_candidates_f32(const float* eps, mean, std, prev, int prev_k, const long long* state,
        // const float* low, high, float* out, long long b, n, int j, da); eps/out hold B·N·J f32, mean/std B·J,
        // prev B·prev_k·J (or null), low/high Da (or null), state 2 i64.
        launched(unsafe { lb.launch(grid(b * n * j)) })
    }
}

/// How the elites update the distribution.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Update {
    /// Mean and unbiased std of the elites.
    Cem,
    /// CEM blended with momentum `alpha`.
    Icem { alpha: f32 },
    /// Softmax-weighted mean, std unchanged.
    Mppi { temperature: f32 },
}

/// Elite update (see `kernels/planner.cu`).
pub(crate) struct EliteUpdate<'a> {
    pub candidates: &'a Tensor,
    pub index: &'a Tensor,
    pub value: &'a Tensor,
    pub mean: &'a Tensor,
    pub std: &'a Tensor,
    pub elites: &'a Tensor,
    /// Receives the best elite (B, H, Da), when the solver returns it.
    pub best: Option<&'a Tensor>,
    pub cost: &'a Tensor,
    pub state: &'a Tensor,
    pub rule: Update,
    /// Elites the next iteration re-inserts.
    pub keep_next: usize,
}

impl EliteUpdate<'_> {
    pub(crate) fn launch(&self, dev: &CudaDevice) -> Result<()> {
        let (b, n, h, da) = self.candidates.dims4()?;
        let k = self.index.dim(1)?;
        let j = h * da;
        let ptrs = [self.candidates, self.index, self.value, self.mean, self.std, self.elites, self.cost, self.state]
            .map(address);
        let [c, i, v, m, s, e, cost, state] = ptrs;
        let (c, i, v, m, s, e, cost, state) = (c?, i?, v?, m?, s?, e?, cost?, state?);
        let best = self.best.map(address).transpose()?.unwrap_or(0);
        let (mode, alpha, temperature) = match self.rule {
            Update::Cem => (0i32, 0f32, 1f32),
            Update::Icem { alpha } => (1, alpha, 1.0),
            Update::Mppi { temperature } => (2, 0.0, temperature),
        };
        let (b64, n64, k32, j32, keep) = (b as i64, n as i64, k as i32, j as i32, self.keep_next as i64);
        let f = dev.get_or_load_custom_func("update_from_elites_f32", "swm_planner", kernels::PLANNER)?;
        let mut lb = f.builder();
        lb.arg(&c).arg(&i).arg(&v).arg(&m).arg(&s).arg(&e).arg(&best).arg(&cost).arg(&state);
        lb.arg(&b64).arg(&n64).arg(&k32).arg(&j32).arg(&mode).arg(&alpha).arg(&temperature).arg(&keep);
        // SAFETY: update_from_elites_f32(const float* cand, const int* index, const float* value, float* mean, std,
        // elites, best, cost, long long* state, long long b, n, int k, j, mode, float alpha, temperature,
        // long long keep_next); cand holds B·N·J f32, index/value B·K, mean/std B·J, elites B·K·J, best B·J (or
        // null), cost B, state 2; one warp per (env, value) column.
        launched(unsafe { lb.launch(warps(b * j, 2)) })
    }
}
