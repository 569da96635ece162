"""Reads tools/gpu/ab.sh's ab-bench.txt: every row's p50 for the base and the new binary (the median over rounds),
the ratio, and issue 14's targets against the new binary's best row of each kind.

Usage: python3 tools/gpu/ab_table.py ab-bench.txt
"""

import re
import statistics
import sys

ROW = re.compile(r"^(?P<name>.+?)\s+p50\s+(?P<p50>[\d.]+) ms\s+p99\s+(?P<p99>[\d.]+) ms")

# Issue 14's acceptance: (what, rows of the new binary that count, p50 bound in ms, p99 bound or None).
TARGETS = [
    ("TD-MPC2 MPPI 512x6 H3, fastest mode", r"^tdmpc2 mppi 512x6 H3 TF32 .*new observation", 1.0, 1.2),
    ("TD-MPC2 MPPI 512x6 H3, f32-class", r"^tdmpc2 mppi 512x6 H3 f32 \(split-TF32 GEMM\), new observation", 1.5, None),
    ("LeWM CEM 300x30 H5, fastest mode", r"^lewm cem 300x30 H5 TF32 ", 35.0, None),
    ("LeWM iCEM 1024x5 H5, fastest mode", r"^lewm icem 1024x5 H5 TF32 ", 12.0, None),
    ("ViT-Tiny encode 224², CUDA graph", r"^lewm encode 1x224x224 fp32, CUDA graph", 0.6, None),
]


def parse(lines):
    """{binary: {row: [(p50, p99), ...]}} in the order rows first appear."""
    runs, binary = {}, None
    for line in lines:
        if line.startswith("== "):
            binary = "base" if "/base-bin/" in line else "new"
            runs.setdefault(binary, {})
            continue
        m = ROW.match(line.strip())
        if binary and m:
            runs[binary].setdefault(m["name"], []).append((float(m["p50"]), float(m["p99"])))
    return runs


def median(values, i):
    return statistics.median(v[i] for v in values)


def main(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        runs = parse(f)
    base, new = runs.get("base", {}), runs.get("new", {})
    names = list(dict.fromkeys([*base, *new]))
    if not names:
        print(f"{path}: no bench rows")
        return 1
    width = max(len(n) for n in names)
    print(f"{'row':<{width}}  {'base p50':>9}  {'new p50':>9}  {'new/base':>8}  {'new p99':>8}")
    for name in names:
        b = f"{median(base[name], 0):9.3f}" if name in base else f"{'-':>9}"
        n = f"{median(new[name], 0):9.3f}" if name in new else f"{'-':>9}"
        ratio = f"{median(new[name], 0) / median(base[name], 0):8.3f}" if name in base and name in new else f"{'':>8}"
        p99 = f"{median(new[name], 1):8.3f}" if name in new else f"{'':>8}"
        print(f"{name:<{width}}  {b}  {n}  {ratio}  {p99}")
    print()
    for what, pattern, bound, p99_bound in TARGETS:
        rows = [(median(v, 0), median(v, 1), k) for k, v in new.items() if re.search(pattern, k)]
        if not rows:
            print(f"target {what}: no row")
            continue
        p50, p99, name = min(rows)
        met = p50 <= bound and (p99_bound is None or p99 <= p99_bound)
        bounds = f"p50 <= {bound} ms" + (f", p99 <= {p99_bound} ms" if p99_bound else "")
        print(f"target {what}: {'MET' if met else 'not met'} ({bounds}): p50 {p50:.3f} ms, p99 {p99:.3f} ms, {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "ab-bench.txt"))
