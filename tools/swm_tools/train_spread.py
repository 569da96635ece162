"""The official training step's own spread between two exports of the same run (issue 15): e.g. a CPU export and
a GPU export with `--cpu-directions` (same initial weights, batch and SIGReg directions; only the arithmetic
differs). Prints every step's loss and gradient-norm difference (relative) and the trained weights' largest
difference on the scale `swm parity train` uses (max |a - b| / max(1, max |a|) per tensor, the tensors the first
export marks gradient-free left out), with the tensor it comes from and how many elements lie beyond 1e-4.

    python -m swm_tools.train_spread A_DIR B_DIR [--json OUT]
"""
import argparse
import json
import pathlib

from safetensors.numpy import load_file


def spread(a_dir, b_dir, tol=1e-4):
    a_dir, b_dir = pathlib.Path(a_dir), pathlib.Path(b_dir)
    a, b = load_file(a_dir / "steps.safetensors"), load_file(b_dir / "steps.safetensors")
    meta = json.loads((a_dir / "meta.json").read_text())
    free = set(meta.get("gradient_free", []))
    rel = lambda x, y: float(abs(x - y) / max(abs(y), 1e-30))  # noqa: E731
    out = {"loss": [], "grad_norm": []}
    for k in range(meta["steps"]):
        out["loss"].append(rel(b[f"loss.{k}"], a[f"loss.{k}"]))
        out["grad_norm"].append(rel(b[f"grad_norm.{k}"], a[f"grad_norm.{k}"]))
    worst, worst_key, beyond, elements = 0.0, "", 0, 0
    for key in (k for k in a if k.startswith("final.")):
        name = key[len("final."):]
        if name in free or a[key].dtype.kind != "f":
            continue
        scale = max(1.0, float(abs(a[key]).max()))
        d = abs(b[key].astype("float64") - a[key].astype("float64"))
        if float(d.max()) / scale > worst:
            worst, worst_key = float(d.max()) / scale, name
        beyond += int((d > tol * scale).sum())
        elements += d.size
    out.update(weights=worst, weights_worst=worst_key, weights_beyond=beyond, weights_elements=elements)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json")
    args = ap.parse_args()
    s = spread(args.a, args.b)
    print(f"official spread: loss max {max(s['loss']):.2e} relative, gradient norm max {max(s['grad_norm']):.2e}, "
          f"weights {s['weights']:.3e} (worst {s['weights_worst']}; {s['weights_beyond']} of "
          f"{s['weights_elements']} elements beyond 1e-4)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(s, indent=1))


if __name__ == "__main__":
    main()
