"""Exports the official stable-worldmodel 0.1.1 loss modules' values on fixed inputs (issue 15; spec:
shared/spec/losses.md): SIGReg with its projection matrix recorded, VCReg's four terms, PLDMLoss's inverse-dynamics
and temporal-alignment terms, TemporalStraighteningLoss, and LeWM's objective `pred_loss + 0.09 * sigreg_loss`.

    python -m swm_tools.export_losses --out tests/fixtures/losses [--device cpu]

Writes `losses.safetensors`: the inputs `z` (B, T, D) embeddings, `pred` (B, T-1, D) predictions, `a_pred` /
`a_target` (B, T-1, A) inverse-dynamics actions, `proj_matrix` (D, P) SIGReg's random directions before their
normalisation, and one 0-d float32 tensor per value (`sigreg_loss`, `std_loss`, `std_t_loss`, `cov_loss`,
`cov_t_loss`, `temp_align_loss`, `idm_loss`, `temp_straight_loss`, `pred_loss`, `lewm_loss`), the gradients
`grad_lewm_z`, `grad_lewm_pred`, `grad_pldm_z` (18·std + 0.7·std_t + 12·cov + 0.2·temp_align, PLDM's defaults) and
`grad_straight_z`, plus `meta.json`.
"""
# ruff: noqa: I001  (the official package's import stubs must be installed before its modules are imported)
import argparse
import json
import pathlib

from . import official  # noqa: F401  (installs the import stubs first)
import torch
from safetensors.torch import save_file
from stable_worldmodel.wm.loss import PLDMLoss, SIGReg, TemporalStraighteningLoss, VCReg

B, T, D, A, KNOTS, PROJ = 16, 4, 32, 10, 17, 256
SIGREG_WEIGHT = 0.09  # scripts/train/config/lewm.yaml


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = args.device
    g = torch.Generator().manual_seed(2026)
    z = (torch.randn(B, T, D, generator=g) * 0.8 + 0.1).to(dev)
    pred = (z[:, 1:] + 0.3 * torch.randn(B, T - 1, D, generator=g).to(dev)).contiguous()
    a_pred = torch.randn(B, T - 1, A, generator=g).to(dev)
    a_target = torch.randn(B, T - 1, A, generator=g).to(dev)
    # Zero velocities on one sample: TemporalStraighteningLoss's norm clamp (0, not NaN).
    z[0, 2] = z[0, 1]

    sigreg = SIGReg(knots=KNOTS, num_proj=PROJ).to(dev)
    proj = z.transpose(0, 1)  # (T, B, D), as LeWM's training step passes it
    # SIGReg draws its directions from the global RNG as its first random op: the same seed replays them.
    torch.manual_seed(7)
    proj_matrix = torch.randn(D, PROJ, device=dev)
    torch.manual_seed(7)
    values = {"sigreg_loss": sigreg(proj)}
    values.update(VCReg()(z))
    pldm = PLDMLoss()(z, a_pred, a_target)
    values["idm_loss"] = pldm["idm_loss"]
    values["temp_align_loss"] = pldm["temp_align_loss"]
    for k in ("std_loss", "std_t_loss", "cov_loss", "cov_t_loss"):
        assert torch.equal(pldm[k], values[k]), k
    values["temp_straight_loss"] = TemporalStraighteningLoss()(z)
    values["pred_loss"] = ((pred - z[:, 1:]) ** 2).mean()
    values["lewm_loss"] = values["pred_loss"] + SIGREG_WEIGHT * values["sigreg_loss"]

    # Gradients (torch autograd through the official modules) of three objectives: LeWM's (w.r.t. z and pred), the
    # PLDM baseline's default weighting 18·std + 0.7·std_t + 12·cov + 0.2·temp_align (w.r.t. z), and temporal
    # straightening (w.r.t. z).
    grads = {}
    zg, pg = z.clone().requires_grad_(True), pred.clone().requires_grad_(True)
    torch.manual_seed(7)
    lewm = ((pg - zg[:, 1:]) ** 2).mean() + SIGREG_WEIGHT * sigreg(zg.transpose(0, 1))
    grads["grad_lewm_z"], grads["grad_lewm_pred"] = torch.autograd.grad(lewm, (zg, pg))
    zg = z.clone().requires_grad_(True)
    p = PLDMLoss()(zg)
    objective = 18 * p["std_loss"] + 0.7 * p["std_t_loss"] + 12 * p["cov_loss"] + 0.2 * p["temp_align_loss"]
    (grads["grad_pldm_z"],) = torch.autograd.grad(objective, (zg,))
    zg = z.clone().requires_grad_(True)
    (grads["grad_straight_z"],) = torch.autograd.grad(TemporalStraighteningLoss()(zg), (zg,))

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"z": z, "pred": pred, "a_pred": a_pred, "a_target": a_target, "proj_matrix": proj_matrix}
    tensors.update({k: v.detach().reshape(()) for k, v in values.items()})
    tensors.update(grads)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(out / "losses.safetensors"))
    meta = {"B": B, "T": T, "D": D, "A": A, "knots": KNOTS, "num_proj": PROJ, "sigreg_weight": SIGREG_WEIGHT,
            "torch": torch.__version__, "device": dev,
            "values": {k: float(v) for k, v in values.items()}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    for k, v in meta["values"].items():
        print(f"{k:<20} {v:.9g}")


if __name__ == "__main__":
    main()
