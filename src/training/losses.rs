//! The loss terms of upstream's `stable_worldmodel/wm/loss.py` (0.1.1) and LeWM's objective, as Candle ops
//! (differentiable through Candle's autograd):
//!
//! - [`sigreg`]: SIGReg, the sliced Epps–Pulley normality statistic LeWM regularises its embeddings with;
//! - [`lewm_objective`]: `pred_loss + 0.09 · sigreg_loss` (upstream's `lejepa_forward`);
//! - [`vcreg`], [`pldm`], [`temporal_straightening`]: the PLDM baseline's terms.
//!
//! SIGReg draws random directions every call upstream; here they are an argument (`proj_matrix`, `(D, P)`, any
//! scale: columns are normalised inside), so that a caller samples them (`Tensor::randn`) and a parity test can
//! inject the official ones. Formulas, reductions and constants: `../shared/spec/losses.md`.

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};

/// SIGReg's quadrature: `knots` points on `[0, 3]` (upstream's default 17).
pub const SIGREG_KNOTS: usize = 17;

/// The weight of SIGReg in LeWM's objective (upstream's `lewm.yaml`).
pub const SIGREG_WEIGHT: f64 = 0.09;

/// VCReg's epsilon inside the square root of the variance.
pub const VCREG_EPS: f64 = 1e-4;

fn check_cuda(what: &str, t: &Tensor) -> Result<()> {
    if t.device().is_cuda() {
        Ok(())
    } else {
        Err(Error::invalid_input(what, "training losses run on the CUDA device; move the tensor there first"))
    }
}

fn check_rank(what: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.rank() != rank || t.dims().contains(&0) {
        return Err(Error::invalid_input(what, format!("expected a non-empty {rank}-d tensor, got {:?}", t.dims())));
    }
    Ok(())
}

/// SIGReg (`SIGReg(knots=17)`, upstream): `proj` is `(T, B, D)` (LeWM passes its `(B, T, D)` embeddings transposed:
/// the statistic is taken over the batch, per time step), `proj_matrix` is `(D, P)` random directions (normalised
/// per column here). For each time step and direction, `B · Σ_k w_k |ψ̂(t_k) − e^{−t_k²/2}|²` with the empirical
/// characteristic function ψ̂ of the projected batch and trapezoid weights on `[0, 3]`; the mean over `(T, P)`.
pub fn sigreg(proj: &Tensor, proj_matrix: &Tensor) -> Result<Tensor> {
    check_cuda("proj", proj)?;
    sigreg_on_any_device(proj, proj_matrix, SIGREG_KNOTS)
}

fn sigreg_on_any_device(proj: &Tensor, proj_matrix: &Tensor, knots: usize) -> Result<Tensor> {
    check_rank("proj", proj, 3)?;
    check_rank("proj_matrix", proj_matrix, 2)?;
    let (t_steps, batch, d) = proj.dims3()?;
    if proj_matrix.dim(0)? != d || knots < 2 {
        return Err(Error::invalid_input(
            "proj_matrix",
            format!("expected ({d}, P) directions for {d}-d embeddings, got {:?}", proj_matrix.dims()),
        ));
    }
    let device = proj.device();
    // In f32 whatever the input (upstream's products with its float32 buffers promote to f32).
    let dtype = DType::F32;
    let proj = &proj.to_dtype(dtype)?;
    let a = proj_matrix.to_dtype(dtype)?;
    let a = a.broadcast_div(&a.sqr()?.sum_keepdim(0)?.sqrt()?)?;
    let (t, weights, phi) = sigreg_quadrature(knots, device, dtype)?;
    // x: (T, B, P); X = x ⊗ t: (T, B, P, K).
    let x = proj.matmul(&a.unsqueeze(0)?.broadcast_as((t_steps, d, a.dim(1)?))?.contiguous()?)?;
    let xt = x.unsqueeze(D::Minus1)?.broadcast_mul(&t)?;
    let cos = xt.cos()?.mean(1)?; // (T, P, K): mean over the batch
    let sin = xt.sin()?.mean(1)?;
    let err = (cos.broadcast_sub(&phi)?.sqr()? + sin.sqr()?)?;
    let stat = (err.broadcast_mul(&weights)?.sum(D::Minus1)? * batch as f64)?; // (T, P)
    Ok(stat.mean_all()?)
}

