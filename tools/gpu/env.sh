# Sourced by the GPU-host session scripts: $out and $log under $OUT, the official package installed offline from
# the carried .whl/ into /tmp/site, Python and CUDA library paths, and the card in the log.
out=${OUT:-/tmp/out}; mkdir -p "$out"
log=$out/log.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed" | tee -a "$log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/tools PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
