#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (see the README's "Kernels" section):
# build the extension there, run the GPU-marked tests, time the kernels. Everything it writes
# goes to $OUT (default benchmarks/results/device): build.log, tests.log, kernels-cuda.{json,md}.
#   bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/device}"
mkdir -p "$OUT"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$OUT/device.txt" 2>&1
git rev-parse --short HEAD >> "$OUT/device.txt" 2>/dev/null

# Build in place against the machine's torch (never let pip resolve torch there).
if ! TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" ADASKIP_FORCE_CUDA=1 \
    python setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  echo "build failed; see $OUT/build.log"; tail -20 "$OUT/build.log"; exit 1
fi

# The GPU-marked tests, from tests/ so that the in-place build in adaskip_ext/ is imported.
PYTHONPATH="$PWD" python -m pytest -q -p no:cacheprovider -m gpu tests > "$OUT/tests.log" 2>&1 || status=1
tail -5 "$OUT/tests.log"

PYTHONPATH="$PWD" python benchmarks/kernels.py --device cuda > "$OUT/kernels.log" 2>&1 || status=1
cp benchmarks/results/kernels-cuda.json benchmarks/results/kernels-cuda.md "$OUT/" 2>/dev/null
tail -12 "$OUT/kernels.log"
exit $status
