#!/usr/bin/env bash
# Nsight Compute breakdown of one graph-replayed LeWM score (PushT-sized, 300 candidates × H5) per f32 matmul
# path: swm's split-TF32 GEMM (default) and cuBLAS f32 (`--cublas-f32`). Needs .gpu/ (bundle.sh --bins) and
# .whl/ carried; writes the CSVs and the per-kernel tables under $OUT.
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
python3 -m swm_tools.export_lewm --config tools/configs/lewm-pusht.json --out /tmp/lewm-pusht \
  --context 1 --steps 5 --samples 300 --seed 1 2>&1 | tail -1 | tee -a "$log"
ncu=/usr/local/cuda/bin/ncu
bash .gpu/run.sh exec swm --version >/dev/null  # unpacks the binary into /tmp/gpu-bin
for variant in default cublas-f32; do
  flag=$([ "$variant" = cublas-f32 ] && echo --cublas-f32)
  echo "== ncu: score 300 x H5, $variant" | tee -a "$log"
  $ncu --profile-from-start off --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum --csv /tmp/gpu-bin/swm $flag score /tmp/lewm-pusht --samples 300 --horizon 5 --profile \
    > "$out/ncu-$variant.csv" 2>>"$log"
  python3 tools/gpu/ncu_agg.py "$out/ncu-$variant.csv" ${TOP:-25} 2>&1 | tee -a "$log"
done
