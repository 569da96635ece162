"""The best PyTorch a user could write for swm's TD-MPC2 plan (issue 14's peer row): the official stable-worldmodel
0.1.1 modules, the observation encoded once (the official `get_cost` re-encodes it for every candidate, every
iteration), the whole MPPI plan as one function with no host synchronisation inside — the actor's prior, then
`iters` iterations of sample / roll out / top-k / softmax-weighted mean — timed eager, captured in a
`torch.cuda.CUDAGraph`, and under `torch.compile(mode="reduce-overhead")` (how the original TD-MPC2 repository
compiles its planner), each in fp32 and with TF32. Same work as `swm bench tdmpc2` and as the official
`MPPISolver` (512 samples x 6 iterations, top-64, temperature 0.5, horizon 3, var_scale 1).

    python -m swm_tools.peer_tdmpc2 --config configs/tdmpc2-bench.json [--iters 50] [--json out.json]
    python -m swm_tools.peer_tdmpc2 --config configs/tdmpc2-bench.json --check [--device cpu]

`--check` runs the peer eagerly against the official `MPPISolver.solve` with the same seeds (the actor prior draws
from the global RNG, the candidates from the solver's generator) and fails unless the planned means agree: the peer
does the official plan's work, only without its overheads.
"""
# ruff: noqa: I001  (the official package's import stubs must be installed before its modules are imported)
import argparse
import contextlib
import io
import json
import types

import numpy as np

from . import official  # noqa: F401  (installs the import stubs first)
from .timing import peer_rows
import gymnasium as gym
import torch
from omegaconf import OmegaConf
from stable_worldmodel.solver import MPPISolver
from stable_worldmodel.wm.tdmpc2.module import log_std, two_hot_inv
from stable_worldmodel.wm.tdmpc2.tdmpc2 import TDMPC2

SAMPLES, ITERS, TOPK, TEMPERATURE, HORIZON, VAR_SCALE = 512, 6, 64, 0.5, 3, 1.0


def make_plan(model, cfg, generator=None):
    """The whole plan for one env as one function of the state: returns the planned mean (1, H, A)."""
    a = cfg.action_dim
    discount0 = cfg.wm.get("discount", 0.99)
    penalty_c = cfg.wm.get("uncertainty_penalty", 0.5)

    def cost(z, actions):
        # The official get_cost on a latent encoded once: (N, L) latents, (N, H, A) candidates -> (N,) costs.
        g, discount = 0.0, 1.0
        for t in range(actions.shape[1]):
            z_a = torch.cat([z, actions[:, t]], dim=-1)
            g = g + discount * two_hot_inv(model.reward(z_a), cfg)
            z = model.dynamics(z_a)
            discount = discount * discount0
        action = torch.tanh(model.pi(z).chunk(2, dim=-1)[0])
        z_a = torch.cat([z, action], dim=-1)
        q = torch.stack([two_hot_inv(q(z_a), cfg) for q in model.qs])
        q_mean, q_std = q.mean(dim=0), q.std(dim=0)
        return -(g + discount * (q_mean - penalty_c * q_mean.abs() * q_std)).view(-1)

    if cfg.get("num_pi_trajs", 1) != 1:
        raise SystemExit("the peer rolls out one actor trajectory for the prior (num_pi_trajs = 1)")

    def plan(state):
        z = model.encode({"state": state})  # (1, L): once
        # The actor's prior over the horizon (prepare_init_action -> get_action -> rollout, one trajectory).
        prior, zz = [], z
        for _ in range(HORIZON):
            mean_raw, log_std_raw = model.pi(zz).chunk(2, dim=-1)
            act = torch.tanh(mean_raw + log_std(log_std_raw, low=-10, dif=12).exp() * torch.randn_like(mean_raw))
            prior.append(act)
            zz = model.dynamics(torch.cat([zz, act], dim=-1))
        mean = torch.stack(prior, dim=1)  # (1, H, A)
        zn = z.expand(SAMPLES, -1)
        for _ in range(ITERS):
            noise = torch.randn(1, SAMPLES, HORIZON, a, generator=generator, device=state.device)
            candidates = mean.unsqueeze(1) + noise * VAR_SCALE
            candidates[:, 0] = mean
            costs = cost(zn, candidates[0])
            top_costs, top = torch.topk(costs, k=TOPK, largest=False)
            weights = torch.softmax(-(top_costs - top_costs.min()) / TEMPERATURE, dim=0)
            mean = (weights[:, None, None] * candidates[0, top]).sum(dim=0, keepdim=True)
        return mean

    return plan


def official_plan(model, cfg, state, seed, device):
    solver = MPPISolver(model, num_samples=SAMPLES, n_steps=ITERS, topk=TOPK, temperature=TEMPERATURE,
                        var_scale=VAR_SCALE, device=device, seed=seed)
    solver.configure(action_space=gym.spaces.Box(-1, 1, shape=(1, cfg.action_dim), dtype=np.float32), n_envs=1,
                     config=types.SimpleNamespace(horizon=HORIZON, action_block=1))
    with contextlib.redirect_stdout(io.StringIO()):  # the solver prints its solve time
        return solver.solve({"state": state})["actions"]


def check(model, cfg, device):
    # Upstream zero-initialises the reward and Q heads' last layers, which makes every candidate cost the same:
    # random weights there, so that the check exercises the cost (discount, terminal Q, penalty) and the top-k.
    with torch.no_grad():
        for head in [model.reward, *model.qs]:
            for p in head.parameters():
                p.normal_(0.0, 0.05)
    state = torch.randn(1, cfg.extra_dims["state"], device=device)
    torch.manual_seed(11)
    want = official_plan(model, cfg, state, seed=3, device=device)
    torch.manual_seed(11)
    generator = torch.Generator(device=device).manual_seed(3)
    got = make_plan(model, cfg, generator)(state).cpu()
    diff = (got - want).abs().max().item()
    print(f"peer vs official MPPISolver: max |mean difference| {diff:.3e}")
    if not diff <= 1e-4:
        raise SystemExit("the peer does not plan what the official solver plans")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    torch.manual_seed(0)
    with open(args.config) as f:
        cfg = OmegaConf.create(json.load(f))
    model = TDMPC2(cfg).to(args.device).eval()
    with torch.inference_mode():
        if args.check:
            torch.backends.cuda.matmul.allow_tf32 = False
            check(model, cfg, args.device)
            return
    print("peer (official modules, one function), torch", torch.__version__, "on", torch.cuda.get_device_name(0))
    state = torch.randn(1, cfg.extra_dims["state"], device="cuda")
    rows = []
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        mode = "tf32" if tf32 else "fp32"
        rows += peer_rows("peer tdmpc2 mppi 512x6 H3", mode, make_plan(model, cfg), (state,), args.iters)
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
