#!/usr/bin/env bash
# Nsight Compute breakdown of one TD-MPC2 MPPI 512×6×H3 plan (new observation, graph replay: every kernel node of
# the iteration and proposal graphs is profiled on its own), summed per kernel name. Needs .gpu/ (pack.sh); writes
# the CSV and the table under $OUT. No Python packages needed.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$out/profile.txt"
bash .gpu/run.sh exec swm --version >/dev/null  # unpacks the binary into /tmp/gpu-bin
/usr/local/cuda/bin/ncu --profile-from-start off --clock-control none --cache-control none \
  --metrics gpu__time_duration.sum --csv /tmp/gpu-bin/swm bench tdmpc2 --profile \
  > "$out/ncu-tdmpc2.csv" 2>>"$out/profile.txt"
python3 tools/gpu/ncu_agg.py "$out/ncu-tdmpc2.csv" "${TOP:-30}" 2>&1 | tee -a "$out/profile.txt"
