#!/usr/bin/env bash
# GPU host, one call: this checkout's swm against a base build in the same call. Runs the bundled GPU tests (skip
# with TESTS=0), then `swm bench tdmpc2 | lewm | plan` for the base and the new binary alternately, ROUNDS times
# (default 2), and with PROFILE=1 `ncu` per-kernel tables of one TF32 TD-MPC2 plan and one TF32 LeWM score of the
# new binary (ROUNDS=1 PROFILE=1 keeps a call with ~85 GPU tests under ~7 minutes). Needs .gpu/
# with the bins (shared/gpu/bundle.sh --bins -- --release --test gpu) and the base's swm.xz AND swm-gpu.xz in
# .gpu/base/ (the `swm` front end runs GPU commands through the `swm-gpu` beside it: a base without it prints no
# rows). Each bench command has a time limit (a kernel that hangs costs one row, not the call); the tests named in
# ISOLATE run first, each in its own process (one that fails runs again under compute-sanitizer's memcheck);
# DECISION=1 (with .whl/ carried) adds LeWM decision parity of both binaries in f32 and TF32 (before the profiles,
# whose second table, with SM and L2 throughput, comes last). Results under $OUT: ab-summary.txt (tests, issue 14's
# targets, decisions), ab-tests-isolated.log, ab-tests.log (the other tests), ab-bench.txt, ab-table.txt
# (tools/gpu/ab_table.py: base against new per row), ab-profile-tf32-tdmpc2.txt, ab-profile-tf32-lewm.txt,
# ab-decision.txt.
# A device call brings back at most 8 files from $OUT: these are 8, and run.sh's own tests.log is kept out of $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export CARGO_MANIFEST_DIR=$PWD
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
rm -rf /tmp/gpu-bin /tmp/base-bin
: > "$out/ab-summary.txt"
# Tests of kernels that never ran on a GPU, each in its own process with its own time limit first: a hung kernel
# costs its test, and a faulting one (a sticky CUDA error poisons the rest of its process) does not fail the tests
# after it; and the module-cache test, which unloads what no live device uses. Then every other test, those skipped.
# Names as libtest prints them (module path, --exact).
isolate=${ISOLATE-"tdmpc2::normed_linear_cluster_kernel_matches_candle_ops
  tdmpc2::tf32_plans_on_cluster_normed_linears_match_the_two_kernel_path
  tdmpc2::the_one_launch_cost_matches_the_per_layer_path window_attention_per_head_matches_the_per_query_kernel
  residual_cluster_matches_the_gemm_and_the_row_kernel mlp_block_cluster_matches_the_per_branch_path
  tf32_rollout_with_cluster_residuals_matches_the_row_kernels
  modules::kernel_modules_load_from_their_cubins_and_their_ptx_compiles"}
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
  /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
testbin=$(awk '$1 == "test" { print $2; exit }' .gpu/manifest)
if [ "${TESTS:-1}" = 1 ]; then
  skips=(); passed=0; failed=0
  : > "$out/ab-tests-isolated.log"
  for t in $isolate; do
    OUT= timeout -k 10 "${ISOLATE_LIMIT:-90}" bash .gpu/run.sh tests --exact "$t" > /tmp/ab-test.out 2>&1
    rc=$?
    cat /tmp/ab-test.out >> "$out/ab-tests-isolated.log"
    if grep -aq "^test $t \.\.\. ok" /tmp/ab-test.out; then
      passed=$((passed + 1)); verdict=ok
    else
      failed=$((failed + 1)); verdict="FAILED (rc=$rc$([ $rc = 124 ] && echo ', timed out'))"
    fi
    echo "isolated $t: $verdict" >> "$out/ab-summary.txt"
    # A test that failed (not hung): again under compute-sanitizer's memcheck, whose first errors name the kernel,
    # the thread and the address, so that a fault is diagnosed in the same call.
    if [ "$verdict" != ok ] && [ "$rc" != 124 ] && [ -n "$sanitizer" ]; then
      SWM_REQUIRE_GPU=1 timeout -k 10 "${SANITIZE_LIMIT:-150}" "$sanitizer" --tool memcheck --print-limit 10 \
        "/tmp/gpu-bin/$testbin" --include-ignored --exact "$t" > /tmp/ab-sanitize.out 2>&1
      { echo "== compute-sanitizer memcheck: $t (rc=$?)"; head -c 20000 /tmp/ab-sanitize.out; } \
        >> "$out/ab-tests-isolated.log"
      grep -a -m3 "Invalid\|out of bounds\|Error\|ERROR SUMMARY" /tmp/ab-sanitize.out | sed "s|^|  memcheck $t: |" \
        >> "$out/ab-summary.txt"
    fi
    skips+=(--skip "$t")
  done
  OUT= timeout -k 10 240 bash .gpu/run.sh tests "${skips[@]}" > /tmp/ab-tests.out 2>&1
  rc=$?
  cp /tmp/ab-tests.out "$out/ab-tests.log"
  echo "tests rc=$rc" >> "$out/ab-summary.txt"
  grep -aq '^gpu: ' /tmp/ab-tests.out || echo "main test run INCOMPLETE (rc=$rc): its counts below are missing" \
    >> "$out/ab-summary.txt"
  grep -a "gpu:\|test result\|FAILED\|panicked" /tmp/ab-tests.out >> "$out/ab-summary.txt"
  read -r p f < <(sed -nE 's/^gpu: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' /tmp/ab-tests.out; echo 0 0)
  echo "all tests: gpu: $((p + passed)) passed, $((f + failed)) failed" >> "$out/ab-summary.txt"
fi
bash .gpu/run.sh exec swm --version > /dev/null 2>&1   # unpacks the binaries into /tmp/gpu-bin
mkdir -p /tmp/base-bin
for b in swm swm-gpu; do
  xz -dc ".gpu/base/$b.xz" > "/tmp/base-bin/$b" && chmod +x "/tmp/base-bin/$b" \
    || { echo "ab.sh: .gpu/base/$b.xz missing" | tee -a "$out/ab-summary.txt"; exit 2; }
done
for round in $(seq "${ROUNDS:-2}"); do
  for b in /tmp/base-bin/swm /tmp/gpu-bin/swm; do
    echo "== $b round $round"
    timeout 200 $b bench tdmpc2 --iters 100 2>&1 | grep -a "no warm start.* p50\|CUDA graph p50\|rror" \
      | grep -v "cuBLAS\|split-K\|unfused"
    # The driver's disk cache off: the module-load rows (binaries that load cubins) time a cold compile of the PTX.
    CUDA_CACHE_DISABLE=1 timeout 150 $b bench lewm --iters 100 2>&1 | grep -a "lewm score\|lewm encode\|kernel modules\|rror"
    timeout 200 $b bench plan --iters 10 2>&1 | grep -a "split-TF32 GEMM), CUDA graph p50\|TF32 GEMMs, CUDA graph\|rror"
  done
done > "$out/ab-bench.txt" 2>&1
# Base against new per row, and issue 14's targets against the new binary's best rows.
python3 tools/gpu/ab_table.py "$out/ab-bench.txt" > "$out/ab-table.txt" 2>&1
grep -a "^target" "$out/ab-table.txt" >> "$out/ab-summary.txt"
# Decision parity (needs .whl/ carried, python-wheels.sh): the official CEM on STARTS PushT-sized starts, then swm's
# CEM in f32 and TF32 mode from both binaries, so a kernel that changes TF32 numerics shows whether it changes
# decisions (issue 14: TF32 mode's CEM must keep decision parity). Before the profiles: a call that runs out of
# time loses the profiles' second tables first.
if [ "${DECISION:-0}" = 1 ]; then
  # The official package as every GPU-host script installs it (its log kept out of $OUT: eight files come back).
  ( OUT=/tmp/ab-env source tools/gpu/env.sh > /dev/null
    timeout 150 python3 -m swm_tools.decision_parity --config tools/configs/lewm-pusht.json --out /tmp/decision \
      --starts "${STARTS:-20}" 2>&1 | grep -v "solve time" | tail -3
    for b in /tmp/base-bin/swm /tmp/gpu-bin/swm; do
      for mode in "" --tf32; do
        echo "== $b ${mode:-f32} decision parity"
        timeout 60 $b $mode parity decision --dir /tmp/decision 2>&1 | tail -4
      done
    done ) > "$out/ab-decision.txt" 2>&1
  grep -a "==\|pass\|PASS\|FAIL\|rel" "$out/ab-decision.txt" | head -40 >> "$out/ab-summary.txt"
fi
if [ "${PROFILE:-0}" = 1 ]; then
  # Per kernel: the time, then (a second, replayed run, so that a metric this ncu lacks costs only that table) how
  # busy the SMs and the L2 were: whether a fused kernel is bound by its weights' reads.
  ncu=/usr/local/cuda/bin/ncu
  throughput=sm__throughput.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed
  for part in "tdmpc2 --profile" "lewm --profile score"; do
    name=$(echo "$part" | cut -d' ' -f1)
    file="$out/ab-profile-tf32-$name.txt"
    # shellcheck disable=SC2086
    timeout 100 $ncu --profile-from-start off --clock-control none --cache-control none \
      --metrics gpu__time_duration.sum --csv /tmp/gpu-bin/swm --tf32 bench $part > /tmp/ab-ncu.csv 2>/dev/null
    python3 tools/gpu/ncu_agg.py /tmp/ab-ncu.csv 30 > "$file" 2>&1
    # shellcheck disable=SC2086
    timeout 150 $ncu --profile-from-start off --clock-control none --cache-control none \
      --metrics "gpu__time_duration.sum,$throughput" --csv /tmp/gpu-bin/swm --tf32 bench $part \
      > /tmp/ab-ncu-sol.csv 2>/tmp/ab-ncu-sol.err
    { echo; echo "== with SM and L2 throughput (% of peak; replayed, so times are not comparable with the above)"
      python3 tools/gpu/ncu_agg.py /tmp/ab-ncu-sol.csv 30 2>&1 || tail -5 /tmp/ab-ncu-sol.err; } >> "$file"
  done
fi
cat "$out/ab-summary.txt"
