//! `swm::training::losses` on the device against the official loss modules (`tests/fixtures/losses`, written by
//! `tools/swm_tools/export_losses.py`): every term within 1e-5 absolute, the gradients of LeWM's objective, of the
//! PLDM baseline's default weighting and of temporal straightening (Candle's autograd) within 1e-4 relative.

use candle_core::{Tensor, Var};
use swm::training::losses::{lewm_objective, pldm, temporal_straightening};

use super::{fixture, gpu};

fn close(name: &str, got: &Tensor, want: &Tensor) {
    let (g, w) = (got.to_scalar::<f32>().unwrap(), want.to_scalar::<f32>().unwrap());
    println!("{name}: {g} (official {w})");
    assert!((g - w).abs() <= 1e-5, "{name}: {g} vs the official {w}");
}

fn rel(got: &Tensor, want: &Tensor) -> f32 {
    // A NaN would slip through a max: refuse non-finite gradients first.
    let values = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "a non-finite gradient");
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
#[ignore = "needs a CUDA device"]
fn loss_terms_and_gradients_match_the_official_modules_on_the_gpu() {
    let (_gpu, device) = gpu();
    let f = candle_core::safetensors::load(fixture("losses/losses.safetensors"), &device).unwrap();
    let z = Var::from_tensor(&f["z"]).unwrap();
    let pred = Var::from_tensor(&f["pred"]).unwrap();
    let lewm = lewm_objective(z.as_tensor(), pred.as_tensor(), &f["proj_matrix"]).unwrap();
    close("sigreg_loss", &lewm.sigreg_loss, &f["sigreg_loss"]);
    close("pred_loss", &lewm.pred_loss, &f["pred_loss"]);
    close("lewm_loss", &lewm.loss, &f["lewm_loss"]);
    let g = lewm.loss.backward().unwrap();
    assert!(rel(g.get(z.as_tensor()).unwrap(), &f["grad_lewm_z"]) <= 1e-4);
    assert!(rel(g.get(pred.as_tensor()).unwrap(), &f["grad_lewm_pred"]) <= 1e-4);

    let z = Var::from_tensor(&f["z"]).unwrap();
    let p = pldm(z.as_tensor(), Some((&f["a_pred"], &f["a_target"]))).unwrap();
    close("idm_loss", p.idm_loss.as_ref().unwrap(), &f["idm_loss"]);
    close("temp_align_loss", &p.temp_align_loss, &f["temp_align_loss"]);
    close("std_loss", &p.vcreg.std_loss, &f["std_loss"]);
    close("std_t_loss", &p.vcreg.std_t_loss, &f["std_t_loss"]);
    close("cov_loss", &p.vcreg.cov_loss, &f["cov_loss"]);
    close("cov_t_loss", &p.vcreg.cov_t_loss, &f["cov_t_loss"]);
    let g = p.default_objective().unwrap().backward().unwrap();
    assert!(rel(g.get(z.as_tensor()).unwrap(), &f["grad_pldm_z"]) <= 1e-4);

    let z = Var::from_tensor(&f["z"]).unwrap();
    let straight = temporal_straightening(z.as_tensor()).unwrap();
    close("temp_straight_loss", &straight, &f["temp_straight_loss"]);
    let g = straight.backward().unwrap();
    let gz = g.get(z.as_tensor()).unwrap();
    assert!(gz.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()), "zero velocity");
    assert!(rel(gz, &f["grad_straight_z"]) <= 1e-4);
}
