#!/usr/bin/env bash
# GPU-host session for the media path (issue 12): the PyTorch/Pillow peers of `swm bench media` and the official
# pipeline's output on the 640x480 test JPEG (for `swm parity media`), written under $OUT. Needs .whl/
# (shared/gpu/python-wheels.sh).
set -uo pipefail
source tools/gpu/env.sh
python3 -m swm_tools.bench_media --json "$out/bench_media.json" --iters "${ITERS:-200}" 2>&1 | tail -20 | tee -a "$log"
# A tiny LeWM at a 224 input (random weights, fixed seed): small enough to carry back, same pipeline as PushT's.
python3 -m swm_tools.export_media_parity --config tools/configs/lewm-tiny.json --img-size 224 --seed 0 \
  --out "$out/media-parity" 2>&1 | tail -5 | tee -a "$log"
