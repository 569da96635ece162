#!/usr/bin/env bash
# Builds everything a GPU-host session needs and packs it under the 64 MiB a device call carries (run here, from
# the repository root, after `source tools/setup-cuda.sh`):
#   .gpu/      the GPU test binaries (swm's tests/gpu; swm-loop's with LOOP_TESTS=1), swm and swm-gpu, the example
#              controller, swm-loop.xz and libswm.so.xz (tools/gpu/loop.sh and cabi.sh unpack them)
#   .gpu-ffi/  libswm's unit-test binary (its GPU test: `bash .gpu-ffi/run.sh tests c_calls` — the header test
#              needs cargo, which the GPU host lacks)
#   .whl/      the official stable-worldmodel 0.1.1 wheels (once)
# and the C examples (examples/c: controller, threads, bench). `LOOP_TESTS=1 FFI=0` packs swm-loop's GPU tests instead
# of libswm's (both do not fit); `LOOP=0` leaves swm-loop out (no loop part). Carry: [".gpu", ".gpu-ffi", ".whl",
# "examples/c/controller", "examples/c/threads", "examples/c/bench"]; run `bash tools/gpu/all.sh` there.
set -euo pipefail
shared=${SHARED:-../shared/gpu}
# A build of another checkout of this workspace into the same target directory (a CI run from a clone with
# CARGO_TARGET_DIR shared) writes units of the same hashes: its outputs replace this checkout's, and files edited
# here while it built look older than its outputs, so cargo counts them fresh. Touching every crate root makes
# cargo rebuild them from this checkout (a few minutes).
touch src/lib.rs ipc/src/lib.rs loop/src/lib.rs ffi/src/lib.rs src/bin/swm/main.rs src/bin/swm/gpu.rs \
  loop/src/main.rs
cargo build --release --workspace --all-targets --all-features
cargo build --release -p swm-ffi
make -C examples/c all
rm -rf .gpu .gpu-ffi .gpu-ffi.tmp
# FFI=0 leaves libswm's test binary out (room for LOOP_TESTS=1 under the carry limit).
if [ "${FFI:-1}" = 1 ]; then
  bash "$shared/bundle.sh" -- --release -p swm-ffi --lib
  mv .gpu .gpu-ffi.tmp
fi
tests=(--release --test gpu)
[ "${LOOP_TESTS:-0}" = 1 ] && tests=(--release --workspace --test gpu)
bash "$shared/bundle.sh" --bins --with target/release/examples/controller -- "${tests[@]}"
[ ! -d .gpu-ffi.tmp ] || mv .gpu-ffi.tmp .gpu-ffi
xz -T0 -6 -c target/release/libswm.so > .gpu/files/target/release/libswm.so.xz
# LOOP=0 leaves the daemon out (8 MiB; only tools/gpu/loop.sh needs it).
[ "${LOOP:-1}" = 0 ] || xz -T0 -6 -c target/release/swm-loop > .gpu/files/target/release/swm-loop.xz
[ -d .whl ] || bash "$shared/python-wheels.sh" .whl
size=$(du -smc .gpu $([ -d .gpu-ffi ] && echo .gpu-ffi) .whl examples/c/controller examples/c/threads examples/c/bench | tail -1 | cut -f1)
echo "pack.sh: ${size} MiB to carry (limit 64, with the working tree)"
[ "$size" -lt 60 ] || { echo "pack.sh: too large; drop LOOP_TESTS or a part" >&2; exit 1; }
