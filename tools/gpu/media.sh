#!/usr/bin/env bash
# GPU-host session for the media path (issue 12), in one call: `swm bench media` and its PyTorch/Pillow peers
# (swm_tools.bench_media) side by side, then media parity — the official pipeline on the 640x480 test JPEG
# (swm_tools.export_media_parity, a tiny LeWM with random weights at upstream's Resize(224)) against
# `swm parity media`. Results under $OUT. Needs .whl/ (shared/gpu/python-wheels.sh) and .gpu/ with the bins
# (shared/gpu/bundle.sh --bins ...).
set -uo pipefail
source tools/gpu/env.sh
bash .gpu/run.sh exec swm --version > /dev/null 2>&1   # unpacks the binaries into /tmp/gpu-bin
export CARGO_MANIFEST_DIR=$PWD
swm=/tmp/gpu-bin/swm
"$swm" media caps 2>&1 | tee -a "$log"
"$swm" bench media --iters "${ITERS:-200}" --json "$out/swm_bench_media.json" 2>&1 | tee -a "$log"
python3 -m swm_tools.bench_media --json "$out/bench_media.json" --iters "${ITERS:-200}" 2>&1 | tail -14 | tee -a "$log"
parity=/tmp/media-parity
python3 -m swm_tools.export_media_parity --config tools/configs/lewm-tiny.json --img-size 224 --seed 0 \
  --out "$parity" 2>&1 | tail -3 | tee -a "$log"
"$swm" parity media --fixture "$parity" --jpeg tests/data/media/baseline_420_640x480.jpg \
  --json "$out/media_parity.json" 2>&1 | tee -a "$log"
