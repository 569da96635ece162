"""Sum Nsight Compute's per-kernel durations by kernel name.

    ncu --profile-from-start off --metrics gpu__time_duration.sum --csv swm score DIR --profile > ncu.csv
    python3 tools/gpu/ncu_agg.py ncu.csv [top]
"""
import collections
import csv
import sys


def main():
    rows = list(csv.reader(open(sys.argv[1])))
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    header_at = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    header = rows[header_at]
    name_col, value_col = header.index("Kernel Name"), header.index("Metric Value")
    totals = collections.defaultdict(lambda: [0.0, 0])
    for r in rows[header_at + 1:]:
        if len(r) <= value_col:
            continue
        try:
            ns = float(r[value_col].replace(",", ""))
        except ValueError:
            continue
        entry = totals[r[name_col][:70]]
        entry[0] += ns
        entry[1] += 1
    total = sum(v for v, _ in totals.values())
    print(f"total {total / 1e6:.3f} ms over {sum(c for _, c in totals.values())} kernels")
    for name, (ns, count) in sorted(totals.items(), key=lambda x: -x[1][0])[:top]:
        print(f"{ns / 1e6:9.3f} ms {count:6d}x {ns / 1e3 / count:8.1f} us  {name}")


if __name__ == "__main__":
    main()
