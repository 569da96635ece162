#!/usr/bin/env bash
# One GPU-host session for the planners: export planner fixtures with the official solvers, run the packed GPU
# tests (which read them), `swm parity planner`, decision parity over many starts, and the planner benchmark of
# swm and the official solvers side by side. Needs (carried): .gpu/ from shared/gpu/bundle.sh --bins and .whl/
# from shared/gpu/python-wheels.sh. Writes logs, JSON rows and the exported fixtures under $OUT.
# GEMM=0 skips `swm bench gemm` (the rollout's GEMM shapes per precision). COMPILE=1 adds the official CEM row with torch.compile + TF32 (minutes of compilation).
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
echo "== export planner fixtures (official stable-worldmodel 0.1.1 solvers)" | tee -a "$log"
python3 -m swm_tools.export_planner --fixture tests/fixtures/lewm-tiny 2>&1 | grep -v "solve time" | tee -a "$log"
[ "${FIXTURES_OUT:-1}" = 1 ] && tar czf "$out/planner-fixtures.tgz" tests/fixtures/lewm-tiny/planner_*.npz
echo "== gpu tests" | tee -a "$log"
bash .gpu/run.sh 2>&1 | tail -n ${TEST_TAIL:-60} | tee -a "$log"
echo "== swm parity planner (tiny LeWM fixture, official noise replayed)" | tee -a "$log"
bash .gpu/run.sh exec swm parity planner --fixture tests/fixtures/lewm-tiny 2>&1 | tee -a "$log"
if [ "${DECISION:-1}" = 1 ]; then
  echo "== decision parity: official CEM vs swm CEM, PushT-sized LeWM, ${STARTS:-20} starts" | tee -a "$log"
  python3 -m swm_tools.decision_parity --config tools/configs/lewm-pusht.json --out /tmp/decision \
    --starts ${STARTS:-20} 2>&1 | grep -v "solve time" | tee -a "$log"
  bash .gpu/run.sh exec swm parity decision --dir /tmp/decision --json "$out/decision.json" 2>&1 | tee -a "$log"
  echo "== decision parity, swm on cuBLAS f32 GEMMs" | tee -a "$log"
  bash .gpu/run.sh exec swm --cublas-f32 parity decision --dir /tmp/decision --json "$out/decision-cublas.json" \
    2>&1 | tee -a "$log"
  echo "== decision parity, swm planning with TF32 matmuls (plans scored in f32)" | tee -a "$log"
  bash .gpu/run.sh exec swm --tf32 parity decision --dir /tmp/decision --json "$out/decision-tf32.json" 2>&1 \
    | tee -a "$log"
fi
echo "== bench: official solvers then swm planners, same GPU" | tee -a "$log"
if [ "${OFFICIAL:-1}" = 1 ]; then
  python3 -m swm_tools.bench_planner --config tools/configs/lewm-pusht.json --iters ${ITERS:-10} \
    $([ "${COMPILE:-0}" = 1 ] && echo --compile) --json "$out/bench-planner-official.json" 2>&1 | tee -a "$log"
fi
if [ "${GEMM:-1}" = 1 ]; then
  bash .gpu/run.sh exec swm bench gemm --json "$out/bench-gemm.json" 2>&1 | tee -a "$log"
fi
bash .gpu/run.sh exec swm bench plan --iters ${ITERS:-10} --json "$out/bench-planner-swm.json" 2>&1 | tee -a "$log"
bash .gpu/run.sh exec swm bench lewm --iters 50 --json "$out/bench-swm.json" 2>&1 | tee -a "$log"
if [ "${LEWM_PARITY:-1}" = 1 ]; then
  echo "== swm parity lewm (PushT-sized, S=300, H=1, Ttot=5)" | tee -a "$log"
  python3 -m swm_tools.export_lewm --config tools/configs/lewm-pusht.json --out /tmp/lewm-pusht \
    --context 1 --steps 5 --samples 300 --seed 1 2>&1 | tail -1 | tee -a "$log"
  bash .gpu/run.sh exec swm parity lewm --fixture /tmp/lewm-pusht 2>&1 | tee -a "$log"
fi
echo "== done" | tee -a "$log"