/// `t_k = 3k/(K−1)`, the trapezoid weights (doubled: the integral over `[−3, 3]` folded onto `[0, 3]`) times
/// `φ(t_k) = e^{−t_k²/2}`, and `φ` itself; each `(K,)`.
fn sigreg_quadrature(knots: usize, device: &Device, dtype: DType) -> Result<(Tensor, Tensor, Tensor)> {
    let dt = 3.0 / (knots - 1) as f64;
    let t: Vec<f64> = (0..knots).map(|k| k as f64 * dt).collect();
    let phi: Vec<f64> = t.iter().map(|t| (-t * t / 2.0).exp()).collect();
    let w: Vec<f64> = (0..knots).map(|k| if k == 0 || k == knots - 1 { dt } else { 2.0 * dt }).collect();
    let weights: Vec<f64> = w.iter().zip(&phi).map(|(w, p)| w * p).collect();
    // Upstream keeps these buffers in float32.
    let make = |v: Vec<f64>| -> Result<Tensor> {
        let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
        Ok(Tensor::from_vec(v, knots, device)?.to_dtype(dtype)?)
    };
    Ok((make(t)?, make(weights)?, make(phi)?))
}

/// Mean squared error over every element (`pred` and `target` of one shape).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.dims() != target.dims() {
        return Err(Error::invalid_input("pred", format!("shape {:?} against {:?}", pred.dims(), target.dims())));
    }
    Ok((pred - target)?.sqr()?.mean_all()?)
}

/// LeWM's objective terms (upstream's `lejepa_forward`).
#[derive(Debug, Clone)]
pub struct LewmLoss {
    /// `mean((pred − emb[:, 1:])²)`.
    pub pred_loss: Tensor,
    /// SIGReg over every frame's embeddings.
    pub sigreg_loss: Tensor,
    /// `pred_loss + 0.09 · sigreg_loss`.
    pub loss: Tensor,
}

/// LeWM's objective from the embeddings `emb` `(B, T, D)` of a clip and the predictor's output `pred`
/// `(B, T − 1, D)` (position `i` predicts frame `i + 1`; no stop-gradient on the target), with SIGReg's directions
/// `proj_matrix` `(D, P)`.
pub fn lewm_objective(emb: &Tensor, pred: &Tensor, proj_matrix: &Tensor) -> Result<LewmLoss> {
    check_cuda("emb", emb)?;
    lewm_objective_on_any_device(emb, pred, proj_matrix)
}

pub(crate) fn lewm_objective_on_any_device(emb: &Tensor, pred: &Tensor, proj_matrix: &Tensor) -> Result<LewmLoss> {
    check_rank("emb", emb, 3)?;
    let t = emb.dim(1)?;
    if t < 2 {
        return Err(Error::invalid_input("emb", "a clip of at least two frames"));
    }
    let pred_loss = mse(pred, &emb.narrow(1, 1, t - 1)?)?;
    let sigreg_loss = sigreg_on_any_device(&emb.transpose(0, 1)?.contiguous()?, proj_matrix, SIGREG_KNOTS)?;
    let loss = (&pred_loss + (&sigreg_loss * SIGREG_WEIGHT)?)?;
    Ok(LewmLoss { pred_loss, sigreg_loss, loss })
}

/// VCReg's four terms (upstream's `VCReg(eps=1e-4)`).
#[derive(Debug, Clone)]
pub struct VcReg {
    /// Hinge on the per-dimension standard deviation across the batch, per time step.
    pub std_loss: Tensor,
    /// The same across time, per sample.
    pub std_t_loss: Tensor,
    /// Off-diagonal squared covariance across the batch, per time step.
    pub cov_loss: Tensor,
    /// Upstream's "temporal covariance" (of batch-centred values, not re-centred over time).
    pub cov_t_loss: Tensor,
}

/// VCReg on `z` `(B, T, D)`: the input is centred over the batch only (see [`VcReg`]).
pub fn vcreg(z: &Tensor) -> Result<VcReg> {
    check_cuda("z", z)?;
    vcreg_on_any_device(z)
}

fn vcreg_on_any_device(z: &Tensor) -> Result<VcReg> {
    check_rank("z", z, 3)?;
    let (b, t, d) = z.dims3()?;
    if b < 2 || t < 2 || d < 2 {
        return Err(Error::invalid_input("z", format!("VCReg needs B, T, D ≥ 2, got {:?}", z.dims())));
    }
    let zc = z.broadcast_sub(&z.mean_keepdim(0)?)?;
    let zt = zc.transpose(0, 1)?.contiguous()?;
    Ok(VcReg {
        std_loss: std_term(&zc)?,
        std_t_loss: std_term(&zt)?,
        cov_loss: cov_term(&zc)?,
        cov_t_loss: cov_term(&zt)?,
    })
}

