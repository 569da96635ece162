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


def peer_rows(name, mode, plan, args, iters, warmup=3, width=56, compile=True):
    """The three rows of a best-PyTorch peer for one precision `mode` ("fp32", "tf32", already set by the caller):
    `plan(*args)` eager, captured once in a `torch.cuda.CUDAGraph` (after warm-up runs on a side stream) and
    replayed, and under `torch.compile(mode="reduce-overhead")` (`compile=False` leaves that row to
    `compile_row`, for callers that run the slow compilations last)."""
    rows = []
    with torch.inference_mode():
        rows.append(bench(f"{name} eager {mode}", lambda: plan(*args), warmup, iters, width))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                plan(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            graph_out = plan(*args)  # noqa: F841  (the graph's output buffer)
        rows.append(bench(f"{name} cudagraph {mode}", graph.replay, warmup, iters, width))
    if compile:
        rows.append(compile_row(name, mode, plan, args, iters, warmup, width))
    return rows


def compile_row(name, mode, plan, args, iters, warmup=3, width=56):
    """The `torch.compile(mode="reduce-overhead")` row of `peer_rows`."""
    compiled = torch.compile(plan, mode="reduce-overhead")
    with torch.inference_mode():
        return bench(f"{name} compile(reduce-overhead) {mode}", lambda: compiled(*args), warmup + 2, iters, width)
