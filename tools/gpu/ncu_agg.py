import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
hdr_i = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
hdr = rows[hdr_i]; ki = hdr.index("Kernel Name"); mi = hdr.index("Metric Value"); gi = hdr.index("Grid Size") if "Grid Size" in hdr else None
agg = collections.defaultdict(lambda: [0.0, 0]); total = 0.0
for r in rows[hdr_i + 1:]:
    if len(r) <= mi: continue
    try: v = float(r[mi].replace(",", ""))
    except ValueError: continue
    name = r[ki][:70]
    agg[name][0] += v; agg[name][1] += 1; total += v
print(f"total {total/1e6:.3f} ms over {sum(c for _, c in agg.values())} kernels")
for name, (v, c) in sorted(agg.items(), key=lambda x: -x[1][0])[:30]:
    print(f"{v/1e6:9.3f} ms {c:6d}x {v/1e3/c:8.1f} us  {name}")