/// `x` `(N0, N1, D)`: per `(n1, d)` the unbiased variance over axis 0, `relu(1 − sqrt(v + eps))` averaged over `D`,
/// then over `N1`.
fn std_term(x: &Tensor) -> Result<Tensor> {
    let n0 = x.dim(0)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let var = (centred.sqr()?.sum(0)? / (n0 - 1) as f64)?; // (N1, D)
    let s = (var + VCREG_EPS)?.sqrt()?;
    Ok(s.affine(-1.0, 1.0)?.relu()?.mean(D::Minus1)?.mean_all()?)
}

/// `x` `(N0, N1, D)` (not re-centred): per `n1` the `D × D` matrix `Σ_{n0} x xᵀ / (N0 − 1)`, its off-diagonal
/// squared sum over `D² − D`, averaged over `N1`.
fn cov_term(x: &Tensor) -> Result<Tensor> {
    let (n0, _, d) = x.dims3()?;
    let per = x.transpose(0, 1)?.contiguous()?; // (N1, N0, D)
    let c = (per.transpose(1, 2)?.contiguous()?.matmul(&per)? / (n0 - 1) as f64)?; // (N1, D, D)
    let all = c.sqr()?.sum((1, 2))?;
    let diag = c.sqr()?.broadcast_mul(&Tensor::eye(d, x.dtype(), x.device())?)?.sum((1, 2))?;
    Ok(((all - diag)? / (d * d - d) as f64)?.mean_all()?)
}

/// PLDMLoss's own terms (upstream's `PLDMLoss`), with [`VcReg`]'s.
#[derive(Debug, Clone)]
pub struct Pldm {
    /// `mean((a_pred − a_target)²)`, when both are given.
    pub idm_loss: Option<Tensor>,
    /// `mean((z[:, :-1] − z[:, 1:])²)`.
    pub temp_align_loss: Tensor,
    /// VCReg's terms.
    pub vcreg: VcReg,
}

impl Pldm {
    /// The PLDM baseline's weighting of these terms with upstream's `pldm.yaml` defaults (std 18, std_t 0.7,
    /// cov 12, temp_align 0.2; cov_t and idm weighted 0), without the prediction loss.
    pub fn default_objective(&self) -> Result<Tensor> {
        let v = &self.vcreg;
        Ok((((&v.std_loss * 18.0)? + (&v.std_t_loss * 0.7)?)?
            + ((&v.cov_loss * 12.0)? + (&self.temp_align_loss * 0.2)?)?)?)
    }
}

/// PLDMLoss on `z` `(B, T, D)`, with the inverse-dynamics pair `actions` = `(a_pred, a_target)` when given.
pub fn pldm(z: &Tensor, actions: Option<(&Tensor, &Tensor)>) -> Result<Pldm> {
    check_cuda("z", z)?;
    pldm_on_any_device(z, actions)
}

fn pldm_on_any_device(z: &Tensor, actions: Option<(&Tensor, &Tensor)>) -> Result<Pldm> {
    let vcreg = vcreg_on_any_device(z)?;
    let t = z.dim(1)?;
    let temp_align_loss = mse(&z.narrow(1, 0, t - 1)?, &z.narrow(1, 1, t - 1)?)?;
    let idm_loss = actions.map(|(p, t)| mse(p, t)).transpose()?;
    Ok(Pldm { idm_loss, temp_align_loss, vcreg })
}

/// TemporalStraighteningLoss on `x` `(B, T, D)`: minus the mean cosine between consecutive velocities
/// `x_{t+1} − x_t` (each norm clamped at 1e-8, so a zero velocity gives 0, not NaN).
pub fn temporal_straightening(x: &Tensor) -> Result<Tensor> {
    check_cuda("x", x)?;
    temporal_straightening_on_any_device(x)
}

