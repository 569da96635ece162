#!/usr/bin/env bash
# One GPU-host session for LeWM: export fixtures with the official package, run the packed GPU tests, run
# `swm parity lewm` on a PushT-sized fixture and benchmark swm and the official code side by side.
# Needs (carried): .gpu/ from shared/gpu/bundle.sh --bins, .whl/ from shared/gpu/python-wheels.sh.
# Writes logs and the tiny fixture under $OUT.
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
mkdir -p "$out/lewm-tiny"
{
  echo "== export fixtures (official stable-worldmodel 0.1.1)"
  python3 -m swm_tools.export_lewm --config tools/configs/lewm-tiny.json --out tests/fixtures/lewm-tiny \
    --context 2 --steps 5 --samples 16 --seed 0
  python3 -m swm_tools.export_lewm --config tools/configs/lewm-pusht.json --out /tmp/lewm-pusht \
    --context 1 --steps 5 --samples 300 --seed 1
} 2>&1 | tee -a "$log"
cp tests/fixtures/lewm-tiny/* "$out/lewm-tiny/" 2>/dev/null
echo "== gpu tests" | tee -a "$log"
bash .gpu/run.sh 2>&1 | tail -n 40 | tee -a "$log"
echo "== swm parity lewm (PushT-sized, S=300, H=1, Ttot=5)" | tee -a "$log"
bash .gpu/run.sh exec swm parity lewm --fixture /tmp/lewm-pusht 2>&1 | tee -a "$log"
echo "== bench: official then swm, same GPU" | tee -a "$log"
python3 -m swm_tools.bench_lewm --config tools/configs/lewm-pusht.json --iters ${ITERS:-100} --json "$out/bench-official.json" 2>&1 | tee -a "$log"
bash .gpu/run.sh exec swm bench lewm --iters ${ITERS:-100} --json "$out/bench-swm.json" 2>&1 | tee -a "$log"
echo "== done" | tee -a "$log"
