"""Wall-clock timing of GPU work for the benchmark scripts: warm-up, then per-run latency ending with a device
synchronisation; p50 / p99 / min in ms."""
import time

import torch


def bench(label, fn, warmup, iters, width=52):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    row = {"name": label, "iters": iters, "p50_ms": times[len(times) // 2],
           "p99_ms": times[min(len(times) - 1, round((len(times) - 1) * 0.99))], "min_ms": times[0]}
    print(f"{label:<{width}} p50 {row['p50_ms']:8.3f} ms  p99 {row['p99_ms']:8.3f} ms  min {row['min_ms']:8.3f} ms",
          flush=True)
    return row
