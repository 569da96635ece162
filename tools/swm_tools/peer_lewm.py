"""The best PyTorch a user could write for swm's LeWM CEM and iCEM plans (issue 14's peer rows for LeWM): the official
stable-worldmodel 0.1.1 modules, the observation and the goal encoded once, outside the timed plan (as swm's
`bench plan` rows replan from the cached embeddings), and the whole CEM plan as one function with no host
synchronisation inside — `iters` iterations of sample / roll the predictor out over the horizon / goal cost /
top-k / mean and standard deviation of the elites — timed eager, captured in a `torch.cuda.CUDAGraph`, and with the
rollout under `torch.compile(mode="reduce-overhead")` (compiling the whole plan unrolls its iterations and ran past
a device call's time), each in fp32 and with TF32. Same work as the official `CEMSolver` on
`LeWM.get_cost` (which also encodes once per solve, then reads every iteration's cost back to the host): 300
samples x 30 iterations, top-30, horizon 5 in PushT's action blocks of 5, var_scale 1; and as the official
`ICEMSolver`: 1024 samples x 5 iterations, top-30, coloured noise (beta 2), 5 elites carried over, momentum 0.1,
candidates clamped to the action box.

    python -m swm_tools.peer_lewm --config configs/lewm-pusht.json [--iters 20] [--json out.json]
    python -m swm_tools.peer_lewm --config configs/lewm-tiny.json --check [--device cpu]

`--check` runs both peers eagerly against the official `CEMSolver.solve` / `ICEMSolver.solve` with the same
generator seed (the solver draws every iteration's candidates from it, nothing else does) and fails unless the
planned means agree.
"""
# ruff: noqa: I001  (the official package's import stubs must be installed before its modules are imported)
import argparse
import contextlib
import functools
import io
import json
import types

import numpy as np

from . import official
from .timing import bench, peer_rows
import gymnasium as gym
import torch
from stable_worldmodel.solver import CEMSolver, ICEMSolver

HORIZON, BLOCK, VAR_SCALE = 5, 5, 1.0
# (samples, iterations, top-k) of the timed rows: upstream's CEM and iCEM settings of `swm bench plan`.
SOLVERS = {"cem": (300, 30, 30), "icem": (1024, 5, 30)}
BETA, ALPHA, KEEP = 2.0, 0.1, 5  # ICEMSolver's defaults: noise colour, momentum, elites carried over


def rollout_cost(model, config):
    """`cost(emb, goal, candidates)`: LeWM.get_cost for one observation on cached embeddings."""
    history = config["predictor"].get("num_frames", 3)

    def cost(emb, goal, candidates):
        # LeWM.rollout + criterion for one observation frame: the action embeddings of every step, the predictor
        # rolled out autoregressively over a window of `history` frames, the last prediction's squared distance
        # to the goal embedding.
        n = candidates.shape[0]
        act_emb = model.action_encoder(candidates)  # (N, H, A_emb)
        frames = [emb[:, 0].expand(n, -1)]
        for t in range(HORIZON):
            lo = max(0, 1 + t - history)
            frames.append(model.predict(torch.stack(frames[lo:], dim=1), act_emb[:, lo:1 + t])[:, -1])
        return ((frames[-1] - goal[:, 0]) ** 2).sum(dim=-1)  # (N,)

    return cost


def compiled_cost(model, config):
    """`rollout_cost` under `torch.compile(mode="reduce-overhead")`: the rollout (every step, every predictor block)
    compiled once and replayed from CUDA graphs. Compiling the whole plan instead unrolls its 30 iterations and took
    longer than a device call (session 11, session 18). Static shapes: each `rollout_cost` is a new closure over
    the same code, so without `dynamic=False` the iCEM compile after CEM's (1024 candidates after 300) would turn
    the candidate count symbolic. Each call starts a new step of the compiled graphs and returns a copy, so that a
    graph's output buffer is free before the next call."""
    compiled = torch.compile(rollout_cost(model, config), mode="reduce-overhead", dynamic=False)

    def cost(emb, goal, candidates):
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(emb, goal, candidates).clone()

    return cost


