#!/usr/bin/env bash
# Sets up the CUDA 13 build environment for swm and exports it into the calling shell.
#
#   source tools/setup-cuda.sh
#
# 1. A system CUDA 13.x toolkit (nvcc under $CUDA_HOME, /usr/local/cuda or on PATH) is used as is.
# 2. Otherwise the pinned NVIDIA wheels from PyPI (nvcc, cudart, cuBLAS, cuRAND, NVRTC, cuDNN 9, nvJPEG, NPP)
#    are installed once into $SWM_CUDA_PREFIX (default ~/.cache/swm-cuda-13.0), and a stub libcuda.so.1 is
#    generated from cuda.h (every driver call returns CUDA_ERROR_NO_DEVICE) so that executables link and start
#    on a machine without a driver; GPU tests then fail with "needs a CUDA device".
# nvcc must not be newer than 13.0: the GPU hosts' driver (580) rejects newer PTX.

_swm_setup() {
  local want_major=13
  local sys_root=""
  for cand in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /nonexistent/bin/nvcc)")")"; do
    [ -n "$cand" ] && [ -x "$cand/bin/nvcc" ] || continue
    if "$cand/bin/nvcc" --version | grep -q "release ${want_major}\.0"; then sys_root=$cand; break; fi
    echo "setup-cuda: ignoring $cand (nvcc is not CUDA ${want_major}.0)" >&2
  done

  if [ -n "$sys_root" ]; then
    echo "setup-cuda: using the system CUDA toolkit at $sys_root" >&2
    export CUDA_ROOT=$sys_root CUDA_HOME=$sys_root CUDA_PATH=$sys_root
    export PATH=$sys_root/bin:$PATH
    export LIBRARY_PATH=$sys_root/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$sys_root/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    return 0
  fi

  local prefix=${SWM_CUDA_PREFIX:-$HOME/.cache/swm-cuda-13.0}
  local root=$prefix/py/nvidia/cu13
  if [ ! -f "$prefix/.complete" ]; then
    echo "setup-cuda: installing the CUDA 13.0 build toolchain (NVIDIA PyPI wheels) into $prefix" >&2
    python3 -m pip install -q --no-deps --no-compile --disable-pip-version-check --target "$prefix/py" \
      nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 \
      nvidia-cuda-nvrtc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 \
      nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35 nvidia-nvjpeg==13.0.1.86 \
      nvidia-npp==13.0.1.2 "nvidia-cudnn-cu13==9.14.*" || return 1
    (
      set -e
      cd "$root/lib"
      # Unversioned names for the linker, cuDNN next to the other libraries.
      for f in *.so.*; do b=${f%%.so.*}; [ -e "$b.so" ] || ln -s "$f" "$b.so"; done
      for f in ../../cudnn/lib/*.so.9; do n=$(basename "$f"); ln -sf "$f" "$n"; ln -sf "$n" "${n%.9}"; done
      cd "$root/include"
      for h in ../../cudnn/include/*.h; do ln -sf "$h" .; done
    ) || return 1
    ln -sfn lib "$root/lib64"
    touch "$prefix/.complete"
  fi
  # Driver stub (no GPU here): one symbol per cu* entry point of cuda.h plus the profiler API, each returning
  # CUDA_ERROR_NO_DEVICE (100). Regenerated when an older stub lacks a symbol.
  if [ ! -e "$root/lib/stubs/libcuda.so.1" ] || ! grep -q cuProfilerStart "$root/lib/stubs/libcuda.so"; then
    (
      set -e
      mkdir -p "$root/lib/stubs" && cd "$root/lib/stubs"
      { echo '#include <cuda.h>' | gcc -E -I../../include -x c - \
          | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' | sed 's/\s*($//'; printf 'cuProfilerStart\ncuProfilerStop\n'; } \
        | sort -u | awk '{print "int " $1 "(void) { return 100; }"}' > libcuda_stub.c
      gcc -shared -fPIC -o libcuda.so -Wl,-soname,libcuda.so.1 libcuda_stub.c
      ln -sf libcuda.so libcuda.so.1
    ) || return 1
  fi
  export CUDA_ROOT=$root CUDA_HOME=$root CUDA_PATH=$root
  export PATH=$root/bin:$PATH
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
  export LIBRARY_PATH=$root/lib:$root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
  if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
    export LD_LIBRARY_PATH=$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  else
    export LD_LIBRARY_PATH=$root/lib:$root/lib/stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
}
_swm_setup
_swm_rc=$?
unset -f _swm_setup
return $_swm_rc 2>/dev/null || exit $_swm_rc
