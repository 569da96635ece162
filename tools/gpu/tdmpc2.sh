#!/usr/bin/env bash
# One GPU-host session for TD-MPC2: export the tiny parity fixture with the official package (into
# tests/fixtures/tdmpc2-tiny, also packed as $OUT/tdmpc2-fixture.tgz), `swm parity tdmpc2`, the TD-MPC2 GPU tests, and
# the MPPI 512x6xH3 benchmark of the official solver and of swm in the same call. Needs .gpu/ (bundle.sh --bins) and
# .whl/ carried.
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
echo "== export tdmpc2-tiny (official stable-worldmodel 0.1.1)" | tee -a "$log"
python3 -m swm_tools.export_tdmpc2 --config tools/configs/tdmpc2-tiny.json --out tests/fixtures/tdmpc2-tiny \
  --seed 0 2>&1 | tail -3 | tee -a "$log"
tar czf "$out/tdmpc2-fixture.tgz" tests/fixtures/tdmpc2-tiny
echo "== swm parity tdmpc2" | tee -a "$log"
bash .gpu/run.sh exec swm parity tdmpc2 --fixture tests/fixtures/tdmpc2-tiny 2>&1 | tee -a "$log"
echo "== gpu tests: ${TESTS:-tdmpc2}" | tee -a "$log"
bash .gpu/run.sh tests ${TESTS:-tdmpc2} 2>&1 | grep -E "^test |test result|panicked|gpu:" | tee -a "$log"
echo "== bench: official MPPI on TD-MPC2, then swm" | tee -a "$log"
python3 -m swm_tools.bench_tdmpc2 --config tools/configs/tdmpc2-bench.json --iters ${ITERS:-20} \
  --json "$out/bench-tdmpc2-official.json" 2>&1 | tee -a "$log"
bash .gpu/run.sh exec swm bench tdmpc2 --iters ${ITERS:-20} --json "$out/bench-tdmpc2-swm.json" 2>&1 | tee -a "$log"
echo "== done" | tee -a "$log"
