"""Export a TD-MPC2 parity fixture (docs/spec/fixtures.md) from the official stable-worldmodel 0.1.1.

    python -m swm_tools.export_tdmpc2 --config configs/tdmpc2-tiny.json --out fixtures/tdmpc2-tiny [--device cuda]

Builds the official TDMPC2 from the cfg dict (docs/spec/tdmpc2.md §1) with deterministic random weights (upstream's init, then
every parameter perturbed so that the zero-initialised reward/Q heads and the LayerNorms matter), runs it in eval
mode with TF32 off and writes config.json, weights.pt, fixture.npz and meta.json. fixture.npz keys:
  obs_<modality>   (B, dim) or (B, 3, S, S)   observations, one row per env (no time axis)
  candidates       (B, N, H, A)                candidate action sequences (some outside [-1, 1]: not clipped)
  encode           (B, Z)                      model.encode(obs)
  dynamics         (B, N, Z)                   model.dynamics(cat(z, candidates[:, :, 0]))
  reward           (B, N, 1)                   two_hot_inv(model.reward(cat(z, candidates[:, :, 0])))
  pi_mean          (B, A)                      tanh(mu(encode))
  q_values         (num_q, B, 1)               two_hot_inv(q_i(cat(encode, pi_mean)))
  cost             (B, N)                      model.get_cost(obs, candidates)
"""
import argparse
import json
import os

import numpy as np

from . import official  # noqa: F401  (installs the import stubs first)
import torch
from omegaconf import OmegaConf
from stable_worldmodel.wm.tdmpc2.tdmpc2 import TDMPC2
from stable_worldmodel.wm.tdmpc2.module import two_hot_inv


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="TD-MPC2 cfg dict (JSON)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--envs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    with open(args.config) as f:
        config = json.load(f)
    cfg = OmegaConf.create(config)
    model = TDMPC2(cfg)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if p.ndim == 1 else 0.05
            p.add_(torch.randn(p.shape, generator=g) * scale)
    model = model.to(args.device).eval()

    dev, B, N, H, A = args.device, args.envs, args.samples, args.horizon, cfg.action_dim
    obs = {}
    for key in cfg.wm.encoding:
        if key == "pixels":
            obs[key] = torch.randn(B, 3, cfg.image_size, cfg.image_size, generator=g)
        else:
            obs[key] = torch.randn(B, cfg.extra_dims[key], generator=g)
    obs = {k: v.to(dev) for k, v in obs.items()}
    candidates = (torch.rand(B, N, H, A, generator=g) * 3.0 - 1.5).to(dev)

    with torch.inference_mode():
        z = model.encode(obs)
        za0 = torch.cat([z.unsqueeze(1).expand(B, N, -1), candidates[:, :, 0]], dim=-1)
        dynamics = model.dynamics(za0)
        reward = two_hot_inv(model.reward(za0), cfg)
        pi_mean = torch.tanh(model.pi(z).chunk(2, dim=-1)[0])
        zpi = torch.cat([z, pi_mean], dim=-1)
        q_values = torch.stack([two_hot_inv(q(zpi), cfg) for q in model.qs])
        cost = model.get_cost(dict(obs), candidates)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    torch.save(model.cpu().state_dict(), os.path.join(args.out, "weights.pt"))
    arrays = {f"obs_{k}": v for k, v in obs.items()}
    arrays.update(candidates=candidates, encode=z, dynamics=dynamics, reward=reward, pi_mean=pi_mean,
                  q_values=q_values, cost=cost)
    np.savez(os.path.join(args.out, "fixture.npz"),
             **{k: v.detach().float().cpu().numpy() for k, v in arrays.items()})
    meta = {"family": "tdmpc2", "contract": 1, "upstream": "stable-worldmodel==0.1.1", "semantics": "0.1.1",
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu", "tf32": False,
            "seed": args.seed}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {args.out}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
