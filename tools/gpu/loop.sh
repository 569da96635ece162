#!/usr/bin/env bash
# GPU-host session for swm-loop (issue 11): the daemon serving the example controller over iceoryx2 with a LeWM
# artifact at 30 Hz and a TD-MPC2 artifact at 200 Hz for DUR seconds each, the same with injected GPU stalls (the
# watchdog's fallback must be published on time and counted), then LeWM with a deadline below the step time. Records GPU memory, /dev/shm entries and the
# daemon's open fds before and after each run. Needs .whl/ (shared/gpu/python-wheels.sh) and .gpu/ from
#   shared/gpu/bundle.sh --bins --with target/release/examples/controller -- --release --test cli
#   xz -T0 -6 -c target/release/swm-loop > .gpu/files/target/release/swm-loop.xz
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"; log=$out/log.txt
DUR=${DUR:-30}
bash .gpu/run.sh exec swm --version > /dev/null 2>&1   # unpacks every binary into /tmp/gpu-bin
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
bin=/tmp/gpu-bin; ctl=$PWD/target/release/examples/controller; loopbin=/tmp/gpu-bin/swm-loop
# swm-loop travels xz-compressed (the carried tree must stay under 64 MiB).
[ -x "$loopbin" ] || { xz -d -c target/release/swm-loop.xz > "$loopbin"; chmod +x "$loopbin"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"
rm -rf /tmp/lewm /tmp/tdmpc2 /tmp/tdmpc2-ckpt
"$bin/swm" demo --out /tmp/lewm 2>&1 | tee -a "$log"
# TD-MPC2 at the official baseline's size (state only, latent 512, MLP 512, 5 Q), random weights from the official
# package, converted by swm.
( source tools/gpu/env.sh >/dev/null 2>&1
  python3 -m swm_tools.export_tdmpc2 --config tools/configs/tdmpc2-bench.json --out /tmp/tdmpc2-ckpt > /dev/null 2>&1 )
"$bin/swm" convert /tmp/tdmpc2-ckpt --out /tmp/tdmpc2 2>&1 | tee -a "$log"
cat > /tmp/loop-lewm.toml <<T
artifact = "/tmp/lewm"
rate_hz = 30.0
# Upstream's CEM 300x30, horizon 5 (~12 ms with the graph replayed), within the default 26.7 ms deadline.
[planner]
iterations = ${LEWM_ITERS:-30}
seed = 7
[ipc]
prefix = "gpu-lewm"
# The JPEG run's first observation must not create nvJPEG's decoders (WARM_JPEG=false shows what that costs).
warm_jpeg = ${WARM_JPEG:-true}
T
cat > /tmp/loop-tdmpc2.toml <<T
artifact = "/tmp/tdmpc2"
rate_hz = 200.0
deadline_ms = ${TDMPC2_DEADLINE_MS:-4.5}
[planner]
solver = "mppi"
samples = 512
iterations = ${TDMPC2_ITERS:-5}
horizon = 3
seed = 1
[ipc]
prefix = "gpu-tdmpc2"
[realtime]
priority = ${RT_PRIORITY:-0}
cpus = [${RT_CPUS:-}]
T
cat > /tmp/loop-lewm-late.toml <<T
artifact = "/tmp/lewm"
rate_hz = 30.0
deadline_ms = 4.0
[ipc]
prefix = "gpu-late"
T
# Injected GPU stalls: the watchdog must publish a fallback within the period for each, and count it.
sed -e 's/gpu-lewm/gpu-lewm-stall/' /tmp/loop-lewm.toml > /tmp/loop-lewm-stall.toml
printf '[fault]\ngpu_delay_ms = 60.0\nevery = 90\n' >> /tmp/loop-lewm-stall.toml
sed -e 's/gpu-tdmpc2/gpu-tdmpc2-stall/' /tmp/loop-tdmpc2.toml > /tmp/loop-tdmpc2-stall.toml
printf '[fault]\ngpu_delay_ms = 20.0\nevery = 400\n' >> /tmp/loop-tdmpc2-stall.toml
snapshot() {  # $1 label, $2 pid
  local mem shm fds
  mem=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | grep "^$2," | cut -d, -f2)
  shm=$(ls /dev/shm | grep -c iox2)
  fds=$(ls /proc/$2/fd 2>/dev/null | wc -l)
  echo "$1: gpu memory${mem:- ?}, /dev/shm iox2 entries $shm, daemon fds $fds" | tee -a "$log"
}
run() {  # $1 name, $2 config, $3 artifact, $4 prefix, $5 rate, $6 seconds, $7.. extra controller flags
  echo "== $1: $2 for $6 s" | tee -a "$log"
  echo "/dev/shm iox2 entries before: $(ls /dev/shm | grep -c iox2)" | tee -a "$log"
  "$loopbin" --config "$2" > "$out/daemon-$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do grep -qw "ready" "$out/daemon-$1.log" && break; sleep 0.1; done
  grep -qw "ready" "$out/daemon-$1.log" || { echo "daemon did not start" | tee -a "$log"; cat "$out/daemon-$1.log" | tee -a "$log"; kill -9 $pid; return; }
  local extra=("${@:7}")
  "$ctl" --artifact "$3" --prefix "$4" --rate-hz "$5" --seconds 3 "${extra[@]}" > /dev/null 2>&1   # warm the path
  snapshot "start" $pid
  # GPU clocks and throttle reasons, and the host's CPU steal time, over the run (slow steps: GPU or host?).
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
    --format=csv -lms 500 > "$out/smi-$1.csv" 2>&1 &
  local smi=$!
  local steal0; steal0=$(awk '/^cpu /{print $9}' /proc/stat)
  "$ctl" --artifact "$3" --prefix "$4" --rate-hz "$5" --seconds "$6" --json "$out/controller-$1.json" "${extra[@]}" 2>&1 | tee -a "$log"
  snapshot "end  " $pid
  kill $smi 2>/dev/null
  echo "host CPU steal during the run: $(( $(awk '/^cpu /{print $9}' /proc/stat) - steal0 )) ticks (USER_HZ); GPU throttle reasons seen: $(cut -d, -f6 "$out/smi-$1.csv" | sort | uniq -c | tr '\n' ' ')" | tee -a "$log"
  kill -TERM $pid; wait $pid; echo "daemon exit code after SIGTERM: $?" | tee -a "$log"
  echo "/dev/shm iox2 entries after: $(ls /dev/shm | grep -c iox2)" | tee -a "$log"
  grep -E "WARN|ERROR" "$out/daemon-$1.log" | head -5 | tee -a "$log"
  sed 's/\x1b\[[0-9;]*m//g' "$out/daemon-$1.log" | grep -E -A7 "served|whole run" | tee -a "$log"
}
# RUNS selects the runs (default: LeWM, TD-MPC2, each with injected stalls, LeWM under a 4 ms deadline).
for r in ${RUNS:-lewm tdmpc2 lewm-stall tdmpc2-stall lewm-late}; do
  case $r in
    lewm) run lewm /tmp/loop-lewm.toml /tmp/lewm gpu-lewm 30 "$DUR" ;;
    tdmpc2) run tdmpc2 /tmp/loop-tdmpc2.toml /tmp/tdmpc2 gpu-tdmpc2 200 "$DUR" ;;
    lewm-stall) run lewm-stall /tmp/loop-lewm-stall.toml /tmp/lewm gpu-lewm-stall 30 "${STALL_DUR:-30}" ;;
    tdmpc2-stall) run tdmpc2-stall /tmp/loop-tdmpc2-stall.toml /tmp/tdmpc2 gpu-tdmpc2-stall 200 "${STALL_DUR:-30}" ;;
    lewm-late) run lewm-late /tmp/loop-lewm-late.toml /tmp/lewm gpu-late 30 10 ;;
    # Camera-like observations: 640x480 RGB frames (resized on the GPU), and the 640x480 test JPEG (nvJPEG).
    lewm-640) run lewm-640 /tmp/loop-lewm.toml /tmp/lewm gpu-lewm 30 "$DUR" --frame-size 640x480 ;;
    lewm-jpeg) run lewm-jpeg /tmp/loop-lewm.toml /tmp/lewm gpu-lewm 30 "$DUR" --jpeg tests/data/media/baseline_420_640x480.jpg ;;
    # H.264 1080p access units, one per observation (the 16-frame clip, starting over at its IDR), NVDEC at ingest.
    lewm-h264) run lewm-h264 /tmp/loop-lewm.toml /tmp/lewm gpu-lewm 30 "$DUR" --h264 tests/data/media/h264_1080p.h264 ;;
  esac
done
# The official solvers at the daemon's sizes, same GPU, same call (OFFICIAL=1): the in-process Python control step
# a user would otherwise run in their loop.
if [ "${OFFICIAL:-0}" = 1 ]; then
  ( source tools/gpu/env.sh >/dev/null 2>&1
    python3 -m swm_tools.bench_planner --config tools/configs/lewm-pusht.json --iters ${ITERS:-5} \
      --json "$out/bench-planner-official.json" 2>&1 | tail -12
    python3 -m swm_tools.bench_tdmpc2 --config tools/configs/tdmpc2-bench.json --iters ${ITERS:-20} \
      --json "$out/bench-tdmpc2-official.json" 2>&1 | tail -6 ) | tee -a "$log"
fi
echo "== done" | tee -a "$log"
