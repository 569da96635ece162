#!/usr/bin/env bash
# GPU-host session for libswm (issue 13): the C example plans with the demo LeWM artifact (synthetic 640x480 frames,
# then the 640x480 test JPEG) and with a TD-MPC2 artifact of the official baseline's size, and examples/c/bench
# measures the C call's overhead over the engine step. Carry .gpu/ (with libswm.so.xz, see below), .whl/ and the
# prebuilt examples/c/controller, examples/c/threads and examples/c/bench:
#   cargo build --release -p swm-ffi && make -C examples/c
#   bash ../shared/gpu/bundle.sh --bins -- --release --workspace --test gpu
#   xz -T0 -6 -c target/release/libswm.so > .gpu/files/target/release/libswm.so.xz
set -uo pipefail
source tools/gpu/env.sh
bash .gpu/run.sh exec swm --version > /dev/null 2>&1   # unpacks the binaries into /tmp/gpu-bin
mkdir -p /tmp/libswm && xz -d -c .gpu/files/target/release/libswm.so.xz > /tmp/libswm/libswm.so
export LD_LIBRARY_PATH="/tmp/libswm:$LD_LIBRARY_PATH"
rm -rf /tmp/lewm /tmp/tdmpc2 /tmp/tdmpc2-ckpt
/tmp/gpu-bin/swm demo --out /tmp/lewm 2>&1 | tail -1 | tee -a "$log"
python3 -m swm_tools.export_tdmpc2 --config tools/configs/tdmpc2-bench.json --out /tmp/tdmpc2-ckpt > /dev/null 2>&1
/tmp/gpu-bin/swm convert /tmp/tdmpc2-ckpt --out /tmp/tdmpc2 2>&1 | tail -1 | tee -a "$log"
examples/c/controller /tmp/lewm - 3 2>&1 | tee -a "$log"
examples/c/controller /tmp/lewm tests/data/media/baseline_420_640x480.jpg 3 2>&1 | tee -a "$log"
examples/c/controller /tmp/tdmpc2 - 3 2>&1 | tee -a "$log"
examples/c/threads /tmp/lewm 10 2>&1 | tee -a "$log"
examples/c/threads /tmp/tdmpc2 20 2>&1 | tee -a "$log"
for wait in poll inline; do
  examples/c/bench /tmp/tdmpc2 "${STEPS:-1000}" "$wait" 2>&1 | tee -a "$log"
  examples/c/bench /tmp/lewm "${STEPS_LEWM:-200}" "$wait" 2>&1 | tee -a "$log"
done