fn temporal_straightening_on_any_device(x: &Tensor) -> Result<Tensor> {
    check_rank("x", x, 3)?;
    let t = x.dim(1)?;
    if t < 3 {
        return Err(Error::invalid_input("x", "temporal straightening needs at least three frames"));
    }
    let v = (x.narrow(1, 1, t - 1)? - x.narrow(1, 0, t - 1)?)?; // (B, T − 1, D)
    let (a, b) = (v.narrow(1, 0, t - 2)?, v.narrow(1, 1, t - 2)?);
    // max(‖u‖, 1e-8) as sqrt(max(‖u‖², 1e-16)): the same value, and a finite gradient at a zero velocity (the
    // clamp passes none back, where sqrt's backward at 0 would be 0/0).
    let norm = |u: &Tensor| -> Result<Tensor> { Ok(u.sqr()?.sum(D::Minus1)?.clamp(1e-16, f64::INFINITY)?.sqrt()?) };
    let cos = ((&a * &b)?.sum(D::Minus1)? / (norm(&a)? * norm(&b)?)?)?;
    Ok(cos.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed fixture of the official modules (`tools/swm_tools/export_losses.py`), on the host: the math
    /// only (the public functions refuse host tensors; the GPU test runs them on CUDA against the same values).
    fn fixture() -> std::collections::HashMap<String, Tensor> {
        let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        let path = std::path::PathBuf::from(root).join("tests/fixtures/losses/losses.safetensors");
        candle_core::safetensors::load(&path, &Device::Cpu).expect("tests/fixtures/losses/losses.safetensors")
    }

    fn scalar(t: &Tensor) -> f32 {
        t.to_scalar::<f32>().unwrap()
    }

    fn close(name: &str, got: &Tensor, f: &std::collections::HashMap<String, Tensor>) {
        let (got, want) = (scalar(got), scalar(&f[name]));
        assert!((got - want).abs() <= 1e-5, "{name}: {got} vs the official {want}");
    }

    #[test]
    fn every_term_matches_the_official_modules() {
        let f = fixture();
        let z = &f["z"];
        let lewm = lewm_objective_on_any_device(z, &f["pred"], &f["proj_matrix"]).unwrap();
        close("sigreg_loss", &lewm.sigreg_loss, &f);
        close("pred_loss", &lewm.pred_loss, &f);
        close("lewm_loss", &lewm.loss, &f);
        let p = pldm_on_any_device(z, Some((&f["a_pred"], &f["a_target"]))).unwrap();
        close("idm_loss", p.idm_loss.as_ref().unwrap(), &f);
        close("temp_align_loss", &p.temp_align_loss, &f);
        close("std_loss", &p.vcreg.std_loss, &f);
        close("std_t_loss", &p.vcreg.std_t_loss, &f);
        close("cov_loss", &p.vcreg.cov_loss, &f);
        close("cov_t_loss", &p.vcreg.cov_t_loss, &f);
        close("temp_straight_loss", &temporal_straightening_on_any_device(z).unwrap(), &f);
    }

    /// max |got − want| / max |want|.
    fn rel(got: &Tensor, want: &Tensor) -> f32 {
        // A NaN would slip through a max: refuse non-finite gradients first.
        let values = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "a non-finite gradient");
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        diff / want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn gradients_through_candle_s_autograd_match_the_official_ones() {
        use candle_core::Var;
        let f = fixture();
        let z = Var::from_tensor(&f["z"]).unwrap();
        let pred = Var::from_tensor(&f["pred"]).unwrap();
        let lewm = lewm_objective_on_any_device(z.as_tensor(), pred.as_tensor(), &f["proj_matrix"]).unwrap();
        let grads = lewm.loss.backward().unwrap();
        let gz = grads.get(z.as_tensor()).unwrap();
        let gp = grads.get(pred.as_tensor()).unwrap();
        assert!(rel(gz, &f["grad_lewm_z"]) <= 1e-4, "LeWM d/dz: {}", rel(gz, &f["grad_lewm_z"]));
        assert!(rel(gp, &f["grad_lewm_pred"]) <= 1e-4, "LeWM d/dpred: {}", rel(gp, &f["grad_lewm_pred"]));

        let z = Var::from_tensor(&f["z"]).unwrap();
        let p = pldm_on_any_device(z.as_tensor(), None).unwrap();
        let g = p.default_objective().unwrap().backward().unwrap();
        let gz = g.get(z.as_tensor()).unwrap();
        assert!(rel(gz, &f["grad_pldm_z"]) <= 1e-4, "PLDM d/dz: {}", rel(gz, &f["grad_pldm_z"]));

        let z = Var::from_tensor(&f["z"]).unwrap();
        let g = temporal_straightening_on_any_device(z.as_tensor()).unwrap().backward().unwrap();
        let gz = g.get(z.as_tensor()).unwrap();
        // Sample 0 repeats a frame (a zero velocity): its gradient must stay finite, as torch's does.
        let finite = gz.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite());
        assert!(finite, "a NaN gradient from the zero velocity");
        assert!(rel(gz, &f["grad_straight_z"]) <= 1e-4, "straightening d/dz: {}", rel(gz, &f["grad_straight_z"]));
    }

    #[test]
    fn host_tensors_and_bad_shapes_are_typed_errors() {
        let z = Tensor::zeros((4, 3, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(vcreg(&z).unwrap_err().to_string().contains("CUDA"));
        assert!(sigreg_on_any_device(&z, &Tensor::ones((3, 5), DType::F32, &Device::Cpu).unwrap(), 17).is_err());
        assert!(temporal_straightening_on_any_device(&z.narrow(1, 0, 2).unwrap()).is_err());
        assert!(vcreg_on_any_device(&z.narrow(0, 0, 1).unwrap()).is_err());
    }
}
