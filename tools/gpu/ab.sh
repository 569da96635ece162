#!/usr/bin/env bash
# GPU host, one call: this checkout's swm against a base build in the same call. Runs the bundled GPU tests (skip
# with TESTS=0), then `swm bench tdmpc2 | lewm | plan` for the base and the new binary alternately, ROUNDS times
# (default 2), and with PROFILE=1 `ncu` per-kernel tables of one TF32 TD-MPC2 plan and one TF32 LeWM score of the
# new binary (ROUNDS=1 PROFILE=1 keeps a call with ~85 GPU tests under ~7 minutes). Needs .gpu/
# with the bins (shared/gpu/bundle.sh --bins -- --release --test gpu) and the base's swm.xz AND swm-gpu.xz in
# .gpu/base/ (the `swm` front end runs GPU commands through the `swm-gpu` beside it: a base without it prints no
# rows). Each bench command has a time limit (a kernel that hangs costs one row, not the call). Results under $OUT:
# ab-summary.txt (tests), ab-bench.txt, ab-profile-tf32-tdmpc2.txt, ab-profile-tf32-lewm.txt.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export CARGO_MANIFEST_DIR=$PWD
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
rm -rf /tmp/gpu-bin /tmp/base-bin
: > "$out/ab-summary.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout 240 bash .gpu/run.sh > /tmp/ab-tests.out 2>&1
  echo "tests rc=$?" >> "$out/ab-summary.txt"
  grep -a "gpu:\|test result\|FAILED\|panicked" /tmp/ab-tests.out >> "$out/ab-summary.txt"
fi
bash .gpu/run.sh exec swm --version > /dev/null 2>&1   # unpacks the binaries into /tmp/gpu-bin
mkdir -p /tmp/base-bin
for b in swm swm-gpu; do
  xz -dc ".gpu/base/$b.xz" > "/tmp/base-bin/$b" && chmod +x "/tmp/base-bin/$b" \
    || { echo "ab.sh: .gpu/base/$b.xz missing" | tee -a "$out/ab-summary.txt"; exit 2; }
done
for round in $(seq "${ROUNDS:-2}"); do
  for b in /tmp/base-bin/swm /tmp/gpu-bin/swm; do
    echo "== $b round $round"
    timeout 200 $b bench tdmpc2 --iters 100 2>&1 | grep -a "no warm start.* p50\|CUDA graph p50\|rror" \
      | grep -v "cuBLAS\|split-K\|unfused"
    timeout 100 $b bench lewm --iters 100 2>&1 | grep -a "lewm score\|lewm encode\|rror"
    timeout 200 $b bench plan --iters 10 2>&1 | grep -a "split-TF32 GEMM), CUDA graph p50\|TF32 GEMMs, CUDA graph\|rror"
  done
done > "$out/ab-bench.txt" 2>&1
if [ "${PROFILE:-0}" = 1 ]; then
  timeout 100 /usr/local/cuda/bin/ncu --profile-from-start off --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum --csv /tmp/gpu-bin/swm --tf32 bench tdmpc2 --profile > /tmp/ab-ncu.csv 2>/dev/null
  python3 tools/gpu/ncu_agg.py /tmp/ab-ncu.csv 30 > "$out/ab-profile-tf32-tdmpc2.txt" 2>&1
  timeout 100 /usr/local/cuda/bin/ncu --profile-from-start off --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum --csv /tmp/gpu-bin/swm --tf32 bench lewm --profile score > /tmp/ab-ncu-lewm.csv 2>/dev/null
  python3 tools/gpu/ncu_agg.py /tmp/ab-ncu-lewm.csv 30 > "$out/ab-profile-tf32-lewm.txt" 2>&1
fi
cat "$out/ab-summary.txt"
