#!/usr/bin/env bash
# One GPU-host session for the runtime API (Engine and sessions): every packed GPU test, the three parity checks on
# the committed fixtures, `swm plan` on a LeWM and on a TD-MPC2 artifact with MPPI, CEM and iCEM, and the planner
# benchmarks of the official solvers and of swm in the same call. Needs .gpu/ (shared/gpu/bundle.sh --bins) and
# .whl/ (shared/gpu/python-wheels.sh) carried. OFFICIAL=0 skips the official rows; ITERS sets the timed runs.
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
swm() { bash .gpu/run.sh exec swm "$@"; }
echo "== gpu tests" | tee -a "$log"
bash .gpu/run.sh 2>&1 | grep -E "^test |test result|panicked|gpu:|FAILED" | tee -a "$log"
echo "== parity" | tee -a "$log"
swm parity lewm --fixture tests/fixtures/lewm-tiny 2>&1 | tee -a "$log"
swm parity tdmpc2 --fixture tests/fixtures/tdmpc2-tiny 2>&1 | tee -a "$log"
swm parity planner --fixture tests/fixtures/lewm-tiny 2>&1 | tee -a "$log"
echo "== swm plan: demo LeWM artifact, then a TD-MPC2 artifact with each solver" | tee -a "$log"
swm plan --repeat 3 2>&1 | tee -a "$log"
swm convert tests/fixtures/tdmpc2-tiny --out /tmp/tdmpc2-artifact 2>&1 | tee -a "$log"
for solver in mppi cem icem; do
  swm plan /tmp/tdmpc2-artifact --solver "$solver" --repeat 3 2>&1 | tee -a "$log"
done
echo "== bench: official solvers, then swm (same GPU, same call)" | tee -a "$log"
if [ "${OFFICIAL:-1}" = 1 ]; then
  python3 -m swm_tools.bench_planner --config tools/configs/lewm-pusht.json --iters ${ITERS:-10} \
    --json "$out/bench-planner-official.json" 2>&1 | tee -a "$log"
  python3 -m swm_tools.bench_tdmpc2 --config tools/configs/tdmpc2-bench.json --iters ${ITERS:-20} \
    --json "$out/bench-tdmpc2-official.json" 2>&1 | tee -a "$log"
fi
swm bench plan --iters ${ITERS:-20} --json "$out/bench-planner-swm.json" 2>&1 | tee -a "$log"
swm bench tdmpc2 --iters ${ITERS:-20} --json "$out/bench-tdmpc2-swm.json" 2>&1 | tee -a "$log"
echo "== done" | tee -a "$log"