def check_compiled(model, config, cost, emb, goal, samples):
    """Fails unless the compiled `cost` scores one batch of random candidates as the eager rollout does (within 1e-2
    of the largest cost: TF32 and inductor's own kernels differ in rounding; an overwritten graph buffer would not
    come close). Also compiles it for the plan's shape before the timed runs."""
    a = config["action_encoder"].get("input_dim", 10)
    candidates = torch.rand(samples, HORIZON, a, device=emb.device) * 2 - 1
    want = rollout_cost(model, config)(emb, goal, candidates)
    got = cost(emb, goal, candidates)
    diff = ((got - want).abs().max() / want.abs().max().clamp(min=1e-12)).item()
    print(f"compiled rollout vs eager, {samples} candidates: max difference {diff:.1e} of the largest cost", flush=True)
    if not diff <= 1e-2:
        raise SystemExit("the compiled rollout does not score what the eager one scores")


def make_plan(model, config, solver="cem", generator=None, shape=None, cost=None):
    """The plan for one env as one function of the cached embeddings: `emb` (1, 1, D) of the observation, `goal`
    (1, 1, D); returns the planned mean (1, H, A) with A = the action encoder's input (PushT: 5 blocks of 2).
    `shape` overrides (samples, iterations, top-k); `cost` the candidates' cost (default: `rollout_cost`)."""
    a = config["action_encoder"].get("input_dim", 10)
    samples, iters, topk = shape or SOLVERS[solver]
    cost = cost or rollout_cost(model, config)

    def cem(emb, goal):
        mean = torch.zeros(1, HORIZON, a, device=emb.device)
        std = torch.full((1, HORIZON, a), VAR_SCALE, device=emb.device)
        for _ in range(iters):
            noise = torch.randn(1, samples, HORIZON, a, generator=generator, device=emb.device)
            candidates = noise * std.unsqueeze(1) + mean.unsqueeze(1)
            candidates[:, 0] = mean
            costs = cost(emb, goal, candidates[0])
            elites = candidates[0, torch.topk(costs, k=topk, largest=False).indices]
            mean, std = elites.mean(dim=0, keepdim=True), elites.std(dim=0, keepdim=True)
        return mean

    # iCEM's coloured noise along the horizon: the white noise's spectrum scaled by f^(-beta/2) (the constant term as
    # the lowest frequency), then each sequence rescaled to unit standard deviation. The scale is a constant, made
    # here once: writing a Python number into a CUDA tensor inside the plan is a host copy, which a CUDA graph
    # capture refuses.
    freqs = torch.fft.rfftfreq(HORIZON, device=next(model.parameters()).device)
    freqs[0] = 1.0
    scale = freqs.pow(-BETA / 2)
    scale[0] = scale[1]

    def icem(emb, goal):
        mean = torch.zeros(1, HORIZON, a, device=emb.device)
        std = torch.full((1, HORIZON, a), VAR_SCALE, device=emb.device)
        elites = None
        for _ in range(iters):
            white = torch.randn(1, samples, a, HORIZON, generator=generator, device=emb.device)
            colored = torch.fft.irfft(torch.fft.rfft(white, dim=-1) * scale, n=HORIZON, dim=-1)
            noise = (colored / colored.std(dim=-1, keepdim=True).clamp(min=1e-8)).transpose(-1, -2)
            candidates = noise * std.unsqueeze(1) + mean.unsqueeze(1)
            candidates[:, 0] = mean
            if elites is not None:
                keep = min(KEEP, elites.shape[0])
                candidates[0, 1:1 + keep] = elites[:keep]
            candidates = candidates.clamp(-1.0, 1.0)
            costs = cost(emb, goal, candidates[0])
            elites = candidates[0, torch.topk(costs, k=topk, largest=False).indices]
            mean = ALPHA * mean + (1 - ALPHA) * elites.mean(dim=0, keepdim=True)
            std = ALPHA * std + (1 - ALPHA) * elites.std(dim=0, keepdim=True)
        return mean

    return {"cem": cem, "icem": icem}[solver]


