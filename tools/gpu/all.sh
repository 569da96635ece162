#!/usr/bin/env bash
# GPU host, one call, after tools/gpu/pack.sh: the GPU tests, libswm's GPU test, the media session, the C ABI
# session and the daemon runs, each under its own time limit so that a slow part cannot eat the rest; results under
# $OUT: 0-summary.txt and 1-logs.tgz (a device call returns a limited number of files). PARTS picks parts (default
# tests ffi media cabi peer; train, peer-lewm, peer-encode and loop on request: train is tools/gpu/train.sh, issue
# 15's rows; peer-lewm is issue 14's LeWM CEM rows, the official solvers and swm_tools.peer_lewm beside `swm bench
# plan`; peer-encode the official and best-PyTorch encode of one frame beside `swm bench lewm`); the loop
# part takes RUNS/DUR/TDMPC2_ITERS/OFFICIAL as tools/gpu/loop.sh does. The peer part is issue 14's TD-MPC2 row:
# the official solver, the best PyTorch peer (checked to plan what the official solver plans) eager / CUDA graph /
# torch.compile in fp32 and TF32, and swm, in one call. The media, peer and train parts' JSON feed the report:
# unpack 1-logs.tgz here and run `python -m swm_tools.report --results DIR`.
set -uo pipefail
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
rm -rf /tmp/gpu-bin
# A device call returns only the first few files (by name): the summary is 0-summary.txt, everything else ends
# up in 1-logs.tgz.
summary=$OUT/0-summary.txt
: > "$summary"
# The default parts fit one 10-minute call; the loop part (DUR seconds a run) gets a call of its own.
part() { [[ " ${PARTS:-tests ffi media cabi peer} " == *" $1 "* ]]; }
# Pack on any exit (also when a part's time limit or the call's ends the script with TERM).
pack() {
  rm -f "$OUT"/smi-*.csv   # per-run clock samples: summarised in loop.out's log lines
  ( cd "$OUT" && find . -maxdepth 1 -type f ! -name 0-summary.txt ! -name 1-logs.tgz -printf '%P\n' \
      | tar czf /tmp/1-logs.tgz -T - && find . -maxdepth 1 -type f ! -name 0-summary.txt ! -name 1-logs.tgz -delete \
      && mv /tmp/1-logs.tgz . )
}
trap pack EXIT
trap 'exit 143' TERM
if part tests; then
  timeout "${TESTS_S:-240}" bash .gpu/run.sh > "$OUT/tests.out" 2>&1
  grep -a "test result\|FAILED\|panicked" "$OUT/tests.out" | head -20 | tee -a "$summary"
fi
if part ffi; then
  mkdir -p /tmp/ffi-out; OUT=/tmp/ffi-out timeout 120 bash .gpu-ffi/run.sh tests c_calls > "$OUT/ffi.out" 2>&1   # keeps $OUT/tests.log
  grep -a "test result\|FAILED\|panicked" "$OUT/ffi.out" | head | tee -a "$summary"
fi
if part media; then
  timeout 150 bash tools/gpu/media.sh > "$OUT/media.out" 2>&1
  grep -a "^media \| gpu  \| cpu  \|within\|RESULT" "$OUT/media.out" | tee -a "$summary"
fi
if part cabi; then
  timeout 150 bash tools/gpu/cabi.sh > "$OUT/cabi.out" 2>&1
  grep -a "thread\|overhead\|p50\|failed" "$OUT/cabi.out" | tee -a "$summary"
fi
if part peer; then
  ( source tools/gpu/env.sh > /dev/null 2>&1
    bash .gpu/run.sh exec swm --version > /dev/null 2>&1
    timeout 60 python3 -m swm_tools.peer_tdmpc2 --config tools/configs/tdmpc2-bench.json --check \
      || { echo "peer check FAILED: no peer rows"; exit 1; }
    timeout 120 python3 -m swm_tools.bench_tdmpc2 --config tools/configs/tdmpc2-bench.json --iters 20 \
      --json "$OUT/bench_tdmpc2_official.json"
    timeout 300 python3 -m swm_tools.peer_tdmpc2 --config tools/configs/tdmpc2-bench.json --iters 100 \
      --json "$OUT/bench_tdmpc2_peer.json"
    timeout 120 /tmp/gpu-bin/swm bench tdmpc2 --iters 100 --json "$OUT/swm_bench_tdmpc2.json" ) > "$OUT/peer.out" 2>&1
  grep -a "peer vs\|FAILED\|p50" "$OUT/peer.out" | tee -a "$summary"
fi
if part peer-lewm; then
  # Issue 14's LeWM CEM rows: the peer checked against the official CEMSolver, the official solvers, the peer
  # (eager / CUDA graph / torch.compile, fp32 and TF32) and swm's plan rows, in one call.
  ( source tools/gpu/env.sh > /dev/null 2>&1
    bash .gpu/run.sh exec swm --version > /dev/null 2>&1
    timeout 120 python3 -m swm_tools.peer_lewm --config tools/configs/lewm-tiny.json --check \
      || { echo "peer check FAILED: no peer rows"; exit 1; }
    timeout 200 python3 -m swm_tools.bench_planner --config tools/configs/lewm-pusht.json --iters 10 \
      --json "$OUT/bench_planner_official.json"
    timeout 400 python3 -m swm_tools.peer_lewm --config tools/configs/lewm-pusht.json --iters 20 \
      --json "$OUT/bench_lewm_peer.json"
    timeout 200 /tmp/gpu-bin/swm bench plan --iters 20 --json "$OUT/swm_bench_plan.json" ) > "$OUT/peer-lewm.out" 2>&1
  grep -a "peer vs\|FAILED\|p50" "$OUT/peer-lewm.out" | tee -a "$summary"
fi
if part peer-encode; then
  # Issue 14's encode row: the official encode, the best-PyTorch encode (eager / CUDA graph / torch.compile, fp32
  # and TF32, checked against LeWM.encode) and swm's rows, in one call.
  ( source tools/gpu/env.sh > /dev/null 2>&1
    bash .gpu/run.sh exec swm --version > /dev/null 2>&1
    timeout 300 python3 -m swm_tools.bench_lewm --config tools/configs/lewm-pusht.json --iters 100 --peers \
      --json "$OUT/bench_lewm_official.json"
    timeout 90 /tmp/gpu-bin/swm bench lewm --iters 100 --json "$OUT/swm_bench_lewm.json" ) > "$OUT/peer-encode.out" 2>&1
  grep -a "peer encode\|FAILED\|p50" "$OUT/peer-encode.out" | tee -a "$summary"
fi
if part train; then
  timeout "${TRAIN_S:-420}" bash tools/gpu/train.sh > "$OUT/train.out" 2>&1
  grep -a "^step \|wrote\|p50\|peak\|rror\|RESULT\|FAIL\|spread\|== " "$OUT/train.out" | tee -a "$summary"
fi
if part loop; then
  RUNS="${RUNS:-lewm-jpeg lewm-h264 tdmpc2}" DUR="${DUR:-30}" timeout "${LOOP_S:-420}" bash tools/gpu/loop.sh \
    > "$OUT/loop.out" 2>&1
  grep -av "^step" "$OUT/loop.out" | grep -a "== \|answered\|served\|overhead\|end_to_end\|exit code\|gpu memory" \
    | tee -a "$summary"
fi
