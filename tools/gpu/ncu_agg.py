"""Sum Nsight Compute's per-kernel durations by kernel name, with any other metric averaged per kernel name.

    ncu --profile-from-start off --metrics gpu__time_duration.sum --csv swm score DIR --profile > ncu.csv
    python3 tools/gpu/ncu_agg.py ncu.csv [top]

With more metrics (e.g. `--metrics gpu__time_duration.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed`),
each kernel's row also shows the mean of every other metric over its launches (a percentage of peak stays one).
"""
import collections
import csv
import sys

TIME = "gpu__time_duration.sum"


def main():
    rows = list(csv.reader(open(sys.argv[1])))
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    header_at = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    header = rows[header_at]
    name_col, value_col = header.index("Kernel Name"), header.index("Metric Value")
    metric_col = header.index("Metric Name") if "Metric Name" in header else None
    totals = collections.defaultdict(lambda: [0.0, 0])
    others = collections.defaultdict(lambda: collections.defaultdict(list))
    metrics = []
    for r in rows[header_at + 1:]:
        if len(r) <= value_col:
            continue
        try:
            value = float(r[value_col].replace(",", ""))
        except ValueError:
            continue
        name = r[name_col][:70]
        metric = r[metric_col] if metric_col is not None else TIME
        if metric == TIME:
            entry = totals[name]
            entry[0] += value
            entry[1] += 1
        else:
            if metric not in metrics:
                metrics.append(metric)
            others[name][metric].append(value)
    total = sum(v for v, _ in totals.values())
    print(f"total {total / 1e6:.3f} ms over {sum(c for _, c in totals.values())} kernels")
    if metrics:
        print("columns after the name's launch count and time: the mean of " + ", ".join(metrics))
    for name, (ns, count) in sorted(totals.items(), key=lambda x: -x[1][0])[:top]:
        extra = "".join(
            f" {sum(v) / len(v):8.1f}" if (v := others[name].get(m)) else f" {'-':>8}" for m in metrics
        )
        print(f"{ns / 1e6:9.3f} ms {count:6d}x {ns / 1e3 / count:8.1f} us{extra}  {name}")


if __name__ == "__main__":
    main()