def official_plan(model, config, solver, pixels, goal, seed, device, shape):
    a = config["action_encoder"].get("input_dim", 10)
    block = BLOCK if a % BLOCK == 0 else 1  # the solver's action dim is (a / block) x block = a either way
    samples, iters, topk = shape
    kind = {"cem": CEMSolver, "icem": ICEMSolver}[solver]
    solver = kind(model, num_samples=samples, n_steps=iters, topk=topk, var_scale=VAR_SCALE, device=device, seed=seed)
    solver.configure(action_space=gym.spaces.Box(-1, 1, shape=(1, a // block), dtype=np.float32), n_envs=1,
                     config=types.SimpleNamespace(horizon=HORIZON, action_block=block))
    info = {"pixels": pixels, "goal": goal, "action": torch.zeros(1, 1, a, device=device)}
    with contextlib.redirect_stdout(io.StringIO()):  # the solver prints its solve time
        return solver.solve(info)["actions"]


def embeddings(model, pixels, goal):
    """The observation's and the goal's embeddings (1, 1, D), as `LeWM.encode` makes them."""
    return model.encode({"pixels": pixels})["emb"], model.encode({"pixels": goal})["emb"]


def check(model, config, device):
    side = config["encoder"].get("image_size", 224)
    g = torch.Generator().manual_seed(5)
    pixels = torch.randn(1, 1, 3, side, side, generator=g).to(device)
    goal = torch.randn(1, 1, 3, side, side, generator=g).to(device)
    # Fewer samples and iterations keep a CPU check short; the plan's code is the same.
    shape = (64, 4, 8)
    emb, goal_emb = embeddings(model, pixels, goal)
    for solver in SOLVERS:
        want = official_plan(model, config, solver, pixels, goal, 3, device, shape)
        generator = torch.Generator(device=device).manual_seed(3)
        got = make_plan(model, config, solver, generator, shape)(emb, goal_emb).cpu()
        diff = (got - want).abs().max().item()
        print(f"peer vs official {solver} solver: max |mean difference| {diff:.3e} ({shape[0]} samples x "
              f"{shape[1]} iterations)")
        if not diff <= 1e-4:
            raise SystemExit(f"the {solver} peer does not plan what the official solver plans")


def set_tf32(tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def bench_solver(model, config, solver, name, pixels, goal, iters, compile):
    """Eager and CUDA-graph rows (`compile=False`) or the torch.compile rows (`compile=True`: the rollout compiled
    with mode="reduce-overhead", the iterations' sampling and top-k eager around it) of one solver's peer, fp32
    then TF32."""
    rows = []
    for tf32 in (False, True):
        set_tf32(tf32)
        with torch.inference_mode():
            emb, goal_emb = embeddings(model, pixels, goal)
        mode = "tf32" if tf32 else "fp32"
        if compile:
            cost = compiled_cost(model, config)
            plan = make_plan(model, config, solver, cost=cost)
            with torch.inference_mode():
                check_compiled(model, config, cost, emb, goal_emb, SOLVERS[solver][0])
                run = functools.partial(plan, emb, goal_emb)
                rows.append(bench(f"{name} compile(reduce-overhead) {mode}", run, warmup=4, iters=iters, width=56))
        else:
            plan = make_plan(model, config, solver)
            rows += peer_rows(name, mode, plan, (emb, goal_emb), iters, warmup=2, compile=False)
    set_tf32(False)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    set_tf32(False)
    with open(args.config) as f:
        config = json.load(f)
    model = official.randomize_(official.build_lewm(config), 0).to(args.device).eval()
    if args.check:
        with torch.inference_mode():
            check(model, config, args.device)
        return
    print("peer (official modules, one function), torch", torch.__version__, "on", torch.cuda.get_device_name(0))
    side = config["encoder"].get("image_size", 224)
    pixels = torch.randn(1, 1, 3, side, side, device="cuda")
    goal = torch.randn(1, 1, 3, side, side, device="cuda")
    # torch.compile of a 30-iteration CEM takes minutes: every eager and CUDA-graph row first, the compiled rows
    # last, and the JSON rewritten after each solver so that a time limit leaves the rows measured so far.
    rows = []
    for compile in (False, True):
        for solver, (samples, iters, _) in SOLVERS.items():
            rows += bench_solver(model, config, solver, f"peer lewm {solver} {samples}x{iters} H{HORIZON}", pixels,
                                 goal, args.iters, compile)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
