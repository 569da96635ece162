#!/usr/bin/env bash
# GPU-host session for training (issue 15), in one call: `swm train-batch` end to end on the demo artifact (a uint8
# NPZ batch, five AdamW steps, the trained artifact inspected and planned with), then the training-step rows side
# by side — `swm bench train` (f32, TF32) and the official step (swm_tools.bench_train: upstream's bf16 autocast,
# fp32, TF32) on the PushT-sized config, batch $BATCH (default 128). Results under $OUT. Needs .whl/ and .gpu/ with
# the bins (shared/gpu/bundle.sh --bins ...).
set -uo pipefail
source tools/gpu/env.sh
bash .gpu/run.sh exec swm --version > /dev/null 2>&1   # unpacks the binaries into /tmp/gpu-bin
export CARGO_MANIFEST_DIR=$PWD
swm=/tmp/gpu-bin/swm
rm -rf /tmp/train-demo /tmp/train-out
"$swm" demo --out /tmp/train-demo 2>&1 | tail -1 | tee -a "$log"
python3 - <<'PY' 2>&1 | tee -a "$log"
import json, numpy as np
cfg = json.load(open("/tmp/train-demo/config.json"))
side = json.load(open("/tmp/train-demo/preprocess.json"))["image_size"][0]
a = cfg["action_encoder"]["input_dim"]
rng = np.random.default_rng(0)
np.savez("/tmp/train-batch.npz", pixels=rng.integers(0, 256, (8, 4, 3, side, side), dtype=np.uint8),
         actions=rng.standard_normal((8, 4, a)).astype(np.float32))
print(f"batch: 8 clips x 4 frames of 3x{side}x{side} uint8, actions {a}")
PY
"$swm" train-batch --artifact /tmp/train-demo --batch /tmp/train-batch.npz --steps 5 --lr 1e-3 \
  --out /tmp/train-out 2>&1 | tee -a "$log"
"$swm" inspect /tmp/train-out 2>&1 | head -5 | tee -a "$log"
"$swm" plan /tmp/train-out --repeat 2 2>&1 | tail -3 | tee -a "$log"
"$swm" bench train --batch-size "${BATCH:-128}" --iters "${ITERS:-20}" --json "$out/swm_bench_train.json" 2>&1 \
  | tee -a "$log"
python3 -m swm_tools.bench_train --config tools/configs/lewm-pusht.json --batch "${BATCH:-128}" \
  --iters "${ITERS:-20}" --json "$out/bench_train_official.json" 2>&1 | tee -a "$log"
