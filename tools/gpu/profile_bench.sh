#!/usr/bin/env bash
# Nsight Compute breakdown of one profiled run of `swm bench NAME --profile` (NAME: tdmpc2, the default — one MPPI
# 512×6×H3 plan from a new observation; lewm — one graph-replayed encode of a 224² frame, or with PART `score` one
# graph-replayed scoring of 300 candidates × H5, a CEM iteration's model work; train — one training step),
# every kernel (each node of a replayed CUDA graph) timed on its own and summed per kernel name. Needs .gpu/
# (pack.sh); writes ncu-NAME.csv and the table (profile-NAME.txt) under $OUT. No Python packages needed.
#   bash tools/gpu/profile_bench.sh [NAME [PART]]   (TOP=N: rows of the table, default 30)
set -uo pipefail
name=${1:-tdmpc2}
part=${2:-}
tag=$name${part:+-$part}
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$out/profile-$tag.txt"
bash .gpu/run.sh exec swm --version >/dev/null  # unpacks the binary into /tmp/gpu-bin
/usr/local/cuda/bin/ncu --profile-from-start off --clock-control none --cache-control none \
  --metrics gpu__time_duration.sum --csv /tmp/gpu-bin/swm bench "$name" --profile $part \
  > "$out/ncu-$tag.csv" 2>>"$out/profile-$tag.txt"
python3 tools/gpu/ncu_agg.py "$out/ncu-$tag.csv" "${TOP:-30}" 2>&1 | tee -a "$out/profile-$tag.txt"
